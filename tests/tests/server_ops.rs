//! What operators rely on: health, reflection and graceful shutdown.

use shoal_proto::v1 as pb;
use shoal_tests::{TestServer, raw, set_request};
use tokio_stream::StreamExt;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

async fn channel(server: &TestServer) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(server.endpoint())
        .expect("endpoint")
        .connect()
        .await
        .expect("connect")
}

async fn reflect(server: &TestServer, request: MessageRequest) -> MessageResponse {
    let mut client = ServerReflectionClient::new(channel(server).await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(request),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .expect("reflection")
        .into_inner();
    responses
        .next()
        .await
        .expect("one response")
        .expect("ok")
        .message_response
        .expect("a message")
}

#[tokio::test]
async fn reflection_lists_and_describes_the_services() {
    let server = TestServer::start().await;
    let MessageResponse::ListServicesResponse(list) =
        reflect(&server, MessageRequest::ListServices(String::new())).await
    else {
        panic!("expected a service list");
    };
    let names: Vec<_> = list
        .service
        .iter()
        .map(|service| service.name.as_str())
        .collect();
    for expected in [
        "shoal.v1.CacheService",
        "shoal.v1.AdminService",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    let MessageResponse::FileDescriptorResponse(files) = reflect(
        &server,
        MessageRequest::FileContainingSymbol("shoal.v1.CacheService".into()),
    )
    .await
    else {
        panic!("expected descriptors");
    };
    assert!(!files.file_descriptor_proto.is_empty());
}

#[tokio::test]
async fn health_reports_serving_then_not_serving_on_shutdown() {
    let mut server = TestServer::start().await;
    assert_eq!(server.health().await, Some(ServingStatus::Serving));
    let mut raw = raw(&server).await;
    for i in 0..300 {
        raw.cache
            .set(set_request(&format!("k{i}"), "v"))
            .await
            .expect("set");
    }
    // A scan in flight when shutdown begins still completes.
    let mut scan = raw
        .cache
        .scan(pb::ScanRequest {
            page_size: 1,
            ..Default::default()
        })
        .await
        .expect("scan")
        .into_inner();
    let first = scan.message().await.expect("first page").expect("a page");

    let mut health = HealthClient::new(channel(&server).await);
    let mut watch = health
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("watch")
        .into_inner();
    let status = |message: Option<HealthCheckResponse>| message.expect("a status").status();
    assert_eq!(
        status(watch.message().await.expect("status")),
        ServingStatus::Serving
    );
    server.begin_shutdown();
    assert_eq!(
        status(watch.message().await.expect("status")),
        ServingStatus::NotServing
    );
    drop(watch);

    let mut listed = first.keys.len();
    while let Some(page) = scan.message().await.expect("page after shutdown began") {
        listed += page.keys.len();
    }
    assert_eq!(listed, 300);
    server.stop().await.expect("clean stop");
}

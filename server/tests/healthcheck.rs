//! `shoal-server healthcheck`: the real binary against a real server.

use std::process::{Command, Output};

use shoal_server::testing::TestServer;

/// Runs `shoal-server healthcheck --addr <addr>` off the runtime's threads.
async fn healthcheck(addr: String, timeout_ms: u32) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_shoal-server"))
            .args(["healthcheck", "--addr", &addr])
            .args(["--timeout-ms", &timeout_ms.to_string()])
            .output()
            .expect("run shoal-server")
    })
    .await
    .expect("healthcheck thread")
}

#[tokio::test]
async fn exits_zero_only_while_the_server_is_serving() {
    let mut server = TestServer::start().await;
    let serving = healthcheck(server.addr().to_string(), 5000).await;
    assert!(serving.status.success(), "{serving:?}");
    assert_eq!(String::from_utf8_lossy(&serving.stdout).trim(), "SERVING");

    // Once shutdown began the server takes no new connection: a check
    // during the drain gets no answer in time, and fails.
    let channel = tonic::transport::Endpoint::from_shared(server.endpoint())
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut watch = tonic_health::pb::health_client::HealthClient::new(channel)
        .watch(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("watch")
        .into_inner();
    watch.message().await.expect("status").expect("SERVING");
    server.begin_shutdown();
    watch.message().await.expect("status").expect("NOT_SERVING");
    let draining = healthcheck(server.addr().to_string(), 300).await;
    assert_eq!(draining.status.code(), Some(1), "{draining:?}");
    assert!(
        String::from_utf8_lossy(&draining.stderr).starts_with("unhealthy: "),
        "{draining:?}"
    );
    drop(watch);
    server.stop().await.expect("clean stop");
}

#[tokio::test]
async fn exits_one_when_nothing_answers() {
    // Bind a port and release it, so that nothing listens there.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port");
    let unreachable = healthcheck(addr.to_string(), 5000).await;
    assert_eq!(unreachable.status.code(), Some(1), "{unreachable:?}");
    assert!(
        String::from_utf8_lossy(&unreachable.stderr).contains("cannot connect"),
        "{unreachable:?}"
    );
}

#[tokio::test]
async fn exits_one_when_the_server_says_not_serving() {
    // A bare health service reporting NOT_SERVING, as shoal's does once
    // shutdown began, but still taking connections.
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", tonic_health::ServingStatus::NotServing)
        .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local address");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(health)
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                async {
                    let _ = stopped.await;
                },
            ),
    );
    let output = healthcheck(addr.to_string(), 5000).await;
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stderr).trim(),
        "unhealthy: NOT_SERVING"
    );
    let _ = stop.send(());
    serving.await.expect("server task").expect("server");
}

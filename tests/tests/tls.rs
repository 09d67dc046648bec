//! TLS and mTLS end to end: certificates made at test time, a real server
//! with `[tls]` on 127.0.0.1:0, the typed client over `https://`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use shoal_client::{Client, TlsConfig};
use shoal_server::config::{ClientAuth, Config};
use shoal_server::limits::connections::{self, ConnectionLimits};
use shoal_server::limits::traffic::Traffic;
use shoal_server::tls::dev_cert::{DevCa, Leaf};
use shoal_server::tls::{ListenerTls, TlsListener};
use shoal_tests::tls::{Certs, TlsServer, https_get};
use tokio::io::AsyncReadExt;
use tokio_stream::StreamExt as _;
use tonic::transport::server::Connected as _;

/// Longest a test waits for something to happen; never a duration asserted.
const PATIENCE: Duration = Duration::from_secs(20);

fn identity(certs: &Certs, uri: &str) -> TlsConfig {
    let client = certs.client_cert(uri);
    certs
        .client_tls()
        .identity_pem(client.cert_pem, client.key_pem)
}

/// Whether a fresh client with `tls` gets an answer.
async fn served(server: &TlsServer, tls: TlsConfig) -> bool {
    server.client(tls).get("probe").await.is_ok()
}

#[tokio::test]
async fn get_and_set_over_tls() {
    let certs = Certs::new();
    let server = TlsServer::start(
        certs.config(Config::default(), ClientAuth::Off),
        certs.client_tls(),
    )
    .await;
    let client = server.client(certs.client_tls());
    client.set("greeting", "hello").await.expect("set over TLS");
    let value = client.get("greeting").await.expect("get over TLS");
    assert_eq!(value.as_deref(), Some(&b"hello"[..]));

    // No scheme with TLS settings means https.
    let client = Client::builder()
        .endpoint(format!("localhost:{}", server.addr().port()))
        .tls(certs.client_tls())
        .connect()
        .await
        .expect("connect");
    assert!(client.get("greeting").await.expect("get").is_some());

    // A client that does not trust the CA, and a plaintext one, are not served.
    let stranger = Certs::new();
    assert!(!served(&server, stranger.client_tls()).await);
    let plaintext = Client::builder()
        .endpoint(format!("http://127.0.0.1:{}", server.addr().port()))
        .max_retries(0)
        .connect_lazy()
        .expect("client");
    assert!(plaintext.get("greeting").await.is_err());
    // TLS settings with an http:// endpoint are refused before dialling.
    let mixed = Client::builder()
        .endpoint(format!("http://127.0.0.1:{}", server.addr().port()))
        .tls(certs.client_tls())
        .connect_lazy();
    assert!(matches!(mixed, Err(shoal_client::Error::Tls { .. })));
}

#[tokio::test]
async fn required_client_certificates_admit_only_the_trusted_and_valid() {
    let certs = Certs::new();
    let trusted = identity(&certs, "spiffe://shoal/test-app");
    let server = TlsServer::start(
        certs.config(Config::default(), ClientAuth::Required),
        trusted.clone(),
    )
    .await;
    assert!(served(&server, trusted).await, "right CA");

    let other_ca = DevCa::new("another CA").expect("CA");
    let foreign = other_ca
        .issue(&Leaf::client(&["spiffe://shoal/test-app"], &[]))
        .expect("cert");
    let foreign = certs
        .client_tls()
        .identity_pem(foreign.cert_pem, foreign.key_pem);
    assert!(!served(&server, foreign).await, "another CA");

    let day = Duration::from_secs(24 * 3600);
    let now = SystemTime::now();
    let expired = certs
        .ca
        .issue(&Leaf::client(&["spiffe://shoal/test-app"], &[]).valid(now - 30 * day, now - day))
        .expect("cert");
    let expired = certs
        .client_tls()
        .identity_pem(expired.cert_pem, expired.key_pem);
    assert!(!served(&server, expired).await, "expired");

    assert!(!served(&server, certs.client_tls()).await, "no certificate");
    // The caller learns why, not only that the transport failed.
    let refusal = server
        .client(certs.client_tls())
        .get("probe")
        .await
        .expect_err("no certificate");
    assert!(
        refusal.to_string().contains("CertificateRequired"),
        "{refusal}"
    );

    let metrics = https_get(server.admin_addr(), certs.ca.cert_pem(), "/metrics")
        .await
        .1;
    let refused: u64 = metrics
        .lines()
        .find_map(|line| {
            line.strip_prefix("shoal_tls_handshake_failures_total{reason=\"client_certificate\"} ")
        })
        .expect("refusals in the metrics")
        .parse()
        .expect("a count");
    assert!(refused >= 3, "{refused} refusals");
}

#[tokio::test]
async fn optional_client_certificates_admit_clients_without_one() {
    let certs = Certs::new();
    let server = TlsServer::start(
        certs.config(Config::default(), ClientAuth::Optional),
        certs.client_tls(),
    )
    .await;
    assert!(served(&server, certs.client_tls()).await, "no certificate");
    assert!(
        served(&server, identity(&certs, "spiffe://shoal/a")).await,
        "a trusted one"
    );
    let stranger = Certs::new();
    let foreign = stranger.client_cert("spiffe://shoal/a");
    let foreign = certs
        .client_tls()
        .identity_pem(foreign.cert_pem, foreign.key_pem);
    assert!(!served(&server, foreign).await, "one from another CA");
}

/// The identities of a verified client certificate reach `ConnectionInfo`;
/// a connection without one has none.
#[tokio::test]
async fn client_identities_are_on_the_connection() {
    let certs = Certs::new();
    let config = certs.config(Config::default(), ClientAuth::Optional);
    let tls = ListenerTls::grpc(&config.tls)
        .expect("load")
        .expect("TLS on");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let limits = ConnectionLimits {
        max_connections: 100,
        preface_timeout: PATIENCE,
        idle_timeout: None,
        inflight_bytes: 1 << 20,
        keepalive: None,
        tls: Some(TlsListener::new(tls, &config.tls)),
    };
    let mut accepted = Box::pin(connections::accept(
        listener,
        limits,
        Arc::new(Traffic::default()),
        std::future::pending(),
    ));

    let client = certs
        .ca
        .issue(&Leaf::client(&["spiffe://shoal/reader"], &["reader.test"]))
        .expect("cert");
    let with_cert = certs
        .client_tls()
        .identity_pem(client.cert_pem, client.key_pem);
    for (tls, expected) in [
        (
            with_cert,
            vec![
                "spiffe://shoal/reader".to_string(),
                "reader.test".to_string(),
            ],
        ),
        (certs.client_tls(), Vec::new()),
    ] {
        let builder = Client::builder()
            .endpoint(format!("https://localhost:{}", addr.port()))
            .tls(tls);
        let connecting = tokio::spawn(async move { builder.connect_channel().await });
        let connection = tokio::time::timeout(PATIENCE, accepted.next())
            .await
            .expect("a connection in time")
            .expect("the stream goes on")
            .expect("accepted");
        let info = connection.connect_info();
        assert!(info.is_tls());
        assert_eq!(info.client_identities(), expected.as_slice());
        drop(connection);
        connecting.abort();
    }
}

#[tokio::test]
async fn a_reload_serves_new_connections_the_new_certificate() {
    let certs = Certs::new();
    let mut config = certs.config(Config::default(), ClientAuth::Off);
    config.tls.reload_interval_secs = 0; // only on request
    let server = TlsServer::start(config, certs.client_tls()).await;
    let open = server.client(certs.client_tls());
    open.set("k", "v").await.expect("call before the reload");

    let next_ca = DevCa::new("next CA").expect("CA");
    let next_tls = TlsConfig::new().ca_pem(next_ca.cert_pem());
    certs.write_server(&next_ca);
    shoal_server::tls::reload_certificates();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !served(&server, next_tls.clone()).await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !served(&server, certs.client_tls()).await,
        "new connections get the new certificate"
    );
    // The connection opened before the reload is still the one in use (a
    // new one would fail to verify against the old CA).
    let value = open.get("k").await.expect("call after the reload");
    assert_eq!(value.as_deref(), Some(&b"v"[..]));
}

#[tokio::test]
async fn changed_files_are_picked_up_without_a_signal() {
    let certs = Certs::new();
    let mut config = certs.config(Config::default(), ClientAuth::Off);
    config.tls.reload_interval_secs = 1;
    let server = TlsServer::start(config, certs.client_tls()).await;
    let next_ca = DevCa::new("next CA").expect("CA");
    certs.write_server(&next_ca);
    let next_tls = TlsConfig::new().ca_pem(next_ca.cert_pem());
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !served(&server, next_tls.clone()).await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the changed files were never loaded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn a_failed_reload_keeps_the_certificate_in_force() {
    let certs = Certs::new();
    let config = certs.config(Config::default(), ClientAuth::Off);
    let tls = ListenerTls::grpc(&config.tls)
        .expect("load")
        .expect("TLS on");
    let before = tls.config();
    // A key that belongs to another certificate.
    let other = certs
        .ca
        .issue(&Leaf::server(&["localhost"]))
        .expect("certificate");
    std::fs::write(certs.path("server-key.pem"), other.key_pem).expect("write");
    let error = tls.reload().expect_err("a mismatched key is refused");
    assert!(error.to_string().contains("server.pem"), "{error}");
    assert!(Arc::ptr_eq(&before, &tls.config()));
    std::fs::write(certs.path("server-key.pem"), "not a key").expect("write");
    assert!(tls.reload().is_err());
    assert!(Arc::ptr_eq(&before, &tls.config()));
}

#[tokio::test]
async fn a_stalled_handshake_is_closed_while_others_are_served() {
    let certs = Certs::new();
    let mut config = certs.config(Config::default(), ClientAuth::Off);
    config.tls.handshake_timeout_secs = 1;
    let server = TlsServer::start(config, certs.client_tls()).await;
    // Connects and sends nothing.
    let mut stalled = tokio::net::TcpStream::connect(server.addr())
        .await
        .expect("connect");
    assert!(served(&server, certs.client_tls()).await);
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(PATIENCE, stalled.read(&mut byte))
        .await
        .expect("closed by the server in time");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    let metrics = https_get(server.admin_addr(), certs.ca.cert_pem(), "/metrics")
        .await
        .1;
    assert!(
        metrics
            .lines()
            .any(|line| line
                == "shoal_connections_closed_by_limit_total{limit=\"handshake_timeout\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn handshakes_over_the_cap_are_closed_at_once() {
    let certs = Certs::new();
    let mut config = certs.config(Config::default(), ClientAuth::Off);
    config.tls.max_handshakes = 1;
    let server = TlsServer::start(config, certs.client_tls()).await;
    let _stalled = tokio::net::TcpStream::connect(server.addr())
        .await
        .expect("connect");
    // The stalled handshake holds the one place: the next connection is
    // closed as soon as it is accepted, and counted.
    let mut over = tokio::net::TcpStream::connect(server.addr())
        .await
        .expect("connect");
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(PATIENCE, over.read(&mut byte))
        .await
        .expect("closed in time");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    let metrics = https_get(server.admin_addr(), certs.ca.cert_pem(), "/metrics")
        .await
        .1;
    assert!(
        metrics
            .lines()
            .any(|line| line
                == "shoal_connections_closed_by_limit_total{limit=\"max_handshakes\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn admin_metrics_over_tls() {
    let certs = Certs::new();
    let server = TlsServer::start(
        certs.config(Config::default(), ClientAuth::Required),
        identity(&certs, "spiffe://shoal/probe"),
    )
    .await;
    // The admin listener asks for no client certificate.
    let (status, body) = https_get(server.admin_addr(), certs.ca.cert_pem(), "/metrics").await;
    assert_eq!(status, 200);
    assert!(body.contains("shoal_connections_open"), "{body}");
    assert!(body.trim_end().ends_with("# EOF"));
    let (status, _) = https_get(server.admin_addr(), certs.ca.cert_pem(), "/readyz").await;
    assert_eq!(status, 200);
}

/// Whether a member at `address`, dialled by IP as DNS and Kubernetes
/// membership do, answers SERVING when its certificate is checked for
/// `server_name` (`cluster.tls_server_name`).
async fn member_serves(certs: &Certs, address: String, server_name: Option<&str>) -> bool {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};

    let mut config = certs.config(Config::default(), ClientAuth::Off);
    config.cluster.tls_ca = Some(certs.path("ca.pem"));
    config.cluster.tls_server_name = server_name.map(str::to_string);
    let peers = shoal_server::cluster::Peers::new(&config).expect("peers");
    let member = shoal_server::cluster::Member {
        id: "m".to_string(),
        address,
        ready: true,
    };
    let channel = peers.channel(&member).expect("a channel");
    let mut health = HealthClient::new(channel);
    let check = health.check(HealthCheckRequest::default());
    matches!(
        tokio::time::timeout(PATIENCE, check).await,
        Ok(Ok(reply)) if reply.get_ref().status == ServingStatus::Serving as i32
    )
}

#[tokio::test]
async fn members_check_a_shared_certificate_for_the_cluster_server_name() {
    let certs = Certs::new();
    let server = TlsServer::start(
        certs.config(Config::default(), ClientAuth::Off),
        certs.client_tls(),
    )
    .await;
    let address = server.addr().to_string();
    // The certificate names 127.0.0.1, the address dialled, and localhost.
    assert!(member_serves(&certs, address.clone(), None).await);
    assert!(member_serves(&certs, address.clone(), Some("localhost")).await);
    // A name it does not carry fails, though the IP dialled is on it: the
    // setting replaces the host, rather than adding to it.
    assert!(!member_serves(&certs, address, Some("shoal.elsewhere.svc")).await);
}

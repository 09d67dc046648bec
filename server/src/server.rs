//! Listeners, gRPC services, health, reflection, metrics and graceful
//! shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use shoal_proto::v1::admin_service_server::AdminServiceServer;
use shoal_proto::v1::batch_service_server::BatchServiceServer;
use shoal_proto::v1::cache_service_server::CacheServiceServer;
use shoal_proto::v1::cluster_service_server::ClusterServiceServer;
use shoal_proto::v1::collection_service_server::CollectionServiceServer;
use shoal_proto::v1::watch_service_server::WatchServiceServer;
use tokio::net::TcpListener;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;

use crate::auth::{self, AuthLayer, AuthState, Authenticator, FailureLimits, TokenStore};
use crate::change_feed::ChangeFeed;
use crate::cluster::Cluster;
use crate::config::Config;
use crate::engine::{ChangeSink, Engine, ExpirySweeper};
use crate::error::ServerError;
use crate::limits::connections::{self, ConnectionLimits};
use crate::limits::inflight::{InflightLayer, InflightLimits};
use crate::limits::tcp_keepalive::KeepaliveSettings;
use crate::observe::admin_http::{self, Readiness};
use crate::observe::metrics::Metrics;
use crate::persistence::PersistenceError;
use crate::persistence::runtime::Persistence;
use crate::persistence::settings::PersistenceMode;
use crate::process::open_files;
use crate::service::{
    AdminApi, BatchApi, CacheApi, ClusterApi, CollectionApi, ServiceState, WatchApi,
};
use crate::tls::TlsListener;

/// Binds `config.listen` (and `config.admin.listen`) and serves until
/// `shutdown` completes.
///
/// # Errors
/// See [`ServerError`].
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServerError::Bind {
            addr: config.listen,
            source,
        })?;
    serve(listener, config, shutdown).await
}

/// Serves the shoal API on an already bound listener until `shutdown`
/// completes, then reports NOT_SERVING, stops accepting and lets in-flight
/// calls finish (for at most the configured grace period).
///
/// Tests bind `127.0.0.1:0` themselves and pass the listener here.
///
/// # Errors
/// See [`ServerError`].
pub async fn serve(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let engine = Engine::new(config.engine_config());
    serve_engine(listener, config, engine, shutdown).await
}

/// As [`serve`], over an engine the caller built (for example with a manual
/// clock, or shared with in-process users). Binds the admin listener at
/// `config.admin.listen` unless it is off.
///
/// # Errors
/// See [`ServerError`].
pub async fn serve_engine(
    listener: TcpListener,
    config: Config,
    engine: Engine,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let admin = match config.admin.listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|source| ServerError::Bind { addr, source })?,
        ),
        None => None,
    };
    serve_listeners(listener, admin, config, engine, shutdown).await
}

/// As [`serve_engine`], with the admin listener bound by the caller (`None`
/// for none) and `config.admin.listen` ignored. Tests bind both on port 0.
///
/// # Errors
/// See [`ServerError`].
pub async fn serve_listeners(
    listener: TcpListener,
    admin: Option<TcpListener>,
    config: Config,
    engine: Engine,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let local_addr = listener.local_addr().ok();
    let grpc_tls = crate::tls::ListenerTls::grpc(&config.tls)?;
    let admin_tls = match &admin {
        Some(_) => crate::tls::ListenerTls::admin(&config.tls)?,
        None => None,
    };
    let reloader = crate::tls::Reloader::start(
        grpc_tls.iter().chain(&admin_tls).cloned().collect(),
        (config.tls.reload_interval_secs > 0)
            .then(|| Duration::from_secs(config.tls.reload_interval_secs)),
    );
    let feed = ChangeFeed::new(config.watch.buffer_events, config.watch.max_watchers);
    // Recovery comes first: the listener is bound but nothing is served,
    // and health is not SERVING, until the data is back. The sweeper
    // starts after it, so that expiry is logged after the drops of
    // recovery.
    let persistence = open_persistence(&config, &engine, &feed).await?;
    let sweeper = ExpirySweeper::start(
        engine.clone(),
        Duration::from_millis(config.expiry.sweep_interval_ms),
    )
    .map_err(ServerError::Sweeper)?;
    if persistence.is_none() && !engine.attach_sink(feed.clone()) {
        // An embedder's engine that already reports its changes elsewhere:
        // Watch streams then get UNAVAILABLE rather than a silent feed.
        tracing::warn!("the engine already has a change sink; Watch is unavailable");
        feed.close();
    }
    let (auth, token_watcher) = auth_state(&config)?;
    // A member that was stopped for longer than the detection window
    // empties itself: the others served its keys meanwhile.
    let stalled_engine = engine.clone();
    let on_stall: crate::cluster::probe::OnStall = Arc::new(move |_gap| {
        let removed: u64 = stalled_engine
            .namespaces()
            .iter()
            .map(|namespace| namespace.flush())
            .sum();
        tracing::warn!(removed, "dropped the keys held before the stall");
    });
    let cluster = Cluster::start(&config, on_stall).await?.map(Arc::new);
    let state = ServiceState::with_cluster(
        engine,
        feed.clone(),
        &config,
        auth.clone(),
        persistence.clone(),
        cluster,
    );
    let max_message = config.max_message_bytes();
    let readiness = Readiness::ready();
    let admin = admin.map(|listener| {
        tracing::info!(
            addr = ?listener.local_addr().ok(),
            tls = admin_tls.is_some(),
            "admin listener: /metrics, /healthz, /readyz"
        );
        tokio::spawn(admin_http::serve(
            listener,
            Metrics::new(state.metric_sources()),
            readiness.clone(),
            admin_tls.map(|tls| TlsListener::new(tls, &config.tls)),
        ))
    });

    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<CacheServiceServer<CacheApi>>().await;
    health.set_serving::<AdminServiceServer<AdminApi>>().await;
    health
        .set_serving::<CollectionServiceServer<CollectionApi>>()
        .await;
    health.set_serving::<BatchServiceServer<BatchApi>>().await;
    health.set_serving::<WatchServiceServer<WatchApi>>().await;
    health
        .set_serving::<ClusterServiceServer<ClusterApi>>()
        .await;
    health.set_service_status("", ServingStatus::Serving).await;

    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;

    let cache = CacheServiceServer::new(CacheApi::new(state.clone()))
        .max_decoding_message_size(max_message)
        .max_encoding_message_size(max_message);
    let collection = CollectionServiceServer::new(CollectionApi::new(state.clone()))
        .max_decoding_message_size(max_message)
        .max_encoding_message_size(max_message);
    let batch = BatchServiceServer::new(BatchApi::new(state.clone()))
        .max_decoding_message_size(max_message)
        .max_encoding_message_size(max_message);
    let watch = WatchServiceServer::new(WatchApi::new(state.clone()));
    let cluster_api = ClusterServiceServer::new(ClusterApi::new(state.clone()));
    let admin_api = AdminServiceServer::new(AdminApi::new(state.clone()))
        .max_decoding_message_size(max_message)
        .max_encoding_message_size(max_message);

    let grpc = &config.grpc;
    let request_timeout = Duration::from_secs(grpc.request_timeout_secs);
    let budget = config.inflight_budget();
    let inflight = InflightLimits {
        server: Arc::clone(&state.inflight),
        per_connection: budget.per_connection,
        max_message: max_message as u64,
    };
    // Flow-control windows no larger than a connection's in-flight budget
    // (hyper's defaults, 1 MiB, unless the budget is smaller).
    let window = budget
        .per_connection
        .min(1024 * 1024)
        .try_into()
        .unwrap_or(u32::MAX);
    let router = Server::builder()
        .initial_connection_window_size(window)
        .initial_stream_window_size(window)
        .max_concurrent_streams(grpc.max_concurrent_streams)
        .http2_max_pending_accept_reset_streams(Some(grpc.max_pending_accept_reset_streams))
        .http2_max_header_list_size(grpc.max_header_list_size)
        .http2_max_local_error_reset_streams(Some(grpc.max_local_error_reset_streams))
        .max_frame_size(grpc.max_frame_size)
        .accept_http1(false)
        // Dead peers are found by TCP keepalive (see `ConnectionLimits`);
        // HTTP/2 pings only when asked for.
        .http2_keepalive_interval(
            (grpc.http2_ping_interval_secs > 0)
                .then(|| Duration::from_secs(grpc.http2_ping_interval_secs)),
        )
        .http2_keepalive_timeout(Some(Duration::from_secs(grpc.keepalive_timeout_secs)))
        // No `.timeout(..)`: the RpcLayer holds each call to its deadline,
        // arming a timer only for a handler that does not answer at once.
        .layer(state.rpc_layer(Some(request_timeout)))
        // Credentials are checked before a request's body is read or held.
        .layer(AuthLayer::new(auth.authenticator.clone()))
        .layer(InflightLayer::new(inflight))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(cache)
        .add_service(collection)
        .add_service(batch)
        .add_service(watch)
        .add_service(cluster_api)
        .add_service(admin_api);

    let stopping_traffic = Arc::clone(&state.traffic);
    let grace = config.shutdown_grace();
    let (drained_tx, drained_rx) = tokio::sync::oneshot::channel::<()>();
    let stopping_state = state.clone();
    let stop_accepting = async move {
        shutdown.await;
        tracing::info!("shutting down: health NOT_SERVING, finishing in-flight calls");
        readiness.set_not_ready();
        health
            .set_service_status("", ServingStatus::NotServing)
            .await;
        health
            .set_not_serving::<CacheServiceServer<CacheApi>>()
            .await;
        health
            .set_not_serving::<AdminServiceServer<AdminApi>>()
            .await;
        health
            .set_not_serving::<CollectionServiceServer<CollectionApi>>()
            .await;
        health
            .set_not_serving::<BatchServiceServer<BatchApi>>()
            .await;
        health
            .set_not_serving::<WatchServiceServer<WatchApi>>()
            .await;
        health
            .set_not_serving::<ClusterServiceServer<ClusterApi>>()
            .await;
        // Watch streams never end on their own: end them so that draining
        // finishes and watchers reconnect to another server.
        feed.close();
        // So do pipelines: clients reopen them elsewhere.
        stopping_state.begin_stopping();
        let _ = drained_tx.send(());
    };
    tracing::info!(
        addr = ?local_addr,
        tls = grpc_tls.is_some(),
        client_auth = ?config.tls.client_auth,
        "shoal-server listening"
    );
    let connections = {
        let state = state.clone();
        let stopped = async move { state.stopped().await };
        connections::accept(
            listener,
            connection_limits(
                &config,
                grpc_tls.map(|tls| TlsListener::new(tls, &config.tls)),
            ),
            Arc::clone(&stopping_traffic),
            stopped,
        )
    };
    let serving = router.serve_with_incoming_shutdown(connections, stop_accepting);
    tokio::pin!(serving);
    let result = tokio::select! {
        result = &mut serving => result,
        () = async {
            let _ = drained_rx.await;
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!(?grace, "in-flight calls did not finish within the grace period");
            Ok(())
        }
    };
    drop(sweeper);
    if let Some(persistence) = persistence {
        // In-flight calls are done: sync the log (and, in snapshot mode,
        // take the last snapshot) so that a clean stop loses nothing.
        match tokio::task::spawn_blocking(move || persistence.close()).await {
            Ok(Ok(())) => tracing::info!("persistence closed: log synced"),
            Ok(Err(error)) => tracing::error!(%error, "persistence did not close cleanly"),
            Err(error) => tracing::error!(%error, "persistence did not close cleanly"),
        }
    }
    if let Some(watcher) = token_watcher {
        watcher.abort();
    }
    drop(reloader);
    // Scrapes and probes have nothing to finish: stop answering them.
    if let Some(admin) = admin {
        admin.abort();
    }
    tracing::info!("shoal-server stopped");
    Ok(result?)
}

/// Recovers `engine` from the data directory and opens the log, as
/// `config.persistence` asks, with the change feed behind the log's sink;
/// `None` with persistence off. Runs off the async runtime.
async fn open_persistence(
    config: &Config,
    engine: &Engine,
    feed: &Arc<ChangeFeed>,
) -> Result<Option<Arc<Persistence>>, ServerError> {
    if config.persistence.mode == PersistenceMode::Off {
        return Ok(None);
    }
    let settings = config.persistence.clone();
    let engine = engine.clone();
    let skipped = config.unpersisted_namespaces();
    let next: Arc<dyn ChangeSink> = feed.clone();
    let opened =
        tokio::task::spawn_blocking(move || Persistence::open(&settings, &engine, skipped, next))
            .await
            .map_err(|error| {
                ServerError::Persistence(PersistenceError::io(
                    "recover",
                    config.persistence.data_dir.clone().unwrap_or_default(),
                    std::io::Error::other(error.to_string()),
                ))
            })??;
    Ok(Some(opened))
}

/// Authentication as `config.auth` asks: off without a token file;
/// otherwise the file is read (the server does not start on a bad one) and
/// watched for changes.
fn auth_state(
    config: &Config,
) -> Result<(AuthState, Option<tokio::task::JoinHandle<()>>), ServerError> {
    let settings = &config.auth;
    let Some(path) = &settings.token_file else {
        return Ok((AuthState::off(), None));
    };
    let store = Arc::new(TokenStore::load(path)?);
    store.with_current(|set| {
        tracing::info!(
            path = %path.display(),
            tokens = set.tokens(),
            certificates = set.certificates(),
            "auth on: calls need a token or a listed client certificate"
        );
    });
    let watcher = tokio::spawn(auth::watch_token_file(
        Arc::clone(&store),
        Duration::from_millis(settings.reload_interval_ms),
    ));
    let counters = Arc::default();
    let limits = FailureLimits {
        burst: settings.failure_burst,
        refill_per_minute: settings.failure_refill_per_minute,
    };
    let authenticator = Authenticator::new(store, limits, Arc::clone(&counters));
    Ok((
        AuthState {
            authenticator: Some(Arc::new(authenticator)),
            counters,
        },
        Some(watcher),
    ))
}

/// The limits connections are held to, with the cap kept below the
/// open-file limit (raised as far as it goes first).
fn connection_limits(config: &Config, tls: Option<TlsListener>) -> ConnectionLimits {
    let grpc = &config.grpc;
    let max_connections = match open_files::raise_limit() {
        Ok(limit) => {
            let cap = open_files::connection_cap(grpc.max_connections, limit);
            if cap < grpc.max_connections {
                tracing::warn!(
                    configured = grpc.max_connections,
                    cap,
                    open_file_limit = limit,
                    "grpc.max_connections lowered to stay below the open-file limit"
                );
            }
            cap
        }
        Err(error) => {
            tracing::warn!(%error, "cannot read or raise the open-file limit");
            grpc.max_connections
        }
    };
    ConnectionLimits {
        max_connections,
        preface_timeout: Duration::from_secs(grpc.preface_timeout_secs),
        idle_timeout: (grpc.idle_timeout_secs > 0)
            .then(|| Duration::from_secs(grpc.idle_timeout_secs)),
        inflight_bytes: config.inflight_budget().per_connection,
        keepalive: (grpc.keepalive_interval_secs > 0).then(|| KeepaliveSettings {
            idle: Duration::from_secs(grpc.keepalive_interval_secs),
            timeout: Duration::from_secs(grpc.keepalive_timeout_secs),
        }),
        tls,
    }
}

/// The connections `listener` accepts, with Nagle's algorithm off.
///
/// `Server::tcp_nodelay` applies only to listeners tonic binds itself. With
/// Nagle on, the last frames of a streamed reply (its trailers) wait for the
/// client's delayed ACK, which holds every GetBatch or Scan call for about
/// 40 ms.
pub fn accepted_without_delay(listener: TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener).with_nodelay(Some(true))
}

fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(shoal_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
}

#[cfg(test)]
mod tests {
    use tokio_stream::StreamExt as _;

    use super::*;

    #[tokio::test]
    async fn accepted_connections_do_not_wait_for_acks() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut incoming = accepted_without_delay(listener);
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let accepted = incoming.next().await.unwrap().unwrap();
        assert!(accepted.nodelay().unwrap());
    }
}

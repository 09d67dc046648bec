//! The probe behind `shoal-server healthcheck`: one call to the gRPC health
//! service, so container health checks need no extra tool in the image.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// What a health check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// The server answered SERVING.
    Serving,
    /// The server answered with another status, named as in the protocol
    /// (`NOT_SERVING` once shutdown began).
    NotServing(&'static str),
    /// No answer: the address is wrong, nothing listens, the call failed or
    /// it took longer than allowed.
    Unreachable(String),
}

impl Probe {
    /// Whether the server is serving.
    pub fn is_serving(&self) -> bool {
        matches!(self, Probe::Serving)
    }
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Probe::Serving => f.write_str("SERVING"),
            Probe::NotServing(status) => f.write_str(status),
            Probe::Unreachable(reason) => f.write_str(reason),
        }
    }
}

/// `error` and its sources, joined: tonic's transport errors say little
/// without their causes.
fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// TLS settings for a probe of a server with `[tls]`.
#[derive(Debug, Clone)]
pub struct ProbeTls(ClientTlsConfig);

impl ProbeTls {
    /// Trusting the CA in `ca` (PEM; the system's roots when `None`),
    /// presenting `identity` (certificate and key files) when set, and
    /// verifying the server's certificate against `domain` rather than the
    /// address's host when set; `None` when none is given.
    ///
    /// # Errors
    /// A message naming the file that cannot be read.
    pub fn from_files(
        ca: Option<&Path>,
        identity: Option<(&Path, &Path)>,
        domain: Option<&str>,
    ) -> Result<Option<Self>, String> {
        if ca.is_none() && identity.is_none() && domain.is_none() {
            return Ok(None);
        }
        let read = |path: &Path| {
            std::fs::read(path).map_err(|error| format!("cannot read {}: {error}", path.display()))
        };
        let mut config = ClientTlsConfig::new();
        config = match ca {
            Some(ca) => config.ca_certificate(Certificate::from_pem(read(ca)?)),
            None => config.with_native_roots(),
        };
        if let Some((cert, key)) = identity {
            config = config.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        if let Some(domain) = domain {
            config = config.domain_name(domain);
        }
        Ok(Some(Self(config)))
    }
}

/// Asks the server at `addr` (`host:port` or a URL) for the overall health
/// (service `""`), waiting at most `timeout` for the connection and again
/// for the answer.
pub async fn probe(addr: &str, timeout: Duration) -> Probe {
    probe_with(addr, timeout, None).await
}

/// As [`probe`], over TLS when `tls` is set (and `addr` names no scheme, or
/// `https://`).
pub async fn probe_with(addr: &str, timeout: Duration, tls: Option<&ProbeTls>) -> Probe {
    let uri = match (addr.contains("://"), tls) {
        (true, _) => addr.to_string(),
        (false, None) => format!("http://{addr}"),
        (false, Some(_)) => format!("https://{addr}"),
    };
    let endpoint = match Endpoint::from_shared(uri) {
        Ok(endpoint) => endpoint.connect_timeout(timeout).timeout(timeout),
        Err(error) => return Probe::Unreachable(format!("invalid address {addr:?}: {error}")),
    };
    let endpoint = match tls {
        Some(ProbeTls(config)) => match endpoint.tls_config(config.clone()) {
            Ok(endpoint) => endpoint,
            Err(error) => return Probe::Unreachable(format!("TLS: {}", causes(&error))),
        },
        None => endpoint,
    };
    let channel = match endpoint.connect().await {
        Ok(channel) => channel,
        Err(error) => {
            return Probe::Unreachable(format!("cannot connect to {addr}: {}", causes(&error)));
        }
    };
    let request = HealthCheckRequest {
        service: String::new(),
    };
    match HealthClient::new(channel).check(request).await {
        Ok(response) => match ServingStatus::try_from(response.into_inner().status) {
            Ok(ServingStatus::Serving) => Probe::Serving,
            Ok(status) => Probe::NotServing(status.as_str_name()),
            Err(_) => Probe::NotServing("UNKNOWN"),
        },
        Err(status) => Probe::Unreachable(format!(
            "health check at {addr} failed: {:?}: {}",
            status.code(),
            status.message()
        )),
    }
}

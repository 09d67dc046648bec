//! Connections to the other members, one HTTP/2 channel each, made on
//! first use and kept while the member's address stays the same.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use super::ClusterError;
use super::topology::Member;
use crate::config::Config;

/// How members are dialled: plaintext, or TLS with the CA that signs
/// their certificates (and this server's own certificate as the client's,
/// for members that ask for one).
#[derive(Debug, Clone)]
struct Dialling {
    tls: Option<TlsDialling>,
    connect_timeout: Duration,
}

#[derive(Debug, Clone)]
struct TlsDialling {
    ca: Certificate,
    identity: Option<Identity>,
    /// `cluster.tls_server_name`, checked instead of each member's host.
    server_name: Option<String>,
}

/// The channels to the other members.
#[derive(Debug)]
pub struct Peers {
    dialling: Dialling,
    channels: RwLock<HashMap<String, (String, Channel)>>,
}

impl Peers {
    /// Channels dialled as `config` says: TLS when the cluster names a CA
    /// or the server's own listener has TLS (then with `tls.client_ca`,
    /// and this server's certificate as its client certificate).
    ///
    /// # Errors
    /// [`ClusterError::Tls`] when a named file cannot be read.
    pub fn new(config: &Config) -> Result<Arc<Self>, ClusterError> {
        let cluster = &config.cluster;
        let ca = cluster.tls_ca.as_ref().or(if config.tls.enabled() {
            config.tls.client_ca.as_ref()
        } else {
            None
        });
        let tls = match ca {
            None if config.tls.enabled() => {
                return Err(ClusterError::Tls(
                    "the listener has TLS: set cluster.tls_ca (or tls.client_ca) to the CA \
                     that signs the members' certificates"
                        .to_string(),
                ));
            }
            None => None,
            Some(ca) => {
                let identity = match (&config.tls.cert, &config.tls.key) {
                    (Some(cert), Some(key)) => Some(Identity::from_pem(read(cert)?, read(key)?)),
                    _ => None,
                };
                Some(TlsDialling {
                    ca: Certificate::from_pem(read(ca)?),
                    identity,
                    server_name: cluster.tls_server_name.clone(),
                })
            }
        };
        Ok(Arc::new(Self {
            dialling: Dialling {
                tls,
                connect_timeout: Duration::from_millis(cluster.probe_timeout_ms),
            },
            channels: RwLock::default(),
        }))
    }

    /// Plaintext channels, for tests.
    pub fn plaintext(connect_timeout: Duration) -> Arc<Self> {
        Arc::new(Self {
            dialling: Dialling {
                tls: None,
                connect_timeout,
            },
            channels: RwLock::default(),
        })
    }

    /// The channel to `member`, made now if there is none yet for its
    /// address. It connects on first use and again after a failure.
    ///
    /// # Errors
    /// [`ClusterError::Address`] for an address that makes no URI, or
    /// [`ClusterError::Tls`] for TLS settings the endpoint refuses.
    pub fn channel(&self, member: &Member) -> Result<Channel, ClusterError> {
        if let Some((address, channel)) = self.channels.read().get(&member.id)
            && *address == member.address
        {
            return Ok(channel.clone());
        }
        let channel = self.dial(&member.address)?;
        self.channels
            .write()
            .insert(member.id.clone(), (member.address.clone(), channel.clone()));
        Ok(channel)
    }

    fn dial(&self, address: &str) -> Result<Channel, ClusterError> {
        let scheme = if self.dialling.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let endpoint = Endpoint::from_shared(format!("{scheme}://{address}"))
            .map_err(|error| ClusterError::Address(format!("{address}: {error}")))?
            .connect_timeout(self.dialling.connect_timeout)
            .tcp_nodelay(true)
            .http2_adaptive_window(false);
        let endpoint = match &self.dialling.tls {
            None => endpoint,
            Some(tls) => {
                let host = tls.server_name.as_deref().unwrap_or_else(|| {
                    address
                        .rsplit_once(':')
                        .map_or(address, |(host, _)| host)
                        .trim_start_matches('[')
                        .trim_end_matches(']')
                });
                let mut config = ClientTlsConfig::new()
                    .ca_certificate(tls.ca.clone())
                    .domain_name(host);
                if let Some(identity) = &tls.identity {
                    config = config.identity(identity.clone());
                }
                endpoint
                    .tls_config(config)
                    .map_err(|error| ClusterError::Tls(error.to_string()))?
            }
        };
        Ok(endpoint.connect_lazy())
    }
}

fn read(path: &Path) -> Result<Vec<u8>, ClusterError> {
    std::fs::read(path).map_err(|error| ClusterError::Tls(format!("{}: {error}", path.display())))
}

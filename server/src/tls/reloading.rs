//! A listener's rustls configuration, rebuilt from its files when they change
//! or on request, and swapped whole.
//!
//! A handshake takes the configuration in force when it starts, so open
//! connections keep the certificate they were made with and new ones get the
//! new one. A reload that fails (a missing file, a key that does not match
//! its certificate, a half-written file) logs one line and leaves the
//! configuration in force alone; the next change of the files tries again.
//!
//! Every reload builds a fresh configuration, session cache included: a
//! session resumed from before a reload would skip the new client CA.

use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::TlsError;
use crate::config::{ClientAuth, TlsSettings};

/// Reload requests, process-wide: SIGHUP concerns every listener at once.
static RELOADS: LazyLock<watch::Sender<u64>> = LazyLock::new(|| watch::channel(0).0);

/// Asks every running [`Reloader`] in this process to reload its
/// certificates, keys and client CAs now, changed or not. `shoal-server`
/// calls it on SIGHUP. Returns at once; the reload follows within
/// moments, and its outcome is logged.
pub fn reload_certificates() {
    RELOADS.send_modify(|generation| *generation = generation.wrapping_add(1));
}

/// The files one listener's TLS is made from.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Sources {
    cert: PathBuf,
    key: PathBuf,
    /// The client CA, with client certificates optional or required.
    client_ca: Option<(PathBuf, ClientAuth)>,
    alpn: Vec<Vec<u8>>,
}

impl Sources {
    fn paths(&self) -> impl Iterator<Item = &Path> {
        [self.cert.as_path(), self.key.as_path()]
            .into_iter()
            .chain(self.client_ca.as_ref().map(|(path, _)| path.as_path()))
    }
}

/// Modification time and length of each file, as last loaded or tried.
type Fingerprint = Vec<Option<(SystemTime, u64)>>;

/// One listener's TLS: the configuration new handshakes use, and where it
/// comes from.
#[derive(Debug)]
pub struct ListenerTls {
    name: &'static str,
    sources: Sources,
    current: ArcSwap<ServerConfig>,
    /// The files' state when last loaded or tried, so that a failed reload
    /// is logged once rather than at every poll.
    seen: Mutex<Fingerprint>,
}

impl ListenerTls {
    /// The gRPC listener's TLS (ALPN `h2`), or `None` when `settings` turn
    /// TLS off.
    ///
    /// # Errors
    /// When a file cannot be read or rustls refuses what it holds.
    pub fn grpc(settings: &TlsSettings) -> Result<Option<Arc<Self>>, TlsError> {
        let (Some(cert), Some(key)) = (&settings.cert, &settings.key) else {
            return Ok(None);
        };
        let client_ca = match (&settings.client_ca, settings.client_auth) {
            (Some(path), auth @ (ClientAuth::Optional | ClientAuth::Required)) => {
                Some((path.clone(), auth))
            }
            _ => None,
        };
        let sources = Sources {
            cert: cert.clone(),
            key: key.clone(),
            client_ca,
            alpn: vec![b"h2".to_vec()],
        };
        Self::load("grpc", sources).map(Some)
    }

    /// The admin listener's TLS (ALPN `http/1.1`, no client certificate
    /// asked), or `None` when it is plain HTTP.
    ///
    /// # Errors
    /// As [`ListenerTls::grpc`].
    pub fn admin(settings: &TlsSettings) -> Result<Option<Arc<Self>>, TlsError> {
        if !settings.admin_enabled() {
            return Ok(None);
        }
        let (Some(cert), Some(key)) = (
            settings.admin_cert.as_ref().or(settings.cert.as_ref()),
            settings.admin_key.as_ref().or(settings.key.as_ref()),
        ) else {
            return Ok(None);
        };
        let sources = Sources {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: None,
            alpn: vec![b"http/1.1".to_vec()],
        };
        Self::load("admin", sources).map(Some)
    }

    fn load(name: &'static str, sources: Sources) -> Result<Arc<Self>, TlsError> {
        let seen = fingerprint(&sources);
        let config = build(&sources)?;
        Ok(Arc::new(Self {
            name,
            sources,
            current: ArcSwap::from_pointee(config),
            seen: Mutex::new(seen),
        }))
    }

    /// The configuration a handshake starting now uses.
    pub fn config(&self) -> Arc<ServerConfig> {
        self.current.load_full()
    }

    /// Which listener this is (`grpc` or `admin`), for logs.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Reads the files again and, when they make a valid configuration,
    /// puts it in force for new handshakes.
    ///
    /// # Errors
    /// As [`ListenerTls::grpc`]; the configuration in force is kept.
    pub fn reload(&self) -> Result<(), TlsError> {
        let seen = fingerprint(&self.sources);
        let built = build(&self.sources);
        *self.seen.lock() = seen;
        self.current.store(Arc::new(built?));
        Ok(())
    }

    /// Reloads when a file changed since it was last loaded or tried, and
    /// logs the outcome.
    fn reload_if_changed(&self) {
        if fingerprint(&self.sources) != *self.seen.lock() {
            self.reload_logged();
        }
    }

    fn reload_logged(&self) {
        match self.reload() {
            Ok(()) => tracing::info!(
                listener = self.name,
                cert = %self.sources.cert.display(),
                "TLS certificate reloaded"
            ),
            Err(error) => tracing::error!(
                listener = self.name,
                %error,
                "TLS reload failed; the certificate in force is kept"
            ),
        }
    }
}

fn fingerprint(sources: &Sources) -> Fingerprint {
    sources
        .paths()
        .map(|path| {
            let metadata = std::fs::metadata(path).ok()?;
            Some((metadata.modified().ok()?, metadata.len()))
        })
        .collect()
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Every certificate in a PEM file, in order.
fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem_error = |reason: String| TlsError::Pem {
        path: path.to_path_buf(),
        reason,
    };
    let text = read(path)?;
    let certificates = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| pem_error(format!("not PEM certificates: {error}")))?;
    if certificates.is_empty() {
        return Err(pem_error("holds no CERTIFICATE block".to_string()));
    }
    Ok(certificates)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let text = read(path)?;
    PrivateKeyDer::from_pem_slice(&text).map_err(|error| TlsError::Pem {
        path: path.to_path_buf(),
        reason: format!("no private key (PKCS#8, PKCS#1 or SEC1 PEM): {error}"),
    })
}

fn build(sources: &Sources) -> Result<ServerConfig, TlsError> {
    // ring, as the client side (tonic's `tls-ring`) uses: it builds with no
    // C toolchain beyond a compiler. Post-quantum key exchange would take
    // aws-lc-rs.
    //
    // AES-128-GCM first, and the server's order wins over the client's: on
    // CPUs with AES instructions it is the cheapest suite per record (ten
    // AES rounds where AES-256 takes fourteen), and a cache sends many small
    // records. Go's crypto/tls makes the same choice.
    #[allow(deprecated)]
    let mut provider = rustls::crypto::ring::default_provider();
    provider
        .cipher_suites
        .sort_by_key(|suite| suite_preference(suite.suite()));
    let provider = Arc::new(provider);
    let rustls_error = |what: &str| {
        let what = what.to_string();
        move |source| TlsError::Rustls { what, source }
    };
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(rustls_error("TLS versions"))?;
    let builder = match &sources.client_ca {
        None => builder.with_no_client_auth(),
        Some((path, auth)) => {
            let mut roots = rustls::RootCertStore::empty();
            for certificate in read_certificates(path)? {
                roots
                    .add(certificate)
                    .map_err(rustls_error(&format!("client CA {}", path.display())))?;
            }
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider));
            let verifier = match auth {
                ClientAuth::Optional => verifier.allow_unauthenticated(),
                _ => verifier,
            };
            let verifier = verifier.build().map_err(|source| TlsError::ClientCa {
                path: path.clone(),
                source,
            })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let certificates = read_certificates(&sources.cert)?;
    if let Some(not_after) = super::identity::not_after(&certificates[0])
        && not_after < SystemTime::now()
    {
        tracing::warn!(
            cert = %sources.cert.display(),
            "the TLS certificate has expired; clients will refuse it"
        );
    }
    let key = read_key(&sources.key)?;
    let mut config = builder
        .with_single_cert(certificates, key)
        .map_err(rustls_error(&format!(
            "certificate {} with key {}",
            sources.cert.display(),
            sources.key.display()
        )))?;
    config.alpn_protocols = sources.alpn.clone();
    config.ignore_client_order = true;
    Ok(config)
}

/// Where a cipher suite stands in the server's order (lower first): the
/// AES-128-GCM suites, then AES-256-GCM, then the rest in ring's order.
fn suite_preference(suite: rustls::CipherSuite) -> u8 {
    use rustls::CipherSuite as Suite;
    match suite {
        Suite::TLS13_AES_128_GCM_SHA256
        | Suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
        | Suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => 0,
        Suite::TLS13_AES_256_GCM_SHA384
        | Suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
        | Suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => 1,
        _ => 2,
    }
}

/// Polls the listeners' files and answers [`reload_certificates`] until
/// dropped.
#[derive(Debug)]
pub struct Reloader {
    task: JoinHandle<()>,
}

impl Reloader {
    /// Watches `listeners`: their files every `interval` (never when
    /// `None`), and reload requests.
    pub fn start(listeners: Vec<Arc<ListenerTls>>, interval: Option<Duration>) -> Self {
        let mut requests = RELOADS.subscribe();
        let task = tokio::spawn(async move {
            loop {
                let requested = tokio::select! {
                    changed = requests.changed() => changed.is_ok(),
                    () = poll_after(interval) => false,
                };
                for listener in &listeners {
                    if requested {
                        listener.reload_logged();
                    } else {
                        listener.reload_if_changed();
                    }
                }
            }
        });
        Self { task }
    }
}

async fn poll_after(interval: Option<Duration>) {
    match interval {
        Some(interval) => tokio::time::sleep(interval).await,
        None => std::future::pending().await,
    }
}

impl Drop for Reloader {
    fn drop(&mut self) {
        self.task.abort();
    }
}

//! Throwaway certificates for development and tests: a CA, a server
//! certificate for `localhost`, `127.0.0.1` and `::1`, and a client
//! certificate, as `shoal-server dev-cert --out DIR` writes them.
//!
//! Keys are ECDSA P-256, made fresh every time; nothing here is fit for
//! production, where certificates come from the organisation's CA.
//!
//! ```
//! use shoal_server::tls::dev_cert::{DevCa, Leaf};
//!
//! let ca = DevCa::new("example CA").unwrap();
//! let server = ca.issue(&Leaf::server(&["localhost", "127.0.0.1"])).unwrap();
//! assert!(server.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
//! assert!(server.key_pem.contains("PRIVATE KEY"));
//! ```

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

use super::TlsError;

/// How long development certificates are valid from when they are made.
const VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);

/// The URI subject alternative name of the development client certificate.
pub const DEV_CLIENT_URI: &str = "spiffe://shoal/dev-client";

/// The DNS subject alternative name of the development client certificate.
pub const DEV_CLIENT_DNS: &str = "dev-client.shoal.local";

fn failed(error: rcgen::Error) -> TlsError {
    TlsError::DevCert(error.to_string())
}

/// A certificate and its private key, in PEM.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate.
    pub cert_pem: String,
    /// Its private key (PKCS#8).
    pub key_pem: String,
}

/// What a certificate [`DevCa::issue`] makes is for.
#[derive(Debug, Clone)]
pub struct Leaf {
    /// Subject common name.
    pub common_name: String,
    /// DNS names and IP addresses (each written as text).
    pub names: Vec<String>,
    /// URI subject alternative names, such as `spiffe://shoal/app`.
    pub uris: Vec<String>,
    /// A client certificate (extended key usage clientAuth) rather than a
    /// server one (serverAuth).
    pub client: bool,
    /// From when to when it is valid; a year from now when `None`.
    pub validity: Option<(SystemTime, SystemTime)>,
}

impl Leaf {
    /// A server certificate for these names.
    pub fn server(names: &[&str]) -> Self {
        Self {
            common_name: names.first().copied().unwrap_or("shoal").to_string(),
            names: names.iter().map(|name| name.to_string()).collect(),
            uris: Vec::new(),
            client: false,
            validity: None,
        }
    }

    /// A client certificate naming these URIs and DNS names.
    pub fn client(uris: &[&str], names: &[&str]) -> Self {
        Self {
            common_name: uris
                .first()
                .or(names.first())
                .copied()
                .unwrap_or("client")
                .to_string(),
            names: names.iter().map(|name| name.to_string()).collect(),
            uris: uris.iter().map(|uri| uri.to_string()).collect(),
            client: true,
            validity: None,
        }
    }

    /// The same, valid from `not_before` to `not_after`.
    pub fn valid(mut self, not_before: SystemTime, not_after: SystemTime) -> Self {
        self.validity = Some((not_before, not_after));
        self
    }
}

/// A certificate authority whose key lives only in memory.
pub struct DevCa {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for DevCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevCa").finish_non_exhaustive()
    }
}

impl DevCa {
    /// A new CA named `name`, valid for a year.
    ///
    /// # Errors
    /// [`TlsError::DevCert`] when the key or certificate cannot be made.
    pub fn new(name: &str) -> Result<Self, TlsError> {
        let key = KeyPair::generate().map_err(failed)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = named(name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        set_validity(&mut params, None);
        let cert = params.self_signed(&key).map_err(failed)?;
        Ok(Self {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA's certificate, in PEM: what clients (`--tls-ca`) and the
    /// server (`tls.client_ca`) trust.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A certificate signed by this CA, with a new key.
    ///
    /// # Errors
    /// [`TlsError::DevCert`] when a name is not valid in a certificate or
    /// signing fails.
    pub fn issue(&self, leaf: &Leaf) -> Result<Issued, TlsError> {
        let key = KeyPair::generate().map_err(failed)?;
        let mut params = CertificateParams::new(leaf.names.clone()).map_err(failed)?;
        for uri in &leaf.uris {
            let uri = uri.as_str().try_into().map_err(failed)?;
            params.subject_alt_names.push(SanType::URI(uri));
        }
        params.distinguished_name = named(&leaf.common_name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![if leaf.client {
            ExtendedKeyUsagePurpose::ClientAuth
        } else {
            ExtendedKeyUsagePurpose::ServerAuth
        }];
        params.use_authority_key_identifier_extension = true;
        set_validity(&mut params, leaf.validity);
        let cert = params.signed_by(&key, &self.issuer).map_err(failed)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

fn named(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name.push(DnType::OrganizationName, "shoal development");
    name
}

fn set_validity(params: &mut CertificateParams, validity: Option<(SystemTime, SystemTime)>) {
    let (not_before, not_after) = validity.unwrap_or_else(|| {
        // An hour back, for clocks a little behind this one.
        let now = SystemTime::now();
        (now - Duration::from_secs(3600), now + VALIDITY)
    });
    params.not_before = not_before.into();
    params.not_after = not_after.into();
}

/// The files [`write`] makes, by what they are.
#[derive(Debug, Clone)]
pub struct DevCertFiles {
    /// The CA certificate.
    pub ca: PathBuf,
    /// The server certificate.
    pub server_cert: PathBuf,
    /// The server key (mode 0600).
    pub server_key: PathBuf,
    /// The client certificate.
    pub client_cert: PathBuf,
    /// The client key (mode 0600).
    pub client_key: PathBuf,
}

/// Makes a CA, a server certificate for `localhost`, `127.0.0.1` and `::1`
/// and a client certificate ([`DEV_CLIENT_URI`], [`DEV_CLIENT_DNS`]), and
/// writes them to `dir` (made if missing) as `ca.pem`, `server.pem`,
/// `server-key.pem`, `client.pem` and `client-key.pem`, the keys readable
/// by their owner only.
///
/// # Errors
/// [`TlsError::DevCert`] when a certificate cannot be made,
/// [`TlsError::Write`] (naming the file) when one cannot be written.
pub fn write(dir: &Path) -> Result<DevCertFiles, TlsError> {
    write_with_names(dir, &[])
}

/// The names every development server certificate carries.
pub const DEV_SERVER_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// As [`write`], with `extra_names` (DNS names or IP addresses, such as a
/// compose service's or a Kubernetes Service's name) in the server
/// certificate beside [`DEV_SERVER_NAMES`].
///
/// # Errors
/// As [`write`].
pub fn write_with_names(dir: &Path, extra_names: &[String]) -> Result<DevCertFiles, TlsError> {
    let ca = DevCa::new("shoal development CA")?;
    let mut names: Vec<&str> = DEV_SERVER_NAMES.to_vec();
    names.extend(extra_names.iter().map(String::as_str));
    let server = ca.issue(&Leaf::server(&names))?;
    let client = ca.issue(&Leaf::client(&[DEV_CLIENT_URI], &[DEV_CLIENT_DNS]))?;
    std::fs::create_dir_all(dir).map_err(|source| TlsError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let files = DevCertFiles {
        ca: dir.join("ca.pem"),
        server_cert: dir.join("server.pem"),
        server_key: dir.join("server-key.pem"),
        client_cert: dir.join("client.pem"),
        client_key: dir.join("client-key.pem"),
    };
    write_file(&files.ca, ca.cert_pem(), false)?;
    write_file(&files.server_cert, &server.cert_pem, false)?;
    write_file(&files.server_key, &server.key_pem, true)?;
    write_file(&files.client_cert, &client.cert_pem, false)?;
    write_file(&files.client_key, &client.key_pem, true)?;
    Ok(files)
}

/// Writes `text` to `path`, replacing it; a secret is mode 0600 from the
/// moment it exists.
///
/// # Errors
/// [`TlsError::Write`] naming the file.
pub fn write_file(path: &Path, text: &str, secret: bool) -> Result<(), TlsError> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let written = options.open(path).and_then(|mut file| {
        #[cfg(unix)]
        if secret {
            // An existing file keeps its mode through `open`: set it.
            use std::os::unix::fs::PermissionsExt as _;
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
        file.write_all(text.as_bytes())
    });
    written.map_err(|source| TlsError::Write {
        path: path.to_path_buf(),
        source,
    })
}

//! What a verified client certificate says about its holder.

use std::time::{Duration, SystemTime};

use rustls::pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;

/// The identities a client certificate names: its URI subject alternative
/// names (such as `spiffe://shoal/dev-client`), then its DNS names, as
/// written. Empty when it names neither or cannot be parsed (rustls has
/// already verified it, so the latter does not happen in practice).
pub fn client_identities(certificate: &CertificateDer<'_>) -> Vec<String> {
    let Ok((_, parsed)) = x509_parser::parse_x509_certificate(certificate) else {
        return Vec::new();
    };
    let Ok(Some(names)) = parsed.subject_alternative_name() else {
        return Vec::new();
    };
    let names = &names.value.general_names;
    let uris = names.iter().filter_map(|name| match name {
        GeneralName::URI(uri) => Some(uri.to_string()),
        _ => None,
    });
    let dns = names.iter().filter_map(|name| match name {
        GeneralName::DNSName(dns) => Some(dns.to_string()),
        _ => None,
    });
    uris.chain(dns).collect()
}

/// When a certificate stops being valid, if it parses.
pub(super) fn not_after(certificate: &CertificateDer<'_>) -> Option<SystemTime> {
    let (_, parsed) = x509_parser::parse_x509_certificate(certificate).ok()?;
    let seconds = u64::try_from(parsed.validity().not_after.timestamp()).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(seconds))
}

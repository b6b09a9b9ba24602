//! Loading and checking the `[[tls.certificate]]` files (spec §9): PEM chains and keys
//! (PKCS#8, PKCS#1, SEC1) read with `rustls-pki-types`, the key matched against the leaf
//! certificate, the names a certificate serves read from its subjectAltName, and an
//! expired certificate reported as a warning naming it. Runs at `--check`, at start and
//! at every reload: a certificate that fails here fails the whole configuration, so a
//! reload keeps the old set.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

use super::TlsVersion;

/// Ciphertext and plaintext rustls may queue per connection (its buffer limit), so a slow
/// reader cannot grow a TLS connection's memory: the size of a response buffer.
pub const TLS_BUFFER_LIMIT: usize = 64 * 1024;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The cryptography lbd's TLS uses: rustls's *ring* provider (spec §9: ring, never
/// OpenSSL or aws-lc). rustls 0.23.48 deprecates it for lacking post-quantum key
/// exchange; the choice is the spec's, so the warning is silenced here, in the one place
/// that names the provider.
#[allow(deprecated)]
pub fn crypto_provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// `[tls]` validated: its certificates and the rustls configuration built from them
/// (shared by every connection of a snapshot; a reload builds a new one).
#[derive(Debug, Clone)]
pub struct TlsServer {
    /// What every new TLS connection is made from.
    pub server: Arc<ServerConfig>,
    /// The certificates, in file order.
    pub certificates: Vec<LoadedCertificate>,
}

/// One certificate chain with its key, ready for handshakes.
#[derive(Debug, Clone)]
pub struct LoadedCertificate {
    /// The chain (leaf first) and the signing key.
    pub key: Arc<CertifiedKey>,
    /// The subjectAltName DNS names of the leaf, lower-case (`*.example.com` kept as is).
    pub names: Vec<String>,
    /// The leaf's notAfter, when it could be read.
    pub not_after: Option<SystemTime>,
}

/// Loads `cert` and `key` (the error names the file and what is wrong with it).
pub fn load(cert: &Path, key: &Path) -> Result<LoadedCertificate, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("cannot read {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{} is not a PEM certificate chain: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("{} holds no certificate", cert.display()));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| match e {
        rustls_pki_types::pem::Error::Io(e) => format!("cannot read {}: {e}", key.display()),
        e => format!(
            "{} is not a PEM private key (PKCS#8, PKCS#1 or SEC1): {e}",
            key.display()
        ),
    })?;
    let provider = crypto_provider();
    let certified = CertifiedKey::from_der(chain, private, &provider).map_err(|e| {
        format!(
            "{} does not match the certificate {}: {e}",
            key.display(),
            cert.display()
        )
    })?;
    // `from_der` parsed the leaf when it matched the key, so its DER is well formed.
    let leaf = certified.end_entity_cert().map_err(|e| e.to_string())?;
    let names = san_dns_names(leaf.as_ref())
        .ok_or_else(|| format!("{}: unreadable subjectAltName", cert.display()))?
        .into_iter()
        .map(|n| n.to_ascii_lowercase())
        .collect();
    Ok(LoadedCertificate {
        names,
        not_after: not_after(leaf.as_ref()),
        key: Arc::new(certified),
    })
}

/// The rustls server configuration for these certificates: TLS 1.3 and (unless
/// `min_version = "1.3"`) 1.2, rustls's default cipher suites, ALPN `http/1.1`, and the
/// certificate chosen by SNI ([`SniResolver`]).
pub fn server_config(
    certificates: &[LoadedCertificate],
    min_version: TlsVersion,
) -> Result<Arc<ServerConfig>, String> {
    let versions: &[&rustls::SupportedProtocolVersion] = match min_version {
        TlsVersion::V1_2 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::V1_3 => &[&rustls::version::TLS13],
    };
    let mut config = ServerConfig::builder_with_provider(Arc::new(crypto_provider()))
        .with_protocol_versions(versions)
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SniResolver::new(certificates)));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Picks a certificate by the client's SNI: an exact subjectAltName beats a wildcard
/// (`*.example.com` covers one label: `a.example.com`, not `example.com` nor
/// `a.b.example.com`, RFC 6125 §6.4.3); no SNI or no match gets the first certificate.
#[derive(Debug)]
struct SniResolver {
    keys: Vec<Arc<CertifiedKey>>,
    /// Lower-case exact name to index; the first certificate naming it wins.
    exact: HashMap<String, usize>,
    /// Lower-case parent domain of a wildcard (`example.com` for `*.example.com`).
    wildcard: HashMap<String, usize>,
}

impl SniResolver {
    fn new(certificates: &[LoadedCertificate]) -> SniResolver {
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        for (i, c) in certificates.iter().enumerate() {
            for name in &c.names {
                match name.strip_prefix("*.") {
                    Some(parent) => wildcard.entry(parent.to_string()).or_insert(i),
                    None => exact.entry(name.clone()).or_insert(i),
                };
            }
        }
        SniResolver {
            keys: certificates.iter().map(|c| Arc::clone(&c.key)).collect(),
            exact,
            wildcard,
        }
    }

    /// The certificate index for a server name.
    fn index(&self, name: &str) -> Option<usize> {
        let name = name.to_ascii_lowercase();
        if let Some(&i) = self.exact.get(&name) {
            return Some(i);
        }
        let (_, parent) = name.split_once('.')?;
        self.wildcard.get(parent).copied()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let i = hello.server_name().and_then(|n| self.index(n)).unwrap_or(0);
        self.keys.get(i).cloned()
    }
}

/// A minimal DER reader: `(tag, contents, rest)` of the element at the start of `der`.
fn element(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |a, &b| a << 8 | usize::from(b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// The fields of a certificate's TBSCertificate, in order.
fn tbs_fields(der: &[u8]) -> Option<Vec<(u8, &[u8])>> {
    let (_, cert, _) = element(der)?; // Certificate SEQUENCE
    let (_, tbs, _) = element(cert)?; // TBSCertificate SEQUENCE
    let mut fields = Vec::new();
    let mut rest = tbs;
    while !rest.is_empty() {
        let (tag, contents, next) = element(rest)?;
        fields.push((tag, contents));
        rest = next;
    }
    Some(fields)
}

/// RFC 5280 §4.1: version [0] is optional; then serial, signature, issuer, validity,
/// subject, subjectPublicKeyInfo, then optional [1], [2], and extensions [3].
fn validity_and_extensions(der: &[u8]) -> Option<(&[u8], Option<&[u8]>)> {
    let fields = tbs_fields(der)?;
    let skip = usize::from(fields.first()?.0 == 0xa0);
    let validity = fields.get(skip + 3)?;
    let extensions = fields.iter().find(|(tag, _)| *tag == 0xa3).map(|f| f.1);
    Some((validity.1, extensions))
}

/// The dNSName entries of the subjectAltName extension (OID 2.5.29.17). rustls checks
/// names against a certificate but does not list them, so they are read from the DER.
fn san_dns_names(der: &[u8]) -> Option<Vec<String>> {
    const SAN: &[u8] = &[0x55, 0x1d, 0x11];
    let (_, extensions) = validity_and_extensions(der)?;
    let mut names = Vec::new();
    let Some(extensions) = extensions else {
        return Some(names);
    };
    let (_, mut list, _) = element(extensions)?;
    while !list.is_empty() {
        let (_, ext, next) = element(list)?;
        list = next;
        let (_, oid, mut rest) = element(ext)?;
        if oid != SAN {
            continue;
        }
        let (tag, _, after) = element(rest)?;
        if tag == 0x01 {
            rest = after; // critical BOOLEAN
        }
        let (_, octets, _) = element(rest)?;
        let (_, mut general_names, _) = element(octets)?;
        while !general_names.is_empty() {
            let (tag, value, next) = element(general_names)?;
            general_names = next;
            if tag == 0x82 {
                names.push(String::from_utf8(value.to_vec()).ok()?);
            }
        }
    }
    Some(names)
}

/// The leaf's notAfter (UTCTime or GeneralizedTime), as a `SystemTime`.
fn not_after(der: &[u8]) -> Option<SystemTime> {
    let (validity, _) = validity_and_extensions(der)?;
    let (_, _, rest) = element(validity)?; // notBefore
    let (tag, time, _) = element(rest)?;
    let text = std::str::from_utf8(time).ok()?;
    let digits = text.strip_suffix('Z')?;
    let (year, rest) = match tag {
        0x17 if digits.len() == 12 => {
            let yy: i64 = digits[..2].parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &digits[2..])
        }
        0x18 if digits.len() == 14 => (digits[..4].parse().ok()?, &digits[4..]),
        _ => return None,
    };
    let field = |i: usize| rest.get(i..i + 2)?.parse::<i64>().ok();
    let (month, day) = (field(0)?, field(2)?);
    let secs =
        days_from_civil(year, month, day)? * 86_400 + field(4)? * 3600 + field(6)? * 60 + field(8)?;
    Some(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(secs).ok()?))
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> Option<i64> {
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_days() {
        assert_eq!(days_from_civil(1970, 1, 1), Some(0));
        assert_eq!(days_from_civil(2000, 3, 1), Some(11_017));
        assert_eq!(days_from_civil(2026, 13, 1), None);
    }

    #[test]
    fn names_and_expiry_of_a_generated_certificate() {
        let mut params =
            rcgen::CertificateParams::new(vec!["Example.com".into(), "*.example.com".into()])
                .unwrap();
        params.not_after = rcgen::date_time_ymd(2031, 7, 9);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let der = cert.der().as_ref();
        assert_eq!(
            san_dns_names(der).unwrap(),
            vec!["Example.com".to_string(), "*.example.com".to_string()]
        );
        let want = SystemTime::UNIX_EPOCH
            + std::time::Duration::from_secs(days_from_civil(2031, 7, 9).unwrap() as u64 * 86_400);
        assert_eq!(not_after(der), Some(want));
    }
}

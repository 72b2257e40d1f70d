//! The secrets bundle of one Talos cluster (generated once, when the cluster is created),
//! client certificates for the Talos machine API and the Kubernetes API, and TLS server
//! certificates signed by a cluster CA.
//!
//! What is generated follows Talos' own `secrets.Bundle`:
//! - cluster id, cluster secret and secretbox secret: 32 random bytes each, standard base64;
//! - bootstrap (Kubernetes) token and trustd token: `[a-z0-9]{6}.[a-z0-9]{16}`;
//! - the OS (Talos API) CA is Ed25519; the etcd, Kubernetes and aggregator (front-proxy) CAs are
//!   ECDSA P-256; all CAs are valid 10 years ([`CA_VALIDITY`]);
//! - the Kubernetes service-account key is RSA-4096.
//!
//! # Key encodings
//! Private keys are PEM encoded exactly the way Talos itself writes them, because Talos
//! (`siderolabs/crypto` `x509.PEMEncodedCertificateAndKey.GetKey`) only accepts these PEM types:
//! - Ed25519: `ED25519 PRIVATE KEY`, PKCS#8 v1 content (what Go's `MarshalPKCS8PrivateKey` writes);
//! - ECDSA P-256: `EC PRIVATE KEY`, SEC1 `ECPrivateKey` with the named curve;
//! - RSA: `RSA PRIVATE KEY`, PKCS#1.
//!
//! Certificates are `CERTIFICATE` PEM. In the machine configuration, both are base64 of the PEM.
//! Private keys and shared secrets are [`SecretString`]s, so `Debug` never shows them.

use std::net::IpAddr;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, Utc};
use rand::rngs::OsRng;
use rand::{Rng as _, RngCore as _};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PKCS_ED25519, SanType, SerialNumber,
    SignatureAlgorithm,
};
use secrecy::{ExposeSecret as _, SecretString};

/// Validity of every CA of the bundle: 10 years (Talos: 87600h).
pub const CA_VALIDITY: Duration = Duration::from_secs(87_600 * 3600);

/// Size in bits of the Kubernetes service-account RSA key.
pub const SERVICE_ACCOUNT_KEY_BITS: usize = 4096;

/// Client certificates are valid from this long before "now", to tolerate clock skew between
/// the control plane and the nodes.
pub const CLIENT_CERT_BACKDATE: Duration = Duration::from_secs(5 * 60);

/// Characters of bootstrap and trustd tokens.
const TOKEN_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// PEM types written (and read) by this crate, as Talos names them.
pub const PEM_CERTIFICATE: &str = "CERTIFICATE";
pub const PEM_ED25519_PRIVATE_KEY: &str = "ED25519 PRIVATE KEY";
pub const PEM_EC_PRIVATE_KEY: &str = "EC PRIVATE KEY";
pub const PEM_RSA_PRIVATE_KEY: &str = "RSA PRIVATE KEY";
/// Generic PKCS#8; accepted when reading a CA key, never written.
pub const PEM_PKCS8_PRIVATE_KEY: &str = "PRIVATE KEY";

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("RSA key generation failed: {0}")]
    Rsa(#[from] rsa::Error),
    #[error("RSA key encoding failed: {0}")]
    Pkcs1(#[from] rsa::pkcs1::Error),
    #[error("invalid PEM: {0}")]
    Pem(#[from] pem::PemError),
    #[error("invalid certificate: {0}")]
    Certificate(String),
    #[error("invalid private key: {0}")]
    Key(String),
    #[error("time out of range")]
    TimeOutOfRange,
}

/// A PEM certificate and its PEM private key.
#[derive(Clone, Debug)]
pub struct CertAndKey {
    pub cert_pem: String,
    pub key_pem: SecretString,
}

/// Secrets of one Talos cluster. See the crate documentation for the formats.
#[derive(Clone, Debug)]
pub struct SecretsBundle {
    /// `cluster.id`: 32 random bytes, standard base64.
    pub cluster_id: String,
    /// `cluster.secret`: 32 random bytes, standard base64.
    pub cluster_secret: SecretString,
    /// `cluster.token`: `[a-z0-9]{6}.[a-z0-9]{16}`.
    pub bootstrap_token: SecretString,
    /// `machine.token`: `[a-z0-9]{6}.[a-z0-9]{16}`.
    pub trustd_token: SecretString,
    /// `cluster.secretboxEncryptionSecret`: 32 random bytes, standard base64.
    pub secretbox_secret: SecretString,
    /// `machine.ca`: Ed25519, the Talos API CA.
    pub os_ca: CertAndKey,
    /// `cluster.etcd.ca`: ECDSA P-256.
    pub etcd_ca: CertAndKey,
    /// `cluster.ca`: ECDSA P-256.
    pub kubernetes_ca: CertAndKey,
    /// `cluster.aggregatorCA`: ECDSA P-256.
    pub aggregator_ca: CertAndKey,
    /// `cluster.serviceAccount.key`: RSA-4096, PKCS#1 PEM (`RSA PRIVATE KEY`), as Talos writes it.
    pub service_account_key: SecretString,
}

impl SecretsBundle {
    /// Generates every secret of a new cluster. CAs are valid from `now` for [`CA_VALIDITY`].
    ///
    /// Generating the RSA-4096 key dominates the cost (well under a second in release builds,
    /// much longer in unoptimised ones).
    pub fn generate(cluster_name: &str, now: DateTime<Utc>) -> Result<Self, PkiError> {
        validate_cluster_name(cluster_name)?;
        let service_account_key = generate_service_account_key()?;
        Self::generate_with_service_account_key(cluster_name, now, service_account_key)
    }

    /// Everything but the RSA key, which is given (lets tests avoid repeated RSA generation).
    pub(crate) fn generate_with_service_account_key(
        cluster_name: &str,
        now: DateTime<Utc>,
        service_account_key: SecretString,
    ) -> Result<Self, PkiError> {
        validate_cluster_name(cluster_name)?;
        Ok(Self {
            cluster_id: random_base64_32(),
            cluster_secret: random_base64_32().into(),
            bootstrap_token: generate_token().into(),
            trustd_token: generate_token().into(),
            secretbox_secret: random_base64_32().into(),
            os_ca: generate_ca(&PKCS_ED25519, "talos", cluster_name, now)?,
            etcd_ca: generate_ca(&PKCS_ECDSA_P256_SHA256, "etcd", cluster_name, now)?,
            kubernetes_ca: generate_ca(&PKCS_ECDSA_P256_SHA256, "kubernetes", cluster_name, now)?,
            aggregator_ca: generate_ca(&PKCS_ECDSA_P256_SHA256, "front-proxy", cluster_name, now)?,
            service_account_key,
        })
    }
}

/// A client certificate for the Talos API, signed by the OS CA, valid from now (minus
/// [`CLIENT_CERT_BACKDATE`]) for `valid_for`. See [`talos_client_cert_at`].
pub fn talos_client_cert(
    os_ca: &CertAndKey,
    common_name: &str,
    role: &str,
    valid_for: Duration,
) -> Result<CertAndKey, PkiError> {
    talos_client_cert_at(os_ca, common_name, role, valid_for, Utc::now())
}

/// A client certificate for the Talos API signed by the OS CA: key type Ed25519 (the OS CA's),
/// Subject CN = `common_name`, Subject Organization = `role` (e.g. `os:admin`,
/// `os:impersonator`), ExtKeyUsage exactly ClientAuth, KeyUsage digitalSignature, not a CA,
/// valid from `now - CLIENT_CERT_BACKDATE` to `now + valid_for`.
pub fn talos_client_cert_at(
    os_ca: &CertAndKey,
    common_name: &str,
    role: &str,
    valid_for: Duration,
    now: DateTime<Utc>,
) -> Result<CertAndKey, PkiError> {
    if common_name.trim().is_empty() {
        return Err(PkiError::InvalidArgument("common name is empty".into()));
    }
    if role.trim().is_empty() {
        return Err(PkiError::InvalidArgument("role is empty".into()));
    }
    if valid_for.is_zero() {
        return Err(PkiError::InvalidArgument("validity is zero".into()));
    }

    let ca_key = load_key_pair(os_ca.key_pem.expose_secret())?;
    if ca_key.algorithm() != &PKCS_ED25519 {
        return Err(PkiError::Key("the OS CA key is not Ed25519".into()));
    }
    check_cert_matches_key(&os_ca.cert_pem, &ca_key)?;
    // Rebuilt from the CA certificate: the issuer name and key identifier come from it; the
    // re-signed certificate itself is only used as the issuer description.
    let ca_cert = CertificateParams::from_ca_cert_pem(&os_ca.cert_pem)?.self_signed(&ca_key)?;

    let now = to_offset(now)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::OrganizationName, role);
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(random_serial());
    params.not_before = now - to_time_duration(CLIENT_CERT_BACKDATE)?;
    params.not_after = now
        .checked_add(to_time_duration(valid_for)?)
        .ok_or(PkiError::TimeOutOfRange)?;

    let key = KeyPair::generate_for(&PKCS_ED25519)?;
    let cert = params.signed_by(&key, &ca_cert, &ca_key)?;
    Ok(CertAndKey {
        cert_pem: cert.pem(),
        key_pem: encode_private_key(&key)?,
    })
}

/// A new OS (Talos API) CA, exactly as [`SecretsBundle::generate`] makes `machine.ca`: Ed25519,
/// CN `talos`, O = `cluster_name`, valid from `now` for [`CA_VALIDITY`]. For callers (and tests)
/// that need only this CA, without the cost of a whole bundle.
pub fn generate_os_ca(cluster_name: &str, now: DateTime<Utc>) -> Result<CertAndKey, PkiError> {
    validate_cluster_name(cluster_name)?;
    generate_ca(&PKCS_ED25519, "talos", cluster_name, now)
}

/// A CA for one of Drover's own services (e.g. the Kubernetes proxy's serving certificates):
/// ECDSA P-256, CN = `common_name`, O = `drover`, valid from `now` for [`CA_VALIDITY`].
pub fn generate_service_ca(common_name: &str, now: DateTime<Utc>) -> Result<CertAndKey, PkiError> {
    generate_ca(&PKCS_ECDSA_P256_SHA256, common_name, "drover", now)
}

/// A new Kubernetes CA, exactly as [`SecretsBundle::generate`] makes `cluster.ca`: ECDSA P-256,
/// CN `kubernetes`, O = `cluster_name`, valid from `now` for [`CA_VALIDITY`].
pub fn generate_kubernetes_ca(
    cluster_name: &str,
    now: DateTime<Utc>,
) -> Result<CertAndKey, PkiError> {
    validate_cluster_name(cluster_name)?;
    generate_ca(&PKCS_ECDSA_P256_SHA256, "kubernetes", cluster_name, now)
}

/// A client certificate for the Kubernetes API, signed by the cluster's Kubernetes CA, valid from
/// now (minus [`CLIENT_CERT_BACKDATE`]) for `valid_for`. See [`kubernetes_client_cert_at`].
pub fn kubernetes_client_cert(
    kubernetes_ca: &CertAndKey,
    common_name: &str,
    organizations: &[&str],
    valid_for: Duration,
) -> Result<CertAndKey, PkiError> {
    kubernetes_client_cert_at(
        kubernetes_ca,
        common_name,
        organizations,
        valid_for,
        Utc::now(),
    )
}

/// A client certificate for the Kubernetes API signed by the Kubernetes CA: the Kubernetes API
/// server authenticates it as user = Subject CN (`common_name`) in groups = Subject
/// Organizations (`organizations`, e.g. `["system:masters"]`; may be empty). Key type is the
/// CA's (ECDSA P-256 for a Drover cluster), ExtKeyUsage exactly ClientAuth, KeyUsage
/// digitalSignature, not a CA, valid from `now - CLIENT_CERT_BACKDATE` to `now + valid_for`.
pub fn kubernetes_client_cert_at(
    kubernetes_ca: &CertAndKey,
    common_name: &str,
    organizations: &[&str],
    valid_for: Duration,
    now: DateTime<Utc>,
) -> Result<CertAndKey, PkiError> {
    if organizations.iter().any(|o| o.trim().is_empty()) {
        return Err(PkiError::InvalidArgument("an organization is empty".into()));
    }
    issue_leaf(
        kubernetes_ca,
        &Leaf {
            common_name,
            organizations,
            usage: ExtendedKeyUsagePurpose::ClientAuth,
            dns_names: &[],
            ip_addresses: &[],
            valid_for,
            now,
        },
    )
}

/// A TLS server certificate signed by `ca` (e.g. a node's apid certificate signed by the OS CA,
/// or a Kubernetes API server certificate signed by the Kubernetes CA): key type is the CA's,
/// Subject CN = `common_name`, subject alternative names = `dns_names` and `ip_addresses`,
/// ExtKeyUsage exactly ServerAuth, KeyUsage digitalSignature, not a CA, valid from now minus
/// [`CLIENT_CERT_BACKDATE`] for `valid_for`.
pub fn server_cert(
    ca: &CertAndKey,
    common_name: &str,
    dns_names: &[&str],
    ip_addresses: &[IpAddr],
    valid_for: Duration,
) -> Result<CertAndKey, PkiError> {
    if dns_names.is_empty() && ip_addresses.is_empty() {
        return Err(PkiError::InvalidArgument(
            "a server certificate needs a DNS name or an IP address".into(),
        ));
    }
    issue_leaf(
        ca,
        &Leaf {
            common_name,
            organizations: &[],
            usage: ExtendedKeyUsagePurpose::ServerAuth,
            dns_names,
            ip_addresses,
            valid_for,
            now: Utc::now(),
        },
    )
}

/// A client certificate signed by one of Drover's service CAs (e.g. the Talos API proxy's):
/// key type the CA's, Subject CN = `common_name`, O = `organization`, ExtKeyUsage exactly
/// ClientAuth, a random serial (see [`serial_hex`]), valid from `now` minus
/// [`CLIENT_CERT_BACKDATE`] for `valid_for`.
pub fn service_client_cert(
    ca: &CertAndKey,
    common_name: &str,
    organization: &str,
    valid_for: Duration,
    now: DateTime<Utc>,
) -> Result<CertAndKey, PkiError> {
    issue_leaf(
        ca,
        &Leaf {
            common_name,
            organizations: &[organization],
            usage: ExtendedKeyUsagePurpose::ClientAuth,
            dns_names: &[],
            ip_addresses: &[],
            valid_for,
            now,
        },
    )
}

/// The serial number of a DER certificate, in lower-case hex without leading zero bytes: how
/// Drover names the certificates it issues.
pub fn serial_hex_der(der: &[u8]) -> Result<String, PkiError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| PkiError::InvalidArgument(format!("not a certificate: {e}")))?;
    Ok(hex_of(cert.raw_serial()))
}

/// The serial number of a PEM certificate (see [`serial_hex_der`]).
pub fn serial_hex(cert_pem: &str) -> Result<String, PkiError> {
    let block = pem::parse(cert_pem)
        .map_err(|e| PkiError::InvalidArgument(format!("not a PEM certificate: {e}")))?;
    serial_hex_der(block.contents())
}

fn hex_of(bytes: &[u8]) -> String {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    bytes[start..].iter().map(|b| format!("{b:02x}")).collect()
}

/// What [`issue_leaf`] puts in a certificate.
struct Leaf<'a> {
    common_name: &'a str,
    organizations: &'a [&'a str],
    usage: ExtendedKeyUsagePurpose,
    dns_names: &'a [&'a str],
    ip_addresses: &'a [IpAddr],
    valid_for: Duration,
    now: DateTime<Utc>,
}

/// Signs a new end-entity certificate (with a new key of the CA's type) by `ca`.
fn issue_leaf(ca: &CertAndKey, leaf: &Leaf<'_>) -> Result<CertAndKey, PkiError> {
    if leaf.common_name.trim().is_empty() {
        return Err(PkiError::InvalidArgument("common name is empty".into()));
    }
    if leaf.valid_for.is_zero() {
        return Err(PkiError::InvalidArgument("validity is zero".into()));
    }
    let ca_key = load_key_pair(ca.key_pem.expose_secret())?;
    check_cert_matches_key(&ca.cert_pem, &ca_key)?;
    let ca_cert = CertificateParams::from_ca_cert_pem(&ca.cert_pem)?.self_signed(&ca_key)?;

    let now = to_offset(leaf.now)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    // rcgen holds one Organization; several are written by `subject` below.
    if let [organization] = leaf.organizations {
        params
            .distinguished_name
            .push(DnType::OrganizationName, *organization);
    }
    params
        .distinguished_name
        .push(DnType::CommonName, leaf.common_name);
    for name in leaf.dns_names {
        let name = rcgen::Ia5String::try_from(*name)
            .map_err(|e| PkiError::InvalidArgument(format!("DNS name {name:?}: {e}")))?;
        params.subject_alt_names.push(SanType::DnsName(name));
    }
    params
        .subject_alt_names
        .extend(leaf.ip_addresses.iter().map(|ip| SanType::IpAddress(*ip)));
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![leaf.usage.clone()];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(random_serial());
    params.not_before = now - to_time_duration(CLIENT_CERT_BACKDATE)?;
    params.not_after = now
        .checked_add(to_time_duration(leaf.valid_for)?)
        .ok_or(PkiError::TimeOutOfRange)?;

    let key = KeyPair::generate_for(ca_key.algorithm())?;
    let cert = params.signed_by(&key, &ca_cert, &ca_key)?;
    let cert_pem = if leaf.organizations.len() > 1 {
        let name = subject::name(leaf.organizations, leaf.common_name);
        let der = subject::with_subject(cert.der(), &name, ca.key_pem.expose_secret())?;
        pem::encode_config(
            &pem::Pem::new(PEM_CERTIFICATE, der),
            pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
        )
    } else {
        cert.pem()
    };
    Ok(CertAndKey {
        cert_pem,
        key_pem: encode_private_key(&key)?,
    })
}

/// Reads a private key PEM written by this crate (or by Talos) into an rcgen signing key.
/// Accepts `ED25519 PRIVATE KEY` / `PRIVATE KEY` (PKCS#8) and `EC PRIVATE KEY` (SEC1, P-256).
pub fn load_key_pair(key_pem: &str) -> Result<KeyPair, PkiError> {
    let block = pem::parse(key_pem)?;
    match block.tag() {
        PEM_ED25519_PRIVATE_KEY | PEM_PKCS8_PRIVATE_KEY => KeyPair::try_from(block.contents())
            .map_err(|e| PkiError::Key(format!("unreadable PKCS#8 key: {e}"))),
        PEM_EC_PRIVATE_KEY => {
            let pkcs8 = p256_sec1_to_pkcs8(block.contents())?;
            KeyPair::try_from(pkcs8.as_slice())
                .map_err(|e| PkiError::Key(format!("unreadable EC key: {e}")))
        }
        other => Err(PkiError::Key(format!("unsupported PEM type {other:?}"))),
    }
}

fn validate_cluster_name(cluster_name: &str) -> Result<(), PkiError> {
    if cluster_name.trim().is_empty() {
        return Err(PkiError::InvalidArgument("cluster name is empty".into()));
    }
    if cluster_name.chars().any(char::is_control) {
        return Err(PkiError::InvalidArgument(
            "cluster name contains control characters".into(),
        ));
    }
    Ok(())
}

fn generate_ca(
    alg: &'static SignatureAlgorithm,
    common_name: &str,
    organization: &str,
    now: DateTime<Utc>,
) -> Result<CertAndKey, PkiError> {
    let now = to_offset(now)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::OrganizationName, organization);
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
    ];
    params.serial_number = Some(random_serial());
    params.not_before = now;
    params.not_after = now
        .checked_add(to_time_duration(CA_VALIDITY)?)
        .ok_or(PkiError::TimeOutOfRange)?;

    let key = KeyPair::generate_for(alg)?;
    let cert = params.self_signed(&key)?;
    Ok(CertAndKey {
        cert_pem: cert.pem(),
        key_pem: encode_private_key(&key)?,
    })
}

/// RSA-4096, PKCS#1 PEM (`RSA PRIVATE KEY`), as Talos generates it.
fn generate_service_account_key() -> Result<SecretString, PkiError> {
    use rsa::pkcs1::{EncodeRsaPrivateKey as _, LineEnding};
    let key = rsa::RsaPrivateKey::new(&mut OsRng, SERVICE_ACCOUNT_KEY_BITS)?;
    let pem = key.to_pkcs1_pem(LineEnding::LF)?;
    Ok(SecretString::from(pem.as_str()))
}

/// `[a-z0-9]{6}.[a-z0-9]{16}`.
fn generate_token() -> String {
    let mut rng = OsRng;
    let mut part = |n: usize| -> String {
        (0..n)
            .map(|_| TOKEN_ALPHABET[rng.gen_range(0..TOKEN_ALPHABET.len())] as char)
            .collect()
    };
    let id = part(6);
    let secret = part(16);
    format!("{id}.{secret}")
}

fn random_base64_32() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    BASE64.encode(bytes)
}

/// 128 random bits, positive (high bit cleared), never zero.
fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    SerialNumber::from_slice(&bytes)
}

fn to_offset(t: DateTime<Utc>) -> Result<time::OffsetDateTime, PkiError> {
    time::OffsetDateTime::from_unix_timestamp(t.timestamp()).map_err(|_| PkiError::TimeOutOfRange)
}

fn to_time_duration(d: Duration) -> Result<time::Duration, PkiError> {
    time::Duration::try_from(d).map_err(|_| PkiError::TimeOutOfRange)
}

/// The certificate's public key must be the key's (signing with a mismatched key would make
/// certificates that do not chain).
fn check_cert_matches_key(cert_pem: &str, key: &KeyPair) -> Result<(), PkiError> {
    let block = pem::parse(cert_pem)?;
    if block.tag() != PEM_CERTIFICATE {
        return Err(PkiError::Certificate(format!(
            "unexpected PEM type {:?}",
            block.tag()
        )));
    }
    let (_, cert) = x509_parser::parse_x509_certificate(block.contents())
        .map_err(|e| PkiError::Certificate(e.to_string()))?;
    if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
        return Err(PkiError::Key(
            "the CA key does not match the CA certificate".into(),
        ));
    }
    Ok(())
}

// --- private key encodings -------------------------------------------------------------------

/// PKCS#8 v1 prefix of an Ed25519 key (RFC 8410), followed by the 32-byte seed.
const ED25519_PKCS8_V1_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];
/// ring's PKCS#8 v2 Ed25519 document: this prefix, seed, `81 21 00`, public key.
const ED25519_PKCS8_V2_PREFIX: [u8; 16] = [
    0x30, 0x51, 0x02, 0x01, 0x01, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];
/// ring's PKCS#8 P-256 document: this prefix, 32-byte scalar, `a1 44 03 42 00`, public key.
const P256_PKCS8_RING_PREFIX: [u8; 36] = [
    0x30, 0x81, 0x87, 0x02, 0x01, 0x00, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02,
    0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x04, 0x6d, 0x30, 0x6b, 0x02,
    0x01, 0x01, 0x04, 0x20,
];
/// SEC1 ECPrivateKey for P-256: prefix, scalar, [`SEC1_P256_MIDDLE`], 65-byte public key.
const SEC1_P256_PREFIX: [u8; 7] = [0x30, 0x77, 0x02, 0x01, 0x01, 0x04, 0x20];
const SEC1_P256_MIDDLE: [u8; 17] = [
    0xa0, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0xa1, 0x44, 0x03, 0x42,
    0x00,
];
/// PKCS#8 v1 wrapping of a 121-byte SEC1 P-256 key.
const P256_PKCS8_V1_PREFIX: [u8; 29] = [
    0x30, 0x81, 0x93, 0x02, 0x01, 0x00, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02,
    0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x04, 0x79,
];
const SEC1_P256_LEN: usize = 7 + 32 + 17 + 65;

/// PEM of an rcgen key in Talos' encoding for its type.
fn encode_private_key(key: &KeyPair) -> Result<SecretString, PkiError> {
    let der = key.serialize_der();
    let (tag, contents) = if key.algorithm() == &PKCS_ED25519 {
        (PEM_ED25519_PRIVATE_KEY, ed25519_pkcs8_v1(&der)?)
    } else if key.algorithm() == &PKCS_ECDSA_P256_SHA256 {
        (PEM_EC_PRIVATE_KEY, p256_sec1(&der, key.public_key_raw())?)
    } else {
        return Err(PkiError::Key("unsupported key algorithm".into()));
    };
    let pem = pem::encode_config(
        &pem::Pem::new(tag, contents),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    );
    Ok(SecretString::from(pem))
}

fn ed25519_pkcs8_v1(ring_pkcs8: &[u8]) -> Result<Vec<u8>, PkiError> {
    let is_v1 = ring_pkcs8.len() == 48 && ring_pkcs8[..16] == ED25519_PKCS8_V1_PREFIX;
    let is_v2 = ring_pkcs8.len() == 0x53 && ring_pkcs8[..16] == ED25519_PKCS8_V2_PREFIX;
    if !is_v1 && !is_v2 {
        return Err(PkiError::Key("unexpected Ed25519 PKCS#8 layout".into()));
    }
    let seed = &ring_pkcs8[16..48];
    let mut out = ED25519_PKCS8_V1_PREFIX.to_vec();
    out.extend_from_slice(seed);
    Ok(out)
}

fn p256_sec1(ring_pkcs8: &[u8], public_key: &[u8]) -> Result<Vec<u8>, PkiError> {
    if ring_pkcs8.len() < 68 || ring_pkcs8[..36] != P256_PKCS8_RING_PREFIX {
        return Err(PkiError::Key("unexpected P-256 PKCS#8 layout".into()));
    }
    if public_key.len() != 65 || public_key[0] != 0x04 {
        return Err(PkiError::Key("unexpected P-256 public key".into()));
    }
    let mut out = Vec::with_capacity(SEC1_P256_LEN);
    out.extend_from_slice(&SEC1_P256_PREFIX);
    out.extend_from_slice(&ring_pkcs8[36..68]);
    out.extend_from_slice(&SEC1_P256_MIDDLE);
    out.extend_from_slice(public_key);
    Ok(out)
}

fn p256_sec1_to_pkcs8(sec1: &[u8]) -> Result<Vec<u8>, PkiError> {
    if sec1.len() != SEC1_P256_LEN
        || sec1[..7] != SEC1_P256_PREFIX
        || sec1[39..56] != SEC1_P256_MIDDLE
    {
        return Err(PkiError::Key(
            "only P-256 SEC1 keys with named curve and public key are supported".into(),
        ));
    }
    let mut out = P256_PKCS8_V1_PREFIX.to_vec();
    out.extend_from_slice(sec1);
    Ok(out)
}

mod service_ca;
mod subject;

pub use service_ca::{ServiceCaError, read_service_ca};

#[cfg(test)]
mod tests;

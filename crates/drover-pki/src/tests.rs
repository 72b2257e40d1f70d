use std::sync::OnceLock;

use chrono::TimeZone as _;
use x509_parser::certificate::X509Certificate;
use x509_parser::oid_registry::{OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_SIG_ED25519};
use x509_parser::x509::X509Name;

use super::*;

const CLUSTER: &str = "prod-eu";

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).unwrap()
}

/// The one full generation (with its RSA-4096 key) of this test binary.
fn bundle() -> &'static SecretsBundle {
    static BUNDLE: OnceLock<SecretsBundle> = OnceLock::new();
    BUNDLE.get_or_init(|| SecretsBundle::generate(CLUSTER, now()).expect("generate"))
}

/// A bundle without a real service-account key (cheap).
fn cheap_bundle() -> SecretsBundle {
    SecretsBundle::generate_with_service_account_key(CLUSTER, now(), "unused".into())
        .expect("generate")
}

fn der_of(pem_str: &str, tag: &str) -> Vec<u8> {
    let block = pem::parse(pem_str).expect("PEM");
    assert_eq!(block.tag(), tag);
    block.into_contents()
}

fn parse(der: &[u8]) -> X509Certificate<'_> {
    let (rest, cert) = x509_parser::parse_x509_certificate(der).expect("X.509");
    assert!(rest.is_empty());
    cert
}

fn single_attr(name: &X509Name<'_>, which: &str) -> String {
    let values: Vec<_> = match which {
        "CN" => name.iter_common_name().collect(),
        "O" => name.iter_organization().collect(),
        _ => unreachable!(),
    };
    assert_eq!(values.len(), 1, "{which} of {name}");
    values[0].as_str().expect("string").to_owned()
}

fn is_token(t: &str) -> bool {
    let ok = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    matches!(t.split_once('.'), Some((a, b)) if ok(a, 6) && ok(b, 16))
}

fn check_ca(ca: &CertAndKey, cn: &str, ed25519: bool) {
    let der = der_of(&ca.cert_pem, PEM_CERTIFICATE);
    let cert = parse(&der);

    let spki = cert.public_key();
    if ed25519 {
        assert_eq!(spki.algorithm.algorithm, OID_SIG_ED25519, "{cn}");
        assert_eq!(cert.signature_algorithm.algorithm, OID_SIG_ED25519);
    } else {
        assert_eq!(spki.algorithm.algorithm, OID_KEY_TYPE_EC_PUBLIC_KEY, "{cn}");
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .expect("curve")
            .as_oid()
            .expect("named curve");
        assert_eq!(curve, OID_EC_P256, "{cn}");
    }

    assert!(cert.is_ca(), "{cn}");
    let bc = cert.basic_constraints().unwrap().expect("basicConstraints");
    assert!(bc.critical && bc.value.ca && bc.value.path_len_constraint.is_none());
    let ku = cert.key_usage().unwrap().expect("keyUsage").value;
    assert!(ku.key_cert_sign() && ku.crl_sign() && ku.digital_signature());
    assert!(cert.extended_key_usage().unwrap().is_none());

    assert_eq!(single_attr(cert.subject(), "CN"), cn);
    assert_eq!(single_attr(cert.subject(), "O"), CLUSTER);
    assert_eq!(cert.subject().as_raw(), cert.issuer().as_raw());
    cert.verify_signature(None).expect("self-signed");

    let nb = cert.validity().not_before.timestamp();
    let na = cert.validity().not_after.timestamp();
    assert_eq!(nb, now().timestamp());
    assert_eq!(na - nb, 87_600 * 3600, "10 years");

    // The key is in Talos' encoding, loads back, and is the certificate's key.
    let tag = if ed25519 {
        PEM_ED25519_PRIVATE_KEY
    } else {
        PEM_EC_PRIVATE_KEY
    };
    der_of(ca.key_pem.expose_secret(), tag);
    let key = load_key_pair(ca.key_pem.expose_secret()).expect("key loads");
    assert_eq!(key.public_key_raw(), spki.subject_public_key.data.as_ref());
    check_cert_matches_key(&ca.cert_pem, &key).expect("matches");
}

#[test]
fn os_ca_is_ed25519_ca_valid_ten_years() {
    check_ca(&bundle().os_ca, "talos", true);
}

#[test]
fn etcd_kubernetes_aggregator_cas_are_p256_cas_valid_ten_years() {
    let b = bundle();
    check_ca(&b.etcd_ca, "etcd", false);
    check_ca(&b.kubernetes_ca, "kubernetes", false);
    check_ca(&b.aggregator_ca, "front-proxy", false);
}

#[test]
fn ed25519_key_is_pkcs8_v1() {
    let der = der_of(
        bundle().os_ca.key_pem.expose_secret(),
        PEM_ED25519_PRIVATE_KEY,
    );
    assert_eq!(der.len(), 48);
    assert_eq!(der[..16], ED25519_PKCS8_V1_PREFIX);
}

#[test]
fn ec_key_is_sec1_with_named_curve() {
    let der = der_of(bundle().etcd_ca.key_pem.expose_secret(), PEM_EC_PRIVATE_KEY);
    assert_eq!(der.len(), SEC1_P256_LEN);
    // SEQUENCE { INTEGER 1, OCTET STRING(32), [0] prime256v1, [1] BIT STRING(65) }
    assert_eq!(der[..7], [0x30, 0x77, 0x02, 0x01, 0x01, 0x04, 0x20]);
    assert_eq!(
        der[39..51],
        [
            0xa0, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07
        ]
    );
}

#[test]
fn service_account_key_is_rsa_4096_pkcs1() {
    use rsa::pkcs1::DecodeRsaPrivateKey as _;
    use rsa::traits::PublicKeyParts as _;
    let pem_str = bundle().service_account_key.expose_secret();
    assert!(pem_str.starts_with("-----BEGIN RSA PRIVATE KEY-----\n"));
    let key = rsa::RsaPrivateKey::from_pkcs1_pem(pem_str).expect("PKCS#1");
    assert_eq!(key.n().bits(), 4096);
    key.validate().expect("consistent key");
}

#[test]
fn tokens_and_random_secrets_have_talos_formats() {
    let b = bundle();
    assert!(is_token(b.bootstrap_token.expose_secret()));
    assert!(is_token(b.trustd_token.expose_secret()));
    for s in [
        b.cluster_id.as_str(),
        b.cluster_secret.expose_secret(),
        b.secretbox_secret.expose_secret(),
    ] {
        assert_eq!(BASE64.decode(s).expect("base64").len(), 32, "{s}");
    }
}

#[test]
fn token_checker_rejects_bad_tokens() {
    assert!(is_token("abc123.0123456789abcdef"));
    for bad in [
        "abc12.0123456789abcdef",
        "abc123.0123456789abcde",
        "ABC123.0123456789abcdef",
        "abc123-0123456789abcdef",
        "abc123.0123456789abcdef.",
    ] {
        assert!(!is_token(bad), "{bad}");
    }
    for _ in 0..200 {
        assert!(is_token(&generate_token()));
    }
}

#[test]
fn two_generations_differ() {
    let (a, b) = (bundle(), cheap_bundle());
    assert_ne!(a.cluster_id, b.cluster_id);
    assert_ne!(
        a.cluster_secret.expose_secret(),
        b.cluster_secret.expose_secret()
    );
    assert_ne!(
        a.bootstrap_token.expose_secret(),
        b.bootstrap_token.expose_secret()
    );
    assert_ne!(
        a.trustd_token.expose_secret(),
        b.trustd_token.expose_secret()
    );
    assert_ne!(
        a.secretbox_secret.expose_secret(),
        b.secretbox_secret.expose_secret()
    );
    assert_ne!(
        a.bootstrap_token.expose_secret(),
        a.trustd_token.expose_secret()
    );
    for (x, y) in [
        (&a.os_ca, &b.os_ca),
        (&a.etcd_ca, &b.etcd_ca),
        (&a.kubernetes_ca, &b.kubernetes_ca),
        (&a.aggregator_ca, &b.aggregator_ca),
    ] {
        assert_ne!(x.cert_pem, y.cert_pem);
        assert_ne!(x.key_pem.expose_secret(), y.key_pem.expose_secret());
    }
    // The four CAs of one bundle have distinct keys.
    let keys = [&a.os_ca, &a.etcd_ca, &a.kubernetes_ca, &a.aggregator_ca]
        .map(|c| c.key_pem.expose_secret().to_owned());
    for i in 0..keys.len() {
        for j in i + 1..keys.len() {
            assert_ne!(keys[i], keys[j]);
        }
    }
}

#[test]
fn client_cert_chains_to_os_ca_with_role_and_client_auth_only() {
    let ca = &bundle().os_ca;
    let issued_at = Utc::now();
    let client = talos_client_cert_at(
        ca,
        "drover",
        "os:impersonator",
        Duration::from_secs(3600),
        issued_at,
    )
    .expect("client cert");

    let ca_der = der_of(&ca.cert_pem, PEM_CERTIFICATE);
    let ca_cert = parse(&ca_der);
    let der = der_of(&client.cert_pem, PEM_CERTIFICATE);
    let cert = parse(&der);

    // Chains: issuer is the CA's subject byte for byte, signature verifies with the CA key,
    // and the authority key identifier is the CA's subject key identifier.
    assert_eq!(cert.issuer().as_raw(), ca_cert.subject().as_raw());
    cert.verify_signature(Some(ca_cert.public_key()))
        .expect("signed by the OS CA");
    let other_ca = cheap_bundle().os_ca;
    let other_der = der_of(&other_ca.cert_pem, PEM_CERTIFICATE);
    assert!(
        cert.verify_signature(Some(parse(&other_der).public_key()))
            .is_err()
    );
    let ski = ca_cert
        .iter_extensions()
        .find_map(|e| match e.parsed_extension() {
            x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
            _ => None,
        })
        .expect("CA SKI");
    let aki = cert
        .iter_extensions()
        .find_map(|e| match e.parsed_extension() {
            x509_parser::extensions::ParsedExtension::AuthorityKeyIdentifier(a) => {
                a.key_identifier.as_ref().map(|k| k.0.to_vec())
            }
            _ => None,
        })
        .expect("AKI");
    assert_eq!(aki, ski);

    // Key type is the CA's (Ed25519).
    assert_eq!(cert.public_key().algorithm.algorithm, OID_SIG_ED25519);
    assert_eq!(cert.signature_algorithm.algorithm, OID_SIG_ED25519);
    der_of(client.key_pem.expose_secret(), PEM_ED25519_PRIVATE_KEY);
    let key = load_key_pair(client.key_pem.expose_secret()).unwrap();
    assert_eq!(
        key.public_key_raw(),
        cert.public_key().subject_public_key.data.as_ref()
    );

    // Role in Organization, CN as given.
    assert_eq!(single_attr(cert.subject(), "O"), "os:impersonator");
    assert_eq!(single_attr(cert.subject(), "CN"), "drover");

    // EKU exactly clientAuth; not a CA.
    let eku = cert
        .extended_key_usage()
        .unwrap()
        .expect("extendedKeyUsage")
        .value;
    assert!(eku.client_auth);
    assert!(
        !eku.any
            && !eku.server_auth
            && !eku.code_signing
            && !eku.email_protection
            && !eku.time_stamping
            && !eku.ocsp_signing
            && eku.other.is_empty()
    );
    assert!(!cert.is_ca());
    let ku = cert.key_usage().unwrap().expect("keyUsage").value;
    assert!(ku.digital_signature() && !ku.key_cert_sign());

    // Short validity.
    let nb = cert.validity().not_before.timestamp();
    let na = cert.validity().not_after.timestamp();
    assert_eq!(
        nb,
        issued_at.timestamp() - CLIENT_CERT_BACKDATE.as_secs() as i64
    );
    assert_eq!(na, issued_at.timestamp() + 3600);
    assert!(cert.validity().is_valid());
}

#[test]
fn client_cert_default_time_and_admin_role() {
    let client = talos_client_cert(
        &bundle().os_ca,
        "admin",
        "os:admin",
        Duration::from_secs(600),
    )
    .unwrap();
    let der = der_of(&client.cert_pem, PEM_CERTIFICATE);
    let cert = parse(&der);
    assert_eq!(single_attr(cert.subject(), "O"), "os:admin");
    assert!(cert.validity().is_valid());
}

#[test]
fn client_cert_rejects_bad_inputs() {
    let b = bundle();
    let d = Duration::from_secs(60);
    assert!(matches!(
        talos_client_cert(&b.os_ca, "x", "", d),
        Err(PkiError::InvalidArgument(_))
    ));
    assert!(matches!(
        talos_client_cert(&b.os_ca, "", "os:admin", d),
        Err(PkiError::InvalidArgument(_))
    ));
    assert!(matches!(
        talos_client_cert(&b.os_ca, "x", "os:admin", Duration::ZERO),
        Err(PkiError::InvalidArgument(_))
    ));
    // Not an Ed25519 CA.
    assert!(matches!(
        talos_client_cert(&b.etcd_ca, "x", "os:admin", d),
        Err(PkiError::Key(_))
    ));
    // Key of another CA.
    let mismatched = CertAndKey {
        cert_pem: b.os_ca.cert_pem.clone(),
        key_pem: cheap_bundle().os_ca.key_pem,
    };
    assert!(matches!(
        talos_client_cert(&mismatched, "x", "os:admin", d),
        Err(PkiError::Key(_))
    ));
    assert!(
        talos_client_cert(
            &CertAndKey {
                cert_pem: "garbage".into(),
                key_pem: b.os_ca.key_pem.clone()
            },
            "x",
            "os:admin",
            d
        )
        .is_err()
    );
}

#[test]
fn generate_rejects_empty_cluster_name() {
    assert!(matches!(
        SecretsBundle::generate_with_service_account_key(" ", now(), "k".into()),
        Err(PkiError::InvalidArgument(_))
    ));
    assert!(matches!(
        SecretsBundle::generate("", now()),
        Err(PkiError::InvalidArgument(_))
    ));
}

#[test]
fn debug_shows_no_secrets() {
    let b = bundle();
    let client = talos_client_cert(&b.os_ca, "admin", "os:admin", Duration::from_secs(60)).unwrap();
    for dbg in [format!("{b:?}"), format!("{b:#?}"), format!("{client:?}")] {
        assert!(!dbg.contains("PRIVATE KEY"), "{dbg}");
        for secret in [
            b.cluster_secret.expose_secret(),
            b.bootstrap_token.expose_secret(),
            b.trustd_token.expose_secret(),
            b.secretbox_secret.expose_secret(),
        ] {
            assert!(!dbg.contains(secret));
        }
    }
    // Certificates and the cluster id are public and may show.
    assert!(format!("{b:?}").contains(&b.cluster_id));
}

#[test]
fn standalone_cas_match_the_bundle_ones() {
    check_ca(&generate_os_ca(CLUSTER, now()).unwrap(), "talos", true);
    check_ca(
        &generate_kubernetes_ca(CLUSTER, now()).unwrap(),
        "kubernetes",
        false,
    );
    assert!(matches!(
        generate_os_ca(" ", now()),
        Err(PkiError::InvalidArgument(_))
    ));
}

#[test]
fn kubernetes_client_cert_has_user_groups_and_client_auth_only() {
    let ca = cheap_bundle().kubernetes_ca;
    let issued_at = Utc::now();
    let client = kubernetes_client_cert_at(
        &ca,
        "drover",
        &["system:masters", "drover:admins"],
        Duration::from_secs(3600),
        issued_at,
    )
    .unwrap();
    let ca_der = der_of(&ca.cert_pem, PEM_CERTIFICATE);
    let der = der_of(&client.cert_pem, PEM_CERTIFICATE);
    let cert = parse(&der);
    cert.verify_signature(Some(parse(&ca_der).public_key()))
        .expect("signed by the Kubernetes CA");
    // P-256, like the CA.
    assert_eq!(
        cert.public_key().algorithm.algorithm,
        OID_KEY_TYPE_EC_PUBLIC_KEY
    );
    der_of(client.key_pem.expose_secret(), PEM_EC_PRIVATE_KEY);
    let key = load_key_pair(client.key_pem.expose_secret()).unwrap();
    assert_eq!(
        key.public_key_raw(),
        cert.public_key().subject_public_key.data.as_ref()
    );
    assert_eq!(single_attr(cert.subject(), "CN"), "drover");
    let groups: Vec<_> = cert
        .subject()
        .iter_organization()
        .map(|o| o.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(groups, ["system:masters", "drover:admins"]);
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.client_auth && !eku.server_auth && eku.other.is_empty());
    assert!(!cert.is_ca());
    assert_eq!(
        cert.validity().not_after.timestamp(),
        issued_at.timestamp() + 3600
    );

    // No groups is fine; an empty group or name is not.
    let d = Duration::from_secs(60);
    let alone = kubernetes_client_cert(&ca, "alice", &[], d).unwrap();
    let der = der_of(&alone.cert_pem, PEM_CERTIFICATE);
    assert_eq!(parse(&der).subject().iter_organization().count(), 0);
    assert!(matches!(
        kubernetes_client_cert(&ca, "alice", &[""], d),
        Err(PkiError::InvalidArgument(_))
    ));
    assert!(matches!(
        kubernetes_client_cert(&ca, " ", &[], d),
        Err(PkiError::InvalidArgument(_))
    ));
}

#[test]
fn server_cert_has_the_names_and_server_auth_only() {
    use x509_parser::extensions::GeneralName;

    let b = cheap_bundle();
    let ip: IpAddr = "fdae:41e4:649b:9303::5".parse().unwrap();
    let server = server_cert(
        &b.os_ca,
        "talos-1",
        &["talos-1", "localhost"],
        &[ip],
        Duration::from_secs(3600),
    )
    .unwrap();
    let ca_der = der_of(&b.os_ca.cert_pem, PEM_CERTIFICATE);
    let der = der_of(&server.cert_pem, PEM_CERTIFICATE);
    let cert = parse(&der);
    cert.verify_signature(Some(parse(&ca_der).public_key()))
        .expect("signed by the OS CA");
    // Ed25519, like the OS CA.
    assert_eq!(cert.public_key().algorithm.algorithm, OID_SIG_ED25519);
    der_of(server.key_pem.expose_secret(), PEM_ED25519_PRIVATE_KEY);
    let sans = cert.subject_alternative_name().unwrap().unwrap().value;
    let names: Vec<String> = sans
        .general_names
        .iter()
        .map(|n| match n {
            GeneralName::DNSName(d) => d.to_string(),
            GeneralName::IPAddress(bytes) => {
                let octets: [u8; 16] = (*bytes).try_into().unwrap();
                IpAddr::from(octets).to_string()
            }
            other => panic!("unexpected SAN {other:?}"),
        })
        .collect();
    assert_eq!(names, ["talos-1", "localhost", "fdae:41e4:649b:9303::5"]);
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && !eku.client_auth && eku.other.is_empty());
    assert!(!cert.is_ca());

    // The Kubernetes CA signs P-256 server certificates.
    let kube = server_cert(
        &b.kubernetes_ca,
        "kube-apiserver",
        &["kubernetes"],
        &[],
        Duration::from_secs(60),
    )
    .unwrap();
    let der = der_of(&kube.cert_pem, PEM_CERTIFICATE);
    assert_eq!(
        parse(&der).public_key().algorithm.algorithm,
        OID_KEY_TYPE_EC_PUBLIC_KEY
    );

    assert!(matches!(
        server_cert(&b.os_ca, "x", &[], &[], Duration::from_secs(60)),
        Err(PkiError::InvalidArgument(_))
    ));
    assert!(matches!(
        server_cert(&b.os_ca, "x", &["bad näme"], &[], Duration::from_secs(60)),
        Err(PkiError::InvalidArgument(_))
    ));
}

#[test]
fn service_client_certs_carry_the_name_organization_and_a_readable_serial() {
    let ca = generate_service_ca("test proxy CA", Utc::now()).unwrap();
    let issued = service_client_cert(
        &ca,
        "user:ops@example.com",
        "tenant-1",
        Duration::from_secs(3600),
        Utc::now(),
    )
    .unwrap();
    let block = pem::parse(&issued.cert_pem).unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(block.contents()).unwrap();
    let subject = cert.subject();
    assert_eq!(
        subject.iter_common_name().next().unwrap().as_str().unwrap(),
        "user:ops@example.com"
    );
    assert_eq!(
        subject
            .iter_organization()
            .next()
            .unwrap()
            .as_str()
            .unwrap(),
        "tenant-1"
    );
    let serial = serial_hex(&issued.cert_pem).unwrap();
    assert_eq!(serial, serial_hex_der(block.contents()).unwrap());
    assert!(!serial.is_empty() && serial.chars().all(|c| c.is_ascii_hexdigit()));
    assert!(!serial.starts_with("00"), "no leading zero bytes: {serial}");
    let other = service_client_cert(
        &ca,
        "user:ops@example.com",
        "tenant-1",
        Duration::from_secs(60),
        Utc::now(),
    )
    .unwrap();
    assert_ne!(
        serial,
        serial_hex(&other.cert_pem).unwrap(),
        "serials are random"
    );
    assert!(serial_hex("not a certificate").is_err());
}

//! Certificates whose subject carries several Organization attributes.
//!
//! The Kubernetes API server reads a client's groups from the Subject Organization attributes,
//! one group per attribute, but rcgen keeps one value per attribute type in a name. So the
//! subject is encoded here, spliced into the to-be-signed part of the certificate rcgen made,
//! and the result signed again with the CA key (same algorithm, same everything else).

use rustls::SignatureScheme;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer};

use crate::{
    PEM_EC_PRIVATE_KEY, PEM_ED25519_PRIVATE_KEY, PEM_PKCS8_PRIVATE_KEY, PKCS_ED25519, PkiError,
    load_key_pair,
};

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const UTF8_STRING: u8 = 0x0c;
const BIT_STRING: u8 = 0x03;
/// id-at-organizationName (2.5.4.10).
const OID_ORGANIZATION: [u8; 3] = [0x55, 0x04, 0x0a];
/// id-at-commonName (2.5.4.3).
const OID_COMMON_NAME: [u8; 3] = [0x55, 0x04, 0x03];

/// `O=organizations[0], O=organizations[1], ..., CN=common_name`, one attribute per RDN.
pub(crate) fn name(organizations: &[&str], common_name: &str) -> Vec<u8> {
    let attribute = |oid: &[u8], value: &str| {
        let pair = [tlv(OID, oid), tlv(UTF8_STRING, value.as_bytes())].concat();
        tlv(SET, &tlv(SEQUENCE, &pair))
    };
    let rdns: Vec<u8> = organizations
        .iter()
        .map(|o| attribute(&OID_ORGANIZATION, o))
        .chain([attribute(&OID_COMMON_NAME, common_name)])
        .flatten()
        .collect();
    tlv(SEQUENCE, &rdns)
}

/// `cert_der` (signed by the CA whose key is `ca_key_pem`) with its subject replaced by
/// `subject` (a DER name), signed again by that CA.
pub(crate) fn with_subject(
    cert_der: &[u8],
    subject: &[u8],
    ca_key_pem: &str,
) -> Result<Vec<u8>, PkiError> {
    let bad = |what: &str| PkiError::Certificate(format!("re-signing: {what}"));
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der)
        .map_err(|e| PkiError::Certificate(e.to_string()))?;
    let tbs = cert.tbs_certificate.as_ref();
    let old_subject = cert.tbs_certificate.subject().as_raw();
    let start = offset_in(tbs, old_subject).ok_or_else(|| bad("subject not in the TBS"))?;
    let (tbs_header, _) = header(tbs).ok_or_else(|| bad("TBS header"))?;
    let new_tbs = tlv(
        SEQUENCE,
        &[
            &tbs[tbs_header..start],
            subject,
            &tbs[start + old_subject.len()..],
        ]
        .concat(),
    );

    // Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue }
    let tbs_start = offset_in(cert_der, tbs).ok_or_else(|| bad("TBS not in the certificate"))?;
    let after_tbs = &cert_der[tbs_start + tbs.len()..];
    let (algorithm_header, algorithm_len) =
        header(after_tbs).ok_or_else(|| bad("signature algorithm"))?;
    let algorithm = after_tbs
        .get(..algorithm_header + algorithm_len)
        .ok_or_else(|| bad("signature algorithm"))?;

    let signature = sign(ca_key_pem, &new_tbs)?;
    let mut bits = vec![0u8]; // no unused bits
    bits.extend_from_slice(&signature);
    Ok(tlv(
        SEQUENCE,
        &[new_tbs, algorithm.to_vec(), tlv(BIT_STRING, &bits)].concat(),
    ))
}

fn sign(ca_key_pem: &str, message: &[u8]) -> Result<Vec<u8>, PkiError> {
    let scheme = if load_key_pair(ca_key_pem)?.algorithm() == &PKCS_ED25519 {
        SignatureScheme::ED25519
    } else {
        SignatureScheme::ECDSA_NISTP256_SHA256
    };
    let block = pem::parse(ca_key_pem)?;
    let der: PrivateKeyDer<'static> = match block.tag() {
        PEM_ED25519_PRIVATE_KEY | PEM_PKCS8_PRIVATE_KEY => {
            PrivatePkcs8KeyDer::from(block.into_contents()).into()
        }
        PEM_EC_PRIVATE_KEY => PrivateSec1KeyDer::from(block.into_contents()).into(),
        other => return Err(PkiError::Key(format!("unsupported PEM type {other:?}"))),
    };
    let key = rustls::crypto::ring::sign::any_supported_type(&der)
        .map_err(|e| PkiError::Key(e.to_string()))?;
    let signer = key
        .choose_scheme(&[scheme])
        .ok_or_else(|| PkiError::Key(format!("the CA key cannot sign with {scheme:?}")))?;
    signer
        .sign(message)
        .map_err(|e| PkiError::Key(e.to_string()))
}

/// Where `part` (a sub-slice of `whole`) starts in `whole`.
fn offset_in(whole: &[u8], part: &[u8]) -> Option<usize> {
    let offset = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    (offset + part.len() <= whole.len()).then_some(offset)
}

/// The header length and content length of the DER element `der` starts with.
fn header(der: &[u8]) -> Option<(usize, usize)> {
    let first = *der.get(1)?;
    if first < 0x80 {
        return Some((2, usize::from(first)));
    }
    let count = usize::from(first & 0x7f);
    if count == 0 || count > std::mem::size_of::<usize>() {
        return None;
    }
    let len = der
        .get(2..2 + count)?
        .iter()
        .fold(0usize, |len, byte| (len << 8) | usize::from(*byte));
    Some((2 + count, len))
}

/// A DER element: tag, definite length, content.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_round_trip() {
        for len in [0, 1, 127, 128, 255, 256, 70_000] {
            let element = tlv(SEQUENCE, &vec![7; len]);
            let (header_len, content_len) = header(&element).unwrap();
            assert_eq!(content_len, len);
            assert_eq!(header_len + content_len, element.len());
        }
    }

    #[test]
    fn names_have_one_attribute_per_rdn() {
        use x509_parser::prelude::FromDer as _;

        let der = name(&["a", "b"], "c");
        let (_, parsed) = x509_parser::x509::X509Name::from_der(&der).unwrap();
        let orgs: Vec<_> = parsed
            .iter_organization()
            .map(|o| o.as_str().unwrap())
            .collect();
        assert_eq!(orgs, ["a", "b"]);
        assert_eq!(
            parsed.iter_common_name().next().unwrap().as_str().unwrap(),
            "c"
        );
        assert_eq!(parsed.iter().count(), 3);
    }
}

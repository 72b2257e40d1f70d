//! Bearer secrets (API tokens, join tokens, service-account keys): `<prefix><id as 32 hex>_<40 random alphanumerics>`.
//!
//! The id part locates the row; only SHA-256 of the whole text is stored, and the comparison
//! is constant-time. The secrets carry about 238 random bits, so a fast hash is the right one.

use rand::Rng;
use rand::distributions::Alphanumeric;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

const SECRET_LEN: usize = 40;

/// The kind of a secret, by its prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Api,
    Join,
    ServiceAccount,
}

impl TokenKind {
    fn prefix(self) -> &'static str {
        match self {
            Self::Api => "drv_",
            Self::Join => "drj_",
            Self::ServiceAccount => "drs_",
        }
    }
}

/// A freshly minted secret: its id, its full text (shown once) and the hash to store.
pub struct MintedToken {
    pub id: Uuid,
    pub text: SecretString,
    pub hash: [u8; 32],
}

pub fn mint(kind: TokenKind) -> MintedToken {
    let id = Uuid::new_v4();
    let random: String = rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(SECRET_LEN)
        .map(char::from)
        .collect();
    let text = format!("{}{}_{}", kind.prefix(), id.simple(), random);
    let hash = hash(&text);
    MintedToken {
        id,
        text: SecretString::from(text),
        hash,
    }
}

/// The id a presented secret claims, or None if it is not of this kind's form.
pub fn parse_id(kind: TokenKind, text: &str) -> Option<Uuid> {
    let rest = text.strip_prefix(kind.prefix())?;
    let (id, secret) = rest.split_once('_')?;
    if id.len() != 32
        || secret.len() != SECRET_LEN
        || !secret.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return None;
    }
    Uuid::try_parse(id).ok()
}

pub fn hash(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

/// Whether `text` hashes to `stored`, compared in constant time.
pub fn verify(text: &str, stored: &[u8]) -> bool {
    stored.len() == 32 && bool::from(hash(text).ct_eq(stored))
}

/// Exposes a minted secret's text once, for the response that shows it.
pub fn reveal(token: &MintedToken) -> String {
    token.text.expose_secret().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_tokens_parse_and_verify() {
        let t = mint(TokenKind::Join);
        let text = reveal(&t);
        assert!(text.starts_with("drj_"));
        assert_eq!(parse_id(TokenKind::Join, &text), Some(t.id));
        assert_eq!(parse_id(TokenKind::Api, &text), None);
        assert!(verify(&text, &t.hash));
        let mut wrong = text.clone();
        wrong.pop();
        wrong.push('!');
        assert!(!verify(&wrong, &t.hash));
        assert_eq!(parse_id(TokenKind::Join, &wrong), None);
        assert_eq!(parse_id(TokenKind::Join, "drj_short_x"), None);
        let key = mint(TokenKind::ServiceAccount);
        let key_text = reveal(&key);
        assert!(key_text.starts_with("drs_"));
        assert_eq!(parse_id(TokenKind::ServiceAccount, &key_text), Some(key.id));
        assert_eq!(parse_id(TokenKind::Api, &key_text), None);
    }
}

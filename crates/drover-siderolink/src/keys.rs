//! WireGuard (Curve25519) keys as SideroLink exchanges them: standard base64 of 32 bytes.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use x25519_dalek::{PublicKey as DalekPublic, StaticSecret};

/// A key that is not standard base64 of exactly 32 bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("WireGuard key {shown:?} is malformed: {reason}")]
pub struct MalformedKey {
    /// The first characters of the input, enough to recognise it.
    pub shown: String,
    pub reason: &'static str,
}

/// A WireGuard public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    pub fn from_base64(text: &str) -> Result<Self, MalformedKey> {
        let malformed = |reason| MalformedKey {
            shown: text.chars().take(48).collect(),
            reason,
        };
        let bytes = STANDARD
            .decode(text.trim())
            .map_err(|_| malformed("not standard base64"))?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| malformed("a WireGuard key is 32 bytes"))?;
        if bytes == [0u8; 32] {
            return Err(malformed("the all-zero key is not a valid public key"));
        }
        Ok(Self(bytes))
    }

    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl From<[u8; 32]> for PublicKey {
    fn from(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base64())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_base64())
    }
}

/// A WireGuard key pair. The private half is never printed by `Debug`.
#[derive(Clone)]
pub struct KeyPair {
    secret: StaticSecret,
    public: PublicKey,
}

impl KeyPair {
    pub fn generate() -> Self {
        Self::from_secret_bytes(StaticSecret::random().to_bytes())
    }

    pub fn from_secret_bytes(bytes: [u8; 32]) -> Self {
        let secret = StaticSecret::from(bytes);
        let public = PublicKey(DalekPublic::from(&secret).to_bytes());
        Self { secret, public }
    }

    pub fn from_secret_base64(text: &str) -> Result<Self, MalformedKey> {
        let bytes = STANDARD.decode(text.trim()).map_err(|_| MalformedKey {
            shown: "(private key)".into(),
            reason: "not standard base64",
        })?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| MalformedKey {
            shown: "(private key)".into(),
            reason: "a WireGuard key is 32 bytes",
        })?;
        Ok(Self::from_secret_bytes(bytes))
    }

    pub fn public(&self) -> PublicKey {
        self.public
    }

    /// The private key as base64, for storing in a 0600 file.
    pub fn secret_base64(&self) -> String {
        STANDARD.encode(self.secret.to_bytes())
    }

    pub fn secret_bytes(&self) -> [u8; 32] {
        self.secret.to_bytes()
    }
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyPair")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_keys_round_trip_and_bad_ones_are_named() {
        let pair = KeyPair::generate();
        let text = pair.public().to_base64();
        assert_eq!(text.len(), 44);
        assert_eq!(PublicKey::from_base64(&text).unwrap(), pair.public());
        let restored = KeyPair::from_secret_base64(&pair.secret_base64()).unwrap();
        assert_eq!(restored.public(), pair.public());

        assert_eq!(
            PublicKey::from_base64("not base64!").unwrap_err().reason,
            "not standard base64"
        );
        assert_eq!(
            PublicKey::from_base64(&STANDARD.encode([1u8; 31]))
                .unwrap_err()
                .reason,
            "a WireGuard key is 32 bytes"
        );
        assert!(PublicKey::from_base64(&STANDARD.encode([0u8; 32])).is_err());
        assert!(!format!("{pair:?}").contains(&pair.secret_base64()));
    }
}

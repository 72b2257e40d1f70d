//! Envelope encryption for secrets at rest (cluster CAs, tokens).
//!
//! - A [`Kek`] (key-encryption key, 32 random bytes) is loaded from
//!   `<data-dir>/master.key` (base64 text, created with mode 0600 on first use)
//!   or given directly from configuration.
//! - Each tenant has a [`Dek`] (data key, 32 random bytes) that is only ever
//!   stored wrapped by the KEK, as a [`WrappedDek`]. The wrapping records the
//!   KEK id so a mix of old and new KEKs after rotation is detected
//!   ([`SealError::WrongKey`]) instead of surfacing as a generic failure.
//! - Values are sealed with XChaCha20-Poly1305 under the DEK, with associated
//!   data binding tenant, scope and purpose ([`Binding`]): a ciphertext copied
//!   to another tenant, cluster or purpose fails to open
//!   ([`SealError::Tampered`]).
//! - Rotation: [`Kek::rewrap`] re-wraps a DEK under a new KEK without touching
//!   the values sealed with it.
//!
//! All associated data is an unambiguous encoding: a domain/version label
//! followed by length-prefixed (u64 big-endian) fields.

use std::fmt;
use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use rand::RngCore as _;
use rand::rngs::OsRng;
use secrecy::zeroize::{Zeroize as _, Zeroizing};
use secrecy::{ExposeSecret, SecretBox, SecretString};
use sha2::{Digest, Sha256};

/// Length of a KEK or DEK in bytes.
pub const KEY_LEN: usize = 32;
/// Length of an XChaCha20-Poly1305 nonce in bytes.
pub const NONCE_LEN: usize = 24;
/// Length of the Poly1305 authentication tag in bytes.
pub const TAG_LEN: usize = 16;

/// Format version of [`WrappedDek::to_bytes`].
const WRAPPED_DEK_VERSION: u8 = 1;
/// Format version of [`Sealed::to_bytes`].
const SEALED_VERSION: u8 = 1;
/// Longest KEK id accepted when parsing a wrapped DEK.
const MAX_KEK_ID_LEN: usize = 64;

const AAD_DEK_LABEL: &[u8] = b"drover-seal/dek/v1";
const AAD_VALUE_LABEL: &[u8] = b"drover-seal/value/v1";
const KEK_ID_LABEL: &[u8] = b"drover-seal/kek-id/v1\0";

/// Errors from sealing, opening, wrapping and key loading. Messages describe
/// what is wrong and never contain key material or plaintext.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The data key was wrapped with a different KEK than the one given
    /// (e.g. a DEK not yet re-wrapped after rotation, or an old KEK).
    #[error("data key was wrapped with KEK {wrapped_with}, but KEK {given} was given")]
    WrongKey {
        /// Id of the KEK recorded in the wrapped DEK.
        wrapped_with: String,
        /// Id of the KEK that was used to try to unwrap it.
        given: String,
    },
    /// Authentication failed: the tenant/scope/purpose binding does not match,
    /// the key is wrong, or the ciphertext was modified.
    #[error(
        "authentication failed: wrong tenant/scope/purpose binding, wrong key, or modified ciphertext"
    )]
    Tampered,
    /// The input could not be parsed (bad length, version, encoding).
    #[error("malformed input: {0}")]
    Malformed(String),
    /// Reading or creating a key file failed.
    #[error("key file {}: {source}", .path.display())]
    Io {
        /// The key file.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: io::Error,
    },
}

/// Which tenant, scope (e.g. a cluster id) and purpose (e.g. `"etcd-ca-key"`)
/// a sealed value belongs to. Bound into the AEAD associated data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binding<'a> {
    pub tenant: &'a str,
    pub scope: &'a str,
    pub purpose: &'a str,
}

impl<'a> Binding<'a> {
    pub fn new(tenant: &'a str, scope: &'a str, purpose: &'a str) -> Self {
        Binding {
            tenant,
            scope,
            purpose,
        }
    }
}

/// Key-encryption key. `Debug` shows only its id.
pub struct Kek {
    id: String,
    key: SecretBox<[u8; KEY_LEN]>,
}

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kek")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Kek {
    /// A new random KEK.
    pub fn generate() -> Kek {
        Self::from_secret(random_key())
    }

    /// A KEK from raw bytes (the caller should zeroize its copy).
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Kek {
        Self::from_secret(SecretBox::init_with_mut(|k: &mut [u8; KEY_LEN]| {
            k.copy_from_slice(&bytes)
        }))
    }

    /// A KEK from standard base64 text (surrounding whitespace is ignored),
    /// as found in configuration or in `master.key`.
    pub fn from_base64(text: &str) -> Result<Kek, SealError> {
        let decoded = Zeroizing::new(B64.decode(text.trim()).map_err(|e| {
            SealError::Malformed(format!(
                "KEK is not valid base64: {}",
                describe_b64_error(&e)
            ))
        })?);
        if decoded.len() != KEY_LEN {
            return Err(SealError::Malformed(format!(
                "KEK must decode to {KEY_LEN} bytes, got {}",
                decoded.len()
            )));
        }
        Ok(Self::from_secret(SecretBox::init_with_mut(
            |k: &mut [u8; KEY_LEN]| k.copy_from_slice(&decoded),
        )))
    }

    /// The KEK as standard base64 text (for writing configuration).
    pub fn to_base64(&self) -> SecretString {
        SecretString::from(B64.encode(self.key.expose_secret()))
    }

    /// Read the KEK from `path` (base64 text).
    pub fn load(path: &Path) -> Result<Kek, SealError> {
        let text = Zeroizing::new(fs::read_to_string(path).map_err(|source| SealError::Io {
            path: path.to_owned(),
            source,
        })?);
        Self::from_base64(&text).map_err(|e| match e {
            SealError::Malformed(msg) => {
                SealError::Malformed(format!("key file {}: {msg}", path.display()))
            }
            other => other,
        })
    }

    /// Read the KEK from `path`, or, if the file does not exist, generate one
    /// and write it there (mode 0600). The file appears atomically (written to
    /// a temporary file, then hard-linked into place), so concurrent callers
    /// all end up with the same key and a crash never leaves a partial file.
    /// The parent directory must exist.
    pub fn load_or_create(path: &Path) -> Result<Kek, SealError> {
        match Self::load(path) {
            Err(SealError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
            other => return other,
        }
        let kek = Kek::generate();
        match write_new_key_file(path, &kek) {
            Ok(()) => Ok(kek),
            // Someone else created it first: use theirs.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Self::load(path),
            Err(source) => Err(SealError::Io {
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// Short fingerprint of the key (8 hex characters), recorded in wrapped
    /// DEKs. Derived with a domain-separated SHA-256, safe to log.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// A new random DEK for `tenant`, and its wrapping under this KEK.
    pub fn new_dek(&self, tenant: &str) -> (Dek, WrappedDek) {
        let dek = Dek { key: random_key() };
        let wrapped = self.wrap(tenant, &dek);
        (dek, wrapped)
    }

    /// Unwrap `tenant`'s DEK. Fails with [`SealError::WrongKey`] if it was
    /// wrapped by another KEK, and [`SealError::Tampered`] if it belongs to
    /// another tenant or was modified.
    pub fn unwrap_dek(&self, tenant: &str, wrapped: &WrappedDek) -> Result<Dek, SealError> {
        if wrapped.kek_id != self.id {
            return Err(SealError::WrongKey {
                wrapped_with: wrapped.kek_id.clone(),
                given: self.id.clone(),
            });
        }
        if wrapped.nonce.len() != NONCE_LEN {
            return Err(SealError::Malformed(format!(
                "wrapped DEK nonce must be {NONCE_LEN} bytes, got {}",
                wrapped.nonce.len()
            )));
        }
        if wrapped.ciphertext.len() != KEY_LEN + TAG_LEN {
            return Err(SealError::Malformed(format!(
                "wrapped DEK ciphertext must be {} bytes, got {}",
                KEY_LEN + TAG_LEN,
                wrapped.ciphertext.len()
            )));
        }
        let aad = dek_aad(tenant, &self.id);
        let plain = Zeroizing::new(
            self.cipher()
                .decrypt(
                    XNonce::from_slice(&wrapped.nonce),
                    Payload {
                        msg: &wrapped.ciphertext,
                        aad: &aad,
                    },
                )
                .map_err(|_| SealError::Tampered)?,
        );
        Ok(Dek {
            key: SecretBox::init_with_mut(|k: &mut [u8; KEY_LEN]| k.copy_from_slice(&plain)),
        })
    }

    /// Re-wrap `tenant`'s DEK, currently wrapped by `old`, under this KEK.
    /// Values sealed with the DEK are unaffected.
    pub fn rewrap(
        &self,
        old: &Kek,
        tenant: &str,
        wrapped: &WrappedDek,
    ) -> Result<WrappedDek, SealError> {
        let dek = old.unwrap_dek(tenant, wrapped)?;
        Ok(self.wrap(tenant, &dek))
    }

    fn wrap(&self, tenant: &str, dek: &Dek) -> WrappedDek {
        let nonce = random_nonce();
        let aad = dek_aad(tenant, &self.id);
        let ciphertext = self
            .cipher()
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: dek.key.expose_secret(),
                    aad: &aad,
                },
            )
            .expect("XChaCha20-Poly1305 encryption of a 32-byte key cannot fail");
        WrappedDek {
            kek_id: self.id.clone(),
            nonce: nonce.to_vec(),
            ciphertext,
        }
    }

    fn from_secret(key: SecretBox<[u8; KEY_LEN]>) -> Kek {
        let digest = Sha256::new()
            .chain_update(KEK_ID_LABEL)
            .chain_update(key.expose_secret())
            .finalize();
        Kek {
            id: hex::encode(&digest[..4]),
            key,
        }
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(Key::from_slice(self.key.expose_secret()))
    }
}

/// A DEK as stored: encrypted under the KEK with id `kek_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedDek {
    pub kek_id: String,
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

impl WrappedDek {
    /// Versioned binary form (for a `bytea` column):
    /// `version(1) | kek_id_len(1) | kek_id | nonce(24) | ciphertext(48)`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let id = self.kek_id.as_bytes();
        let id_len = u8::try_from(id.len()).expect("KEK id longer than 255 bytes");
        let mut out = Vec::with_capacity(2 + id.len() + self.nonce.len() + self.ciphertext.len());
        out.push(WRAPPED_DEK_VERSION);
        out.push(id_len);
        out.extend_from_slice(id);
        out.extend_from_slice(&self.nonce);
        out.extend_from_slice(&self.ciphertext);
        out
    }

    /// Parse [`WrappedDek::to_bytes`] output.
    pub fn from_bytes(bytes: &[u8]) -> Result<WrappedDek, SealError> {
        let malformed = |msg: String| SealError::Malformed(format!("wrapped DEK: {msg}"));
        let (&version, rest) = bytes
            .split_first()
            .ok_or_else(|| malformed("empty input".into()))?;
        if version != WRAPPED_DEK_VERSION {
            return Err(malformed(format!(
                "unsupported format version {version} (expected {WRAPPED_DEK_VERSION})"
            )));
        }
        let (&id_len, rest) = rest
            .split_first()
            .ok_or_else(|| malformed("truncated before KEK id length".into()))?;
        let id_len = usize::from(id_len);
        if id_len == 0 || id_len > MAX_KEK_ID_LEN {
            return Err(malformed(format!(
                "KEK id length must be 1..={MAX_KEK_ID_LEN}, got {id_len}"
            )));
        }
        let expected = id_len + NONCE_LEN + KEY_LEN + TAG_LEN;
        if rest.len() != expected {
            return Err(malformed(format!(
                "expected {} bytes in total, got {}",
                2 + expected,
                bytes.len()
            )));
        }
        let (id, rest) = rest.split_at(id_len);
        let kek_id = std::str::from_utf8(id)
            .map_err(|_| malformed("KEK id is not UTF-8".into()))?
            .to_owned();
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        Ok(WrappedDek {
            kek_id,
            nonce: nonce.to_vec(),
            ciphertext: ciphertext.to_vec(),
        })
    }
}

/// A tenant's data key, unwrapped. `Debug` shows no key bytes.
pub struct Dek {
    key: SecretBox<[u8; KEY_LEN]>,
}

impl fmt::Debug for Dek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Dek([REDACTED])")
    }
}

impl Dek {
    /// Seal `plaintext` for `binding` with a fresh random nonce.
    pub fn seal(&self, binding: &Binding<'_>, plaintext: &[u8]) -> Sealed {
        let nonce = random_nonce();
        let aad = value_aad(binding);
        let ciphertext = self
            .cipher()
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .expect("XChaCha20-Poly1305 encryption of an in-memory value cannot fail");
        Sealed { nonce, ciphertext }
    }

    /// Open a value sealed for exactly this `binding`.
    pub fn open(
        &self,
        binding: &Binding<'_>,
        sealed: &Sealed,
    ) -> Result<SecretBox<Vec<u8>>, SealError> {
        if sealed.ciphertext.len() < TAG_LEN {
            return Err(SealError::Malformed(format!(
                "sealed ciphertext must be at least {TAG_LEN} bytes, got {}",
                sealed.ciphertext.len()
            )));
        }
        let aad = value_aad(binding);
        let plain = self
            .cipher()
            .decrypt(
                XNonce::from_slice(&sealed.nonce),
                Payload {
                    msg: &sealed.ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| SealError::Tampered)?;
        Ok(SecretBox::new(Box::new(plain)))
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(Key::from_slice(self.key.expose_secret()))
    }
}

/// A sealed value: nonce and ciphertext (with tag).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    nonce: [u8; NONCE_LEN],
    ciphertext: Vec<u8>,
}

impl Sealed {
    /// Versioned binary form: `version(1) | nonce(24) | ciphertext+tag`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + NONCE_LEN + self.ciphertext.len());
        out.push(SEALED_VERSION);
        out.extend_from_slice(&self.nonce);
        out.extend_from_slice(&self.ciphertext);
        out
    }

    /// Parse [`Sealed::to_bytes`] output.
    pub fn from_bytes(bytes: &[u8]) -> Result<Sealed, SealError> {
        let (&version, rest) = bytes
            .split_first()
            .ok_or_else(|| SealError::Malformed("sealed value: empty input".into()))?;
        if version != SEALED_VERSION {
            return Err(SealError::Malformed(format!(
                "sealed value: unsupported format version {version} (expected {SEALED_VERSION})"
            )));
        }
        if rest.len() < NONCE_LEN + TAG_LEN {
            return Err(SealError::Malformed(format!(
                "sealed value: expected at least {} bytes, got {}",
                1 + NONCE_LEN + TAG_LEN,
                bytes.len()
            )));
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        Ok(Sealed {
            nonce: nonce.try_into().expect("split at NONCE_LEN"),
            ciphertext: ciphertext.to_vec(),
        })
    }
}

fn random_key() -> SecretBox<[u8; KEY_LEN]> {
    SecretBox::init_with_mut(|k: &mut [u8; KEY_LEN]| OsRng.fill_bytes(k))
}

fn random_nonce() -> [u8; NONCE_LEN] {
    let mut nonce = [0u8; NONCE_LEN];
    OsRng.fill_bytes(&mut nonce);
    nonce
}

/// Label followed by length-prefixed fields: no two distinct field lists
/// encode to the same bytes.
fn encode_aad(label: &[u8], fields: &[&[u8]]) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(8 + label.len() + fields.iter().map(|f| 8 + f.len()).sum::<usize>());
    for field in std::iter::once(&label).chain(fields) {
        out.extend_from_slice(&(field.len() as u64).to_be_bytes());
        out.extend_from_slice(field);
    }
    out
}

fn dek_aad(tenant: &str, kek_id: &str) -> Vec<u8> {
    encode_aad(AAD_DEK_LABEL, &[tenant.as_bytes(), kek_id.as_bytes()])
}

fn value_aad(binding: &Binding<'_>) -> Vec<u8> {
    encode_aad(
        AAD_VALUE_LABEL,
        &[
            binding.tenant.as_bytes(),
            binding.scope.as_bytes(),
            binding.purpose.as_bytes(),
        ],
    )
}

/// Describe a base64 error without echoing input bytes.
fn describe_b64_error(e: &base64::DecodeError) -> String {
    match e {
        base64::DecodeError::InvalidByte(offset, _) => {
            format!("invalid character at offset {offset}")
        }
        base64::DecodeError::InvalidLength(len) => format!("invalid length {len}"),
        base64::DecodeError::InvalidLastSymbol(offset, _) => {
            format!("invalid last symbol at offset {offset}")
        }
        base64::DecodeError::InvalidPadding => "invalid padding".into(),
    }
}

fn write_new_key_file(path: &Path, kek: &Kek) -> io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{:08x}",
        name.to_string_lossy(),
        std::process::id(),
        OsRng.next_u32()
    ));
    let result = (|| {
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp)?;
        let mut text = kek.to_base64().expose_secret().to_owned();
        text.push('\n');
        let written = file.write_all(text.as_bytes());
        text.zeroize();
        written?;
        file.sync_all()?;
        // Atomic, and fails with AlreadyExists if another process won a race.
        fs::hard_link(&tmp, path)?;
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    let _ = fs::remove_file(&tmp);
    result
}

#[cfg(test)]
mod tests;

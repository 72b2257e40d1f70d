use super::*;

const B: Binding<'static> = Binding {
    tenant: "acme",
    scope: "cluster-1",
    purpose: "etcd-ca-key",
};

fn open_vec(dek: &Dek, binding: &Binding<'_>, sealed: &Sealed) -> Result<Vec<u8>, SealError> {
    dek.open(binding, sealed).map(|s| s.expose_secret().clone())
}

#[test]
fn round_trip() {
    let kek = Kek::generate();
    let (dek, wrapped) = kek.new_dek("acme");
    let sealed = dek.seal(&B, b"-----BEGIN PRIVATE KEY-----");
    assert_eq!(
        open_vec(&dek, &B, &sealed).unwrap(),
        b"-----BEGIN PRIVATE KEY-----"
    );

    // Through the stored byte forms, with the DEK unwrapped again.
    let wrapped = WrappedDek::from_bytes(&wrapped.to_bytes()).unwrap();
    let sealed = Sealed::from_bytes(&sealed.to_bytes()).unwrap();
    let dek = kek.unwrap_dek("acme", &wrapped).unwrap();
    assert_eq!(
        open_vec(&dek, &B, &sealed).unwrap(),
        b"-----BEGIN PRIVATE KEY-----"
    );

    // Empty plaintext works too; nonces are fresh each time.
    let a = dek.seal(&B, b"");
    let b = dek.seal(&B, b"");
    assert_ne!(a, b);
    assert!(open_vec(&dek, &B, &a).unwrap().is_empty());
}

#[test]
fn other_tenant_scope_or_purpose_is_tampered() {
    let (dek, _) = Kek::generate().new_dek("acme");
    let sealed = dek.seal(&B, b"secret");
    for other in [
        Binding::new("globex", B.scope, B.purpose),
        Binding::new(B.tenant, "cluster-2", B.purpose),
        Binding::new(B.tenant, B.scope, "admin-token"),
    ] {
        assert!(
            matches!(dek.open(&other, &sealed), Err(SealError::Tampered)),
            "{other:?} opened a value sealed for {B:?}"
        );
    }
}

#[test]
fn binding_encoding_is_unambiguous() {
    let (dek, _) = Kek::generate().new_dek("ab");
    let sealed = dek.seal(&Binding::new("ab", "c", "x"), b"v");
    // Same concatenation "abcx", different field boundaries.
    assert!(matches!(
        dek.open(&Binding::new("a", "bc", "x"), &sealed),
        Err(SealError::Tampered)
    ));
    assert_ne!(
        value_aad(&Binding::new("ab", "c", "x")),
        value_aad(&Binding::new("a", "bc", "x"))
    );
}

#[test]
fn flipped_bit_is_tampered() {
    let (dek, _) = Kek::generate().new_dek("acme");
    let bytes = dek.seal(&B, b"some secret value").to_bytes();
    // Every bit after the version byte: nonce, ciphertext and tag.
    for byte in 1..bytes.len() {
        for bit in 0..8 {
            let mut b = bytes.clone();
            b[byte] ^= 1 << bit;
            let sealed = Sealed::from_bytes(&b).unwrap();
            assert!(
                matches!(dek.open(&B, &sealed), Err(SealError::Tampered)),
                "flip at byte {byte} bit {bit} was not detected"
            );
        }
    }
}

#[test]
fn dek_for_tenant_a_does_not_unwrap_as_tenant_b() {
    let kek = Kek::generate();
    let (_, wrapped) = kek.new_dek("tenant-a");
    assert!(matches!(
        kek.unwrap_dek("tenant-b", &wrapped),
        Err(SealError::Tampered)
    ));
    assert!(kek.unwrap_dek("tenant-a", &wrapped).is_ok());

    let mut flipped = wrapped.clone();
    flipped.ciphertext[0] ^= 1;
    assert!(matches!(
        kek.unwrap_dek("tenant-a", &flipped),
        Err(SealError::Tampered)
    ));
}

#[test]
fn other_kek_is_wrong_key() {
    let kek = Kek::generate();
    let other = Kek::generate();
    let (_, wrapped) = kek.new_dek("acme");
    match other.unwrap_dek("acme", &wrapped) {
        Err(SealError::WrongKey {
            wrapped_with,
            given,
        }) => {
            assert_eq!(wrapped_with, kek.id());
            assert_eq!(given, other.id());
        }
        r => panic!("expected WrongKey, got {r:?}"),
    }
    // Relabelling the wrapping with the other KEK's id does not help.
    let mut relabelled = wrapped.clone();
    relabelled.kek_id = other.id().to_owned();
    assert!(matches!(
        other.unwrap_dek("acme", &relabelled),
        Err(SealError::Tampered)
    ));
}

#[test]
fn kek_id_is_a_stable_short_fingerprint() {
    let a = Kek::from_bytes([7; KEY_LEN]);
    let b = Kek::from_bytes([7; KEY_LEN]);
    let c = Kek::from_bytes([8; KEY_LEN]);
    assert_eq!(a.id(), b.id());
    assert_ne!(a.id(), c.id());
    assert_eq!(a.id().len(), 8);
    assert!(a.id().chars().all(|c| c.is_ascii_hexdigit()));
    let again = Kek::from_base64(a.to_base64().expose_secret()).unwrap();
    assert_eq!(again.id(), a.id());
}

#[test]
fn load_or_create_creates_0600_once_and_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("master.key");
    let first = Kek::load_or_create(&path).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
    }
    let text = fs::read_to_string(&path).unwrap();
    assert_eq!(text.trim(), first.to_base64().expose_secret());

    let second = Kek::load_or_create(&path).unwrap();
    assert_eq!(first.id(), second.id());
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        text,
        "file was rewritten"
    );

    // A DEK wrapped before the "restart" unwraps with the reloaded key.
    let (dek, wrapped) = first.new_dek("acme");
    let sealed = dek.seal(&B, b"v");
    let dek = second.unwrap_dek("acme", &wrapped).unwrap();
    assert_eq!(open_vec(&dek, &B, &sealed).unwrap(), b"v");

    // No temporary files left behind.
    let names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("master.key")]);
}

#[test]
fn load_or_create_reports_bad_file_and_missing_dir() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("master.key");
    fs::write(&path, "not base64!!\n").unwrap();
    match Kek::load_or_create(&path) {
        Err(SealError::Malformed(msg)) => {
            assert!(msg.contains("master.key"), "{msg}");
            assert!(msg.contains("base64"), "{msg}");
        }
        r => panic!("expected Malformed, got {r:?}"),
    }
    // The bad file is left alone, not replaced by a fresh key.
    assert_eq!(fs::read_to_string(&path).unwrap(), "not base64!!\n");

    let missing = dir.path().join("no-such-dir").join("master.key");
    assert!(matches!(
        Kek::load_or_create(&missing),
        Err(SealError::Io { .. })
    ));
}

#[test]
fn rewrap_keeps_sealed_values_and_retires_old_kek() {
    let old = Kek::generate();
    let new = Kek::generate();
    let (dek, wrapped_old) = old.new_dek("acme");
    let sealed = dek.seal(&B, b"before rotation").to_bytes();
    drop(dek);

    let wrapped_new = new.rewrap(&old, "acme", &wrapped_old).unwrap();
    assert_eq!(wrapped_new.kek_id, new.id());
    assert_ne!(wrapped_new.kek_id, wrapped_old.kek_id);

    let dek = new.unwrap_dek("acme", &wrapped_new).unwrap();
    let sealed = Sealed::from_bytes(&sealed).unwrap();
    assert_eq!(open_vec(&dek, &B, &sealed).unwrap(), b"before rotation");

    assert!(matches!(
        old.unwrap_dek("acme", &wrapped_new),
        Err(SealError::WrongKey { .. })
    ));
    // A not-yet-rewrapped DEK is detected as such under the new KEK.
    assert!(matches!(
        new.unwrap_dek("acme", &wrapped_old),
        Err(SealError::WrongKey { .. })
    ));
    // Rewrapping with the wrong "old" KEK, or for the wrong tenant, fails.
    assert!(matches!(
        new.rewrap(&new, "acme", &wrapped_old),
        Err(SealError::WrongKey { .. })
    ));
    assert!(matches!(
        new.rewrap(&old, "globex", &wrapped_old),
        Err(SealError::Tampered)
    ));
}

#[test]
fn debug_shows_no_key_bytes() {
    let raw = [0xAB; KEY_LEN];
    let kek = Kek::from_bytes(raw);
    let (dek, wrapped) = kek.new_dek("acme");
    let dek_raw = *dek.key.expose_secret();

    let kek_dbg = format!("{kek:?} {kek:#?}");
    let dek_dbg = format!("{dek:?} {dek:#?}");
    for (dbg, key) in [(&kek_dbg, raw), (&dek_dbg, dek_raw)] {
        let decimal = key[..4]
            .iter()
            .map(u8::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        assert!(!dbg.contains(&decimal), "{dbg}");
        assert!(!dbg.contains(&hex::encode(&key[..4])));
        assert!(!dbg.contains(&B64.encode(key)[..8]));
    }
    assert!(kek_dbg.contains(kek.id()));
    assert_eq!(format!("{dek:?}"), "Dek([REDACTED])");

    let opened = dek.open(&B, &dek.seal(&B, b"plaintext-marker")).unwrap();
    assert!(!format!("{opened:?}").contains("plaintext-marker"));
    // Wrapped DEKs are safe to print: they contain only ciphertext.
    assert!(format!("{wrapped:?}").contains(kek.id()));
}

#[test]
fn malformed_inputs_are_reported() {
    fn msg(r: Result<impl fmt::Debug, SealError>) -> String {
        match r {
            Err(SealError::Malformed(m)) => m,
            r => panic!("expected Malformed, got {r:?}"),
        }
    }
    // KEK text.
    let m = msg(Kek::from_base64("not base64 at all"));
    assert!(m.contains("not valid base64"), "{m}");
    let m = msg(Kek::from_base64(&B64.encode([1u8; 16])));
    assert!(m.contains("32 bytes, got 16"), "{m}");
    assert!(Kek::from_base64(&format!("  {}\n", B64.encode([1u8; 32]))).is_ok());

    // Wrapped DEK bytes.
    let kek = Kek::generate();
    let (_, wrapped) = kek.new_dek("acme");
    let good = wrapped.to_bytes();
    assert!(msg(WrappedDek::from_bytes(&[])).contains("empty"));
    let mut v = good.clone();
    v[0] = 9;
    let m = msg(WrappedDek::from_bytes(&v));
    assert!(m.contains("unsupported format version 9"), "{m}");
    let m = msg(WrappedDek::from_bytes(&good[..good.len() - 1]));
    assert!(m.contains("expected"), "{m}");
    let m = msg(WrappedDek::from_bytes(&[1, 0]));
    assert!(m.contains("KEK id length"), "{m}");

    // Wrapped DEK struct with bad field lengths (fields are public).
    let mut short_nonce = wrapped.clone();
    short_nonce.nonce.pop();
    let m = msg(kek.unwrap_dek("acme", &short_nonce));
    assert!(m.contains("nonce must be 24 bytes, got 23"), "{m}");
    let mut long_ct = wrapped.clone();
    long_ct.ciphertext.push(0);
    let m = msg(kek.unwrap_dek("acme", &long_ct));
    assert!(m.contains("ciphertext must be 48 bytes, got 49"), "{m}");

    // Sealed bytes.
    assert!(msg(Sealed::from_bytes(&[])).contains("empty"));
    let m = msg(Sealed::from_bytes(&[2; 64]));
    assert!(m.contains("unsupported format version 2"), "{m}");
    let m = msg(Sealed::from_bytes(&[1; 40]));
    assert!(m.contains("at least 41 bytes, got 40"), "{m}");

    // Errors display without panicking and name the problem.
    let e = SealError::Malformed("x".into());
    assert_eq!(e.to_string(), "malformed input: x");
}

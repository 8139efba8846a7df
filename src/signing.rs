//! The key that signs audit logs: Ed25519, kept outside every log folder
//! (`~/.config/breakglass/audit-key`, or `BREAKGLASS_AUDIT_KEY`), created on
//! first use, readable by its owner only. A log re-sealed by anyone without
//! it fails verification, and rollback trusts no log this key did not sign.
//!
//! The same key makes the tokens breakglass tags its snapshots with (a MAC
//! nobody else can compute), so "already snapshotted" is never decided by
//! tags an attacker can write.

use std::io::Write;
use std::path::{Path, PathBuf};

use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use sha2::{Digest, Sha256};

use crate::Error;
use crate::files;

/// The signing key of this machine's responder.
pub struct AuditKey {
    pair: Ed25519KeyPair,
    /// Derived from the private key: the MAC key of snapshot tokens.
    mac: [u8; 32],
    path: PathBuf,
}

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditKey")
            .field("public", &self.public())
            .field("path", &self.path)
            .finish()
    }
}

fn err(path: &Path, message: String) -> Error {
    Error::Audit {
        path: path.to_path_buf(),
        message,
    }
}

/// Where the key lives: `BREAKGLASS_AUDIT_KEY`, else
/// `$XDG_CONFIG_HOME/breakglass/audit-key`, else `~/.config/breakglass/audit-key`.
pub fn key_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("BREAKGLASS_AUDIT_KEY").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(config.join("breakglass").join("audit-key"))
}

impl AuditKey {
    /// This machine's key, created (0600, in a 0700 folder) when there is none.
    pub fn load_or_create() -> Result<AuditKey, Error> {
        let path = key_path().ok_or_else(|| {
            err(
                Path::new("audit-key"),
                "neither BREAKGLASS_AUDIT_KEY nor HOME is set: nowhere to keep the audit key"
                    .into(),
            )
        })?;
        match Self::load(&path)? {
            Some(k) => Ok(k),
            None => Self::create(&path),
        }
    }

    /// The key kept at `path`, created there when absent (tests, and tools
    /// that keep a key of their own).
    pub fn at(path: &Path) -> Result<AuditKey, Error> {
        match Self::load(path)? {
            Some(k) => Ok(k),
            None => Self::create(path),
        }
    }

    /// This machine's key, if it has one (verification never creates it).
    pub fn existing() -> Result<Option<AuditKey>, Error> {
        match key_path() {
            Some(path) => Self::load(&path),
            None => Ok(None),
        }
    }

    fn load(path: &Path) -> Result<Option<AuditKey>, Error> {
        let bytes = match files::read_private(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(err(path, format!("cannot read the audit key: {e}"))),
        };
        Self::from_pkcs8(&bytes, path).map(Some)
    }

    fn create(path: &Path) -> Result<AuditKey, Error> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let doc = Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| err(path, "cannot generate an audit key".into()))?;
        if let Some(dir) = path.parent() {
            files::private_dir(dir).map_err(|e| err(dir, e))?;
        }
        let mut f = files::create_private(path)
            .map_err(|e| err(path, format!("cannot create the audit key: {e}")))?;
        f.write_all(doc.as_ref())
            .and_then(|_| f.sync_all())
            .map_err(|e| err(path, format!("cannot write the audit key: {e}")))?;
        Self::from_pkcs8(doc.as_ref(), path)
    }

    fn from_pkcs8(bytes: &[u8], path: &Path) -> Result<AuditKey, Error> {
        let pair = Ed25519KeyPair::from_pkcs8(bytes)
            .map_err(|e| err(path, format!("not an Ed25519 audit key: {e}")))?;
        let mut h = Sha256::new();
        h.update(b"breakglass snapshot token\0");
        h.update(bytes);
        Ok(AuditKey {
            pair,
            mac: h.finalize().into(),
            path: path.to_path_buf(),
        })
    }

    /// The public half, hex: what a log records and a verifier trusts.
    pub fn public(&self) -> String {
        hex::encode(self.pair.public_key().as_ref())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Signs a record's SHA-256 digest (32 bytes); hex.
    pub fn sign(&self, digest: &[u8]) -> String {
        hex::encode(self.pair.sign(digest).as_ref())
    }

    /// A token only this key makes, for a snapshot of `instance` taken
    /// with `nonce`: `<nonce>.<mac>`.
    pub fn token(&self, instance: &str, nonce: &str) -> String {
        format!("{nonce}.{}", self.mac_of(instance, nonce))
    }

    /// Whether `token` was made by this key for `instance`.
    pub fn owns_token(&self, instance: &str, token: &str) -> bool {
        token
            .split_once('.')
            .is_some_and(|(nonce, mac)| mac == self.mac_of(instance, nonce))
    }

    fn mac_of(&self, instance: &str, nonce: &str) -> String {
        let tag = aws_lc_rs::hmac::sign(
            &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &self.mac),
            format!("{instance}\0{nonce}").as_bytes(),
        );
        hex::encode(&tag.as_ref()[..16])
    }
}

/// Whether `sig` (hex) is `public`'s (hex) signature of `digest`.
pub fn verify(public: &str, digest: &[u8], sig: &str) -> bool {
    let (Ok(public), Ok(sig)) = (hex::decode(public), hex::decode(sig)) else {
        return false;
    };
    UnparsedPublicKey::new(&ED25519, public)
        .verify(digest, &sig)
        .is_ok()
}

/// A short, stable name for a public key: the first 16 hex digits of its SHA-256.
pub fn fingerprint(public: &str) -> String {
    let bytes = hex::decode(public).unwrap_or_default();
    hex::encode(&Sha256::digest(&bytes)[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_and_tokens_belong_to_one_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cfg/breakglass/audit-key");
        let key = AuditKey::create(&path).expect("create");
        let again = AuditKey::load(&path).expect("load").expect("present");
        assert_eq!(key.public(), again.public());
        let digest = Sha256::digest(b"record");
        let sig = key.sign(&digest);
        assert!(verify(&key.public(), &digest, &sig));
        assert!(!verify(&key.public(), &Sha256::digest(b"other"), &sig));
        let other = AuditKey::create(&dir.path().join("other")).expect("other");
        assert!(!verify(&other.public(), &digest, &sig));
        let t = key.token("i-1", "n0nce");
        assert!(key.owns_token("i-1", &t));
        assert!(!key.owns_token("i-2", &t), "bound to its instance");
        assert!(!other.owns_token("i-1", &t), "bound to its key");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode(&path), 0o600);
            assert_eq!(mode(path.parent().expect("dir")), 0o700);
        }
    }
}

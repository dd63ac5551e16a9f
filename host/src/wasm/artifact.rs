//! Precompiled artifacts: compiled components kept on disk so a start does not compile
//! again (a Python guest takes seconds to compile, its artifact milliseconds to load).
//!
//! An artifact is found by a key made of the component's SHA-256 and the engine's
//! compatibility hash (wasmtime version and compilation settings), and it is never trusted
//! on its name alone: the file starts with a header holding that key and the SHA-256 of
//! the compiled code, and is loaded only when both match. A stale artifact (another
//! component or engine under this name), a foreign one (not written by Shardline) or a
//! corrupt one is ignored and the component is compiled again.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::Engine;

/// First bytes of every artifact file (format version 1).
const MAGIC: &[u8; 8] = b"SHLNCW01";
const HEADER: usize = MAGIC.len() + 32 + 32;

/// Where and under which key a component's artifact lives.
#[derive(Debug, Clone)]
pub(crate) struct ArtifactKey {
    digest: [u8; 32],
}

impl ArtifactKey {
    /// The key of `component` (its bytes) compiled by `engine`.
    pub(crate) fn new(engine: &Engine, component: &[u8]) -> Self {
        let mut h = Sha256::new();
        h.update(component);
        let mut compat = std::collections::hash_map::DefaultHasher::new();
        std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut compat);
        h.update(std::hash::Hasher::finish(&compat).to_le_bytes());
        Self {
            digest: h.finalize().into(),
        }
    }

    /// The artifact's file in `dir`.
    pub(crate) fn path(&self, dir: &Path) -> PathBuf {
        dir.join(format!("{}.cwasm", hex::encode(&self.digest[..20])))
    }
}

/// Why an artifact file was not used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ArtifactError {
    #[error("cannot read it: {0}")]
    Read(#[from] std::io::Error),
    #[error("it was not written by this version of Shardline")]
    Foreign,
    #[error("it belongs to another component or engine configuration")]
    Stale,
    #[error("its compiled code does not match its checksum")]
    Corrupt,
    #[error("wasmtime refused it: {0}")]
    Refused(String),
}

/// Writes `compiled` (from `Engine::precompile_component`) as the artifact of `key`.
pub(crate) fn store(dir: &Path, key: &ArtifactKey, compiled: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut data = Vec::with_capacity(HEADER + compiled.len());
    data.extend_from_slice(MAGIC);
    data.extend_from_slice(&key.digest);
    data.extend_from_slice(&Sha256::digest(compiled));
    data.extend_from_slice(compiled);
    // Write then rename, so a concurrent reader never sees half a file.
    let tmp = dir.join(format!(".{}.tmp", uuid::Uuid::new_v4()));
    std::fs::write(&tmp, data)?;
    std::fs::rename(&tmp, key.path(dir))
}

/// Loads the artifact of `key` from `dir` if it is exactly what was stored for it.
pub(crate) fn load(
    engine: &Engine,
    dir: &Path,
    key: &ArtifactKey,
) -> Result<Component, ArtifactError> {
    let data = std::fs::read(key.path(dir))?;
    let compiled = verify(&data, key)?;
    deserialize(engine, compiled).map_err(|e| ArtifactError::Refused(format!("{e:#}")))
}

/// The compiled code of an artifact file, if its header matches `key` and its checksum.
fn verify<'a>(data: &'a [u8], key: &ArtifactKey) -> Result<&'a [u8], ArtifactError> {
    if data.len() < HEADER || &data[..MAGIC.len()] != MAGIC {
        return Err(ArtifactError::Foreign);
    }
    let (stored_key, rest) = data[MAGIC.len()..].split_at(32);
    let (checksum, compiled) = rest.split_at(32);
    if stored_key != key.digest {
        return Err(ArtifactError::Stale);
    }
    if checksum != Sha256::digest(compiled).as_slice() {
        return Err(ArtifactError::Corrupt);
    }
    Ok(compiled)
}

#[allow(unsafe_code)]
fn deserialize(engine: &Engine, compiled: &[u8]) -> wasmtime::Result<Component> {
    // SAFETY: `Component::deserialize` trusts its input to be code this engine compiled.
    // `verify` checked that these bytes are, byte for byte, what `store` wrote for this
    // component and this engine configuration (key and SHA-256 in the header), and
    // wasmtime itself refuses artifacts of other versions or settings.
    unsafe { Component::deserialize(engine, compiled) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> ArtifactKey {
        ArtifactKey { digest: [byte; 32] }
    }

    fn file(k: &ArtifactKey, compiled: &[u8]) -> Vec<u8> {
        let mut d = MAGIC.to_vec();
        d.extend_from_slice(&k.digest);
        d.extend_from_slice(&Sha256::digest(compiled));
        d.extend_from_slice(compiled);
        d
    }

    #[test]
    fn only_an_artifact_stored_for_this_key_is_accepted() {
        let good = file(&key(1), b"compiled code");
        assert_eq!(verify(&good, &key(1)).expect("ok"), b"compiled code");
        assert!(matches!(verify(&good, &key(2)), Err(ArtifactError::Stale)));
        let mut flipped = good.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(matches!(
            verify(&flipped, &key(1)),
            Err(ArtifactError::Corrupt)
        ));
        assert!(matches!(
            verify(b"\x7fELF...", &key(1)),
            Err(ArtifactError::Foreign)
        ));
        assert!(matches!(
            verify(&good[..HEADER - 1], &key(1)),
            Err(ArtifactError::Foreign)
        ));
    }
}

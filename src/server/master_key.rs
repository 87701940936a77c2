//! Where a node's master key comes from: `RAFTSAFE_MASTER_KEY`, else `master_key_file`,
//! else — for a single-node dev store only — a key generated once into the data directory.
//!
//! Invariants:
//! - The key is 32 bytes (base64 in its source); anything else is refused with the source
//!   named, never silently padded or truncated.
//! - A cluster (more than one peer) or a TLS node never generates its own key: every node of
//!   a cluster must share one, and a generated key next to the data protects nothing.
//! - The dev key file is created owner-only and synced before it is used.

use std::path::Path;

use base64::Engine;

use crate::config::Config;
use crate::secret::crypto;

const DEV_KEY_FILE: &str = "dev-master.key";

use zeroize::Zeroizing;

#[derive(Debug, thiserror::Error)]
#[error("master key: {0}")]
pub struct MasterKeyError(pub String);

fn decode(text: &str, origin: &str) -> Result<Zeroizing<Vec<u8>>, MasterKeyError> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map(Zeroizing::new)
        .map_err(|e| MasterKeyError(format!("{origin} is not base64: {e}")))?;
    if bytes.len() != 32 {
        return Err(MasterKeyError(format!(
            "{origin} must decode to 32 bytes, not {}",
            bytes.len()
        )));
    }
    Ok(bytes)
}

/// The raw 32-byte master key this node must use, wiped from memory when dropped (as is
/// every copy of its text read here).
pub fn resolve(config: &Config) -> Result<Zeroizing<Vec<u8>>, MasterKeyError> {
    if let Ok(text) = std::env::var("RAFTSAFE_MASTER_KEY") {
        return decode(&Zeroizing::new(text), "RAFTSAFE_MASTER_KEY");
    }
    if let Some(path) = &config.master_key_file {
        let text = std::fs::read_to_string(path)
            .map(Zeroizing::new)
            .map_err(|e| MasterKeyError(format!("reading {}: {e}", path.display())))?;
        return decode(&text, &path.display().to_string());
    }
    if config.peers.len() > 1 || config.tls.is_some() {
        return Err(MasterKeyError(
            "set RAFTSAFE_MASTER_KEY or master_key_file (the same key on every node); \
             only a single-node dev store generates its own"
                .into(),
        ));
    }
    let path = config.data_dir.join(DEV_KEY_FILE);
    let text = Zeroizing::new(dev_key(&config.data_dir, &path)?);
    tracing::warn!(path = %path.display(), "DEV MODE: the master key is stored next to the data it protects");
    decode(&text, &path.display().to_string())
}

fn dev_key(data_dir: &Path, path: &Path) -> Result<String, MasterKeyError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if path.exists() {
        return std::fs::read_to_string(path)
            .map_err(|e| MasterKeyError(format!("reading {}: {e}", path.display())));
    }
    crate::store::create_private_dir(data_dir).map_err(|e| MasterKeyError(e.to_string()))?;
    let key = crypto::random_key().map_err(|e| MasterKeyError(e.to_string()))?;
    let text = base64::engine::general_purpose::STANDARD.encode(key);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| MasterKeyError(format!("creating {}: {e}", path.display())))?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| MasterKeyError(format!("writing {}: {e}", path.display())))?;
    Ok(text)
}

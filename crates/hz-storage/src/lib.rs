//! 440hz storage: a local content-addressed store (blobs named by the SHA-256 of their
//! bytes) and, on top of it, gym version history (manifests listing blobs, indexed in
//! SQLite by `hz-db`). 0G Storage publishing comes later behind the same blob interface.
//!
//! Every blob is verified on read: a file whose bytes no longer hash to its name is
//! reported, never used. Writes go to a temporary file that is synced and renamed into
//! place, so a crash leaves either the whole blob or none.

pub mod history;

use hz_core::ContentId;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("blob {id} is missing from the store ({path})")]
    Missing { id: ContentId, path: String },
    #[error("blob {id} is corrupted: its bytes hash to {actual} ({path}); restore it from a backup or re-commit")]
    Corrupt { id: ContentId, actual: ContentId, path: String },
    #[error("bad manifest {id}: {reason}")]
    BadManifest { id: ContentId, reason: String },
    #[error(transparent)]
    Db(#[from] hz_db::DbError),
    #[error("{0}")]
    Refused(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StorageError + '_ {
    move |source| StorageError::Io { path: path.display().to_string(), source }
}

/// Blobs on disk under `<root>/blobs/sha256/<2 hex>/<62 hex>`.
#[derive(Debug, Clone)]
pub struct BlobStore {
    root: PathBuf,
}

impl BlobStore {
    pub fn open(root: &Path) -> Result<Self, StorageError> {
        let blobs = root.join("blobs").join("sha256");
        std::fs::create_dir_all(&blobs).map_err(io(&blobs))?;
        Ok(Self { root: root.to_path_buf() })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where a blob lives.
    pub fn path_of(&self, id: &ContentId) -> PathBuf {
        let hex = id.to_hex();
        self.root.join("blobs").join("sha256").join(&hex[..2]).join(&hex[2..])
    }

    /// Store bytes; returns their id. Storing the same bytes twice is a no-op.
    pub fn put(&self, bytes: &[u8]) -> Result<ContentId, StorageError> {
        let id = ContentId::of_bytes(bytes);
        let path = self.path_of(&id);
        if path.exists() {
            return Ok(id);
        }
        let dir = path.parent().unwrap_or(&self.root);
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io(dir))?;
        tmp.write_all(bytes).map_err(io(&path))?;
        tmp.as_file().sync_all().map_err(io(&path))?;
        tmp.persist(&path).map_err(|e| StorageError::Io { path: path.display().to_string(), source: e.error })?;
        Ok(id)
    }

    /// Read a blob, verifying its hash.
    pub fn get(&self, id: &ContentId) -> Result<Vec<u8>, StorageError> {
        let path = self.path_of(id);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StorageError::Missing { id: *id, path: path.display().to_string() })
            }
            Err(e) => return Err(io(&path)(e)),
        };
        let actual = ContentId::of_bytes(&bytes);
        if actual != *id {
            return Err(StorageError::Corrupt { id: *id, actual, path: path.display().to_string() });
        }
        Ok(bytes)
    }

    pub fn has(&self, id: &ContentId) -> bool {
        self.path_of(id).exists()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_and_detect_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let id = store.put(b"hello").unwrap();
        assert_eq!(id, ContentId::of_bytes(b"hello"));
        assert_eq!(store.put(b"hello").unwrap(), id);
        assert_eq!(store.get(&id).unwrap(), b"hello");
        std::fs::write(store.path_of(&id), b"jello").unwrap();
        match store.get(&id) {
            Err(StorageError::Corrupt { id: bad, actual, .. }) => {
                assert_eq!(bad, id);
                assert_eq!(actual, ContentId::of_bytes(b"jello"));
            }
            other => panic!("{other:?}"),
        }
        let missing = ContentId::of_bytes(b"nope");
        assert!(matches!(store.get(&missing), Err(StorageError::Missing { .. })));
    }
}

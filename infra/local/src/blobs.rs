//! [`FileBlobs`]: attachment bytes as files, the local server's [`BlobStore`].
//!
//! Layout under its root (`{data-dir}/attachments/`): `objects/{tenant}/{room}/{id}`, each
//! segment of the object key in lower-case base32 ([`base32`]), so no segment can be `.` or
//! `..`, hold a separator, differ only in case (macOS and Windows file systems ignore it) or
//! outgrow a file name (a 128-character name is 205 characters); and `incoming/`, where
//! uploads are written before they appear.
//!
//! An upload is written to a fresh file in `incoming/`, fsynced, then hard-linked to its name
//! (which fails if the name exists: an object, once there, is never replaced, so bytes checked
//! when a message took them stay the bytes it carries) and the directories are fsynced. A
//! `kill -9` therefore never leaves a partial object: at worst a file in `incoming/`, which
//! [`FileBlobs::open`] clears.

use std::fmt::Display;
use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};

use axum::body::Bytes;
use futures::{Stream, StreamExt};
use rand::RngCore;
use roomcast_core::attachments::{LinkSigner, base32};
use roomcast_core::store::{BlobHead, LinkedBytes, StoreError};
use tokio::io::AsyncWriteExt;

/// Why an upload's bytes were not stored.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    /// The body ran past the slot's size.
    #[error("the body is longer than the {0} bytes the slot was granted for")]
    TooLong(u64),
    /// The body ended before the slot's size.
    #[error("the body ended after {received} of the {expected} bytes the slot was granted for")]
    TooShort {
        /// Bytes received.
        received: u64,
        /// The slot's size.
        expected: u64,
    },
    /// Bytes were uploaded for this slot already.
    #[error("this file was uploaded already")]
    Exists,
    /// The client's body failed (it went away, or sent malformed chunks).
    #[error("the upload was interrupted: {0}")]
    Body(String),
    /// The disk failed.
    #[error("the file could not be stored: {0}")]
    Io(#[from] std::io::Error),
}

/// Attachment bytes under a directory, behind links `signer` signs.
pub struct FileBlobs {
    objects: PathBuf,
    incoming: PathBuf,
    signer: LinkSigner,
    /// For a store that must leave nothing behind (`--store memory`): its root, removed when
    /// the store is dropped.
    scratch: Option<PathBuf>,
}

impl FileBlobs {
    /// The store under `root` (created 0700 if missing); uploads a crash interrupted are
    /// removed.
    pub fn open(root: &Path, signer: LinkSigner) -> std::io::Result<Self> {
        let (objects, incoming) = (root.join("objects"), root.join("incoming"));
        for dir in [root, &objects, &incoming] {
            crate::config::private_dir(dir)?;
        }
        for leftover in std::fs::read_dir(&incoming)? {
            std::fs::remove_file(leftover?.path())?;
        }
        Ok(Self {
            objects,
            incoming,
            signer,
            scratch: None,
        })
    }

    /// A store in a fresh directory under the system's temporary directory, removed when the
    /// store is dropped: for a server that keeps nothing on disk.
    pub fn scratch(signer: LinkSigner) -> std::io::Result<Self> {
        let root = std::env::temp_dir().join(format!(
            "roomcast-attachments-{}-{}",
            std::process::id(),
            random_name()
        ));
        let mut store = Self::open(&root, signer)?;
        store.scratch = Some(root);
        Ok(store)
    }

    /// Where the object at `key` (`{tenant}/{room}/{id}`) lives; `None` for anything else.
    fn path_of(&self, key: &str) -> Option<PathBuf> {
        let segments: Vec<&str> = key.split('/').collect();
        let [tenant, room, id] = segments.as_slice() else {
            return None;
        };
        if [tenant, room, id].iter().any(|s| s.is_empty()) {
            return None;
        }
        let mut path = self.objects.clone();
        for segment in [tenant, room, id] {
            path.push(base32(segment.as_bytes()));
        }
        Some(path)
    }

    fn path_or_error(&self, key: &str) -> Result<PathBuf, StoreError> {
        self.path_of(key)
            .ok_or_else(|| StoreError::Other(format!("not an object key: `{key}`")))
    }

    /// Stores exactly `size` bytes from `body` at `key`: read as it arrives (one chunk in
    /// memory at a time), refused as soon as it runs past `size`, visible only once complete
    /// and on disk.
    pub async fn store<E: Display>(
        &self,
        key: &str,
        size: u64,
        body: impl Stream<Item = Result<Bytes, E>> + Unpin,
    ) -> Result<(), UploadError> {
        let path = self
            .path_of(key)
            .ok_or_else(|| std::io::Error::new(ErrorKind::InvalidInput, "not an object key"))?;
        // Checked first so a second upload is refused before its body is read; the link below
        // decides races.
        if tokio::fs::try_exists(&path).await? {
            return Err(UploadError::Exists);
        }
        let incoming = Incoming(self.incoming.join(random_name()));
        let mut file = private_file(&incoming.0).await?;
        let mut body = body;
        let mut received: u64 = 0;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| UploadError::Body(e.to_string()))?;
            received = received.saturating_add(u64::try_from(chunk.len()).unwrap_or(u64::MAX));
            if received > size {
                return Err(UploadError::TooLong(size));
            }
            file.write_all(&chunk).await?;
        }
        if received < size {
            return Err(UploadError::TooShort {
                received,
                expected: size,
            });
        }
        file.sync_all().await?;
        drop(file);
        let objects = self.objects.clone();
        tokio::task::spawn_blocking(move || publish(&incoming, &path, &objects))
            .await
            .map_err(|e| UploadError::Io(std::io::Error::other(e)))?
    }

    /// The object at `key` opened for reading, with its size; `None` when there is none.
    pub async fn open_object(
        &self,
        key: &str,
    ) -> Result<Option<(tokio::fs::File, u64)>, StoreError> {
        let path = self.path_or_error(key)?;
        match tokio::fs::File::open(&path).await {
            Ok(file) => {
                let size = file.metadata().await.map_err(io_error)?.len();
                Ok(Some((file, size)))
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error(e)),
        }
    }
}

impl Drop for FileBlobs {
    fn drop(&mut self) {
        if let Some(root) = &self.scratch
            && let Err(e) = std::fs::remove_dir_all(root)
        {
            tracing::warn!(root = %root.display(), error = %e, "attachment scratch directory left behind");
        }
    }
}

/// An upload being written; removed unless published (an error, or the client going away
/// and its request future being dropped, leaves nothing behind).
struct Incoming(PathBuf);

impl Drop for Incoming {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.0)
            && e.kind() != ErrorKind::NotFound
        {
            tracing::warn!(path = %self.0.display(), error = %e, "incoming upload not removed");
        }
    }
}

/// Gives the complete, fsynced `incoming` file its name `path`, unless that exists, and
/// fsyncs every directory an entry was added to, up to `objects`.
fn publish(incoming: &Incoming, path: &Path, objects: &Path) -> Result<(), UploadError> {
    let room_dir = path
        .parent()
        .ok_or_else(|| std::io::Error::other("an object path has a parent"))?;
    let created = !room_dir.exists();
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(room_dir)?;
    match std::fs::hard_link(&incoming.0, path) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => return Err(UploadError::Exists),
        Err(e) => return Err(e.into()),
    }
    sync_dir(room_dir)?;
    if created {
        // The room's and perhaps the tenant's directory are new: their parents changed too.
        for dir in room_dir.ancestors().skip(1) {
            sync_dir(dir)?;
            if dir == objects {
                break;
            }
        }
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    // Directories are opened read-only to fsync them (Unix); elsewhere this is a no-op.
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// A new file readable by the server's user only.
async fn private_file(path: &Path) -> std::io::Result<tokio::fs::File> {
    let mut options = tokio::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    options.open(path).await
}

/// 16 random bytes in hex: a name no other upload in flight has.
fn random_name() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn io_error(e: std::io::Error) -> StoreError {
    StoreError::Unavailable(format!("attachment files: {e}"))
}

#[async_trait::async_trait]
impl LinkedBytes for FileBlobs {
    fn signer(&self) -> &LinkSigner {
        &self.signer
    }

    async fn head(&self, key: &str, max_head: usize) -> Result<Option<BlobHead>, StoreError> {
        let path = self.path_or_error(key)?;
        tokio::task::spawn_blocking(move || {
            let file = match std::fs::File::open(&path) {
                Ok(file) => file,
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(io_error(e)),
            };
            let size = file.metadata().map_err(io_error)?.len();
            let mut head = Vec::with_capacity(max_head);
            file.take(u64::try_from(max_head).unwrap_or(u64::MAX))
                .read_to_end(&mut head)
                .map_err(io_error)?;
            Ok(Some(BlobHead { size, head }))
        })
        .await
        .map_err(|e| StoreError::Other(format!("attachment read task failed: {e}")))?
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path_or_error(key)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use futures::stream;

    use super::*;

    fn signer() -> LinkSigner {
        LinkSigner::new(&[3u8; 32]).expect("32 bytes is a valid link key")
    }

    fn chunks(parts: &[&'static [u8]]) -> impl Stream<Item = Result<Bytes, Infallible>> + Unpin {
        stream::iter(
            parts
                .iter()
                .map(|p| Ok(Bytes::from_static(p)))
                .collect::<Vec<_>>(),
        )
    }

    fn files_under(dir: &Path) -> Vec<PathBuf> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                found.extend(files_under(&path));
            } else {
                found.push(path);
            }
        }
        found
    }

    #[tokio::test]
    async fn keys_map_to_encoded_paths_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = FileBlobs::open(dir.path(), signer()).unwrap();
        let path = blobs.path_of("acme/../att_x").unwrap();
        assert!(path.starts_with(dir.path().join("objects")));
        assert_eq!(
            path.components().count(),
            blobs.objects.components().count() + 3
        );
        assert!(
            path.to_str()
                .unwrap()
                .split('/')
                .all(|s| s != ".." && s != ".")
        );
        assert_ne!(blobs.path_of("Acme/r/att_x"), blobs.path_of("acme/r/att_x"));
        for bad in ["a/b", "a/b/c/d", "a//c", ""] {
            assert_eq!(blobs.path_of(bad), None, "{bad}");
        }
        let longest = "x".repeat(roomcast_core::limits::MAX_NAME_LEN);
        let path = blobs
            .path_of(&format!("{longest}/{longest}/att_x"))
            .unwrap();
        assert!(path.components().all(|c| c.as_os_str().len() <= 255));
    }

    #[tokio::test]
    async fn exact_uploads_are_stored_once_and_others_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = FileBlobs::open(dir.path(), signer()).unwrap();
        blobs
            .store("t/r/att_a", 6, chunks(&[b"abc", b"def"]))
            .await
            .unwrap();
        let head = blobs.head("t/r/att_a", 4).await.unwrap().unwrap();
        assert_eq!((head.size, head.head.as_slice()), (6, &b"abcd"[..]));
        assert!(matches!(
            blobs.store("t/r/att_a", 6, chunks(&[b"zzzzzz"])).await,
            Err(UploadError::Exists)
        ));
        assert!(matches!(
            blobs.store("t/r/att_b", 4, chunks(&[b"abc", b"de"])).await,
            Err(UploadError::TooLong(4))
        ));
        assert!(matches!(
            blobs.store("t/r/att_c", 4, chunks(&[b"abc"])).await,
            Err(UploadError::TooShort {
                received: 3,
                expected: 4
            })
        ));
        assert_eq!(blobs.head("t/r/att_b", 4).await.unwrap(), None);
        assert_eq!(files_under(dir.path()).len(), 1, "only the complete upload");
        blobs.delete("t/r/att_a").await.unwrap();
        blobs.delete("t/r/att_a").await.unwrap();
        assert_eq!(
            blobs.open_object("t/r/att_a").await.unwrap().map(|o| o.1),
            None
        );
    }

    #[tokio::test]
    async fn interrupted_uploads_are_cleared_on_open_and_scratch_stores_vanish() {
        let dir = tempfile::tempdir().unwrap();
        drop(FileBlobs::open(dir.path(), signer()).unwrap());
        std::fs::write(dir.path().join("incoming").join("partial"), b"ab").unwrap();
        let _blobs = FileBlobs::open(dir.path(), signer()).unwrap();
        assert!(files_under(dir.path()).is_empty());

        let scratch = FileBlobs::scratch(signer()).unwrap();
        scratch
            .store("t/r/att_a", 1, chunks(&[b"x"]))
            .await
            .unwrap();
        let root = scratch.scratch.clone().unwrap();
        assert!(root.exists());
        drop(scratch);
        assert!(!root.exists());
    }
}

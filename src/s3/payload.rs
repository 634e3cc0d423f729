//! A request body: bytes in memory, or a range of a local file that is read a chunk at a time
//! while it is sent, so that a part staged on disk never sits whole in the daemon's memory.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use md5::Md5;
use sha2::{Digest, Sha256};

/// A file range is sent in chunks of this size, one read ahead of the one being sent: a body
/// streaming from a file holds at most twice this in memory.
pub const FILE_CHUNK: usize = 256 * 1024;

/// Memory one request body streaming from a file holds at most.
pub const FILE_BODY_MEMORY: u64 = 2 * FILE_CHUNK as u64;

/// Idle chunk buffers kept for reuse (4 MiB at most, process-wide).
const CHUNKS_KEPT: usize = 16;

/// Idle [`FILE_CHUNK`] buffers. A fresh one is mapped anew by the allocator and faulted in a
/// page at a time while `pread` fills it (the zeroing and the faults cost as much again as the
/// copy); a recycled one costs nothing.
static IDLE_CHUNKS: parking_lot::Mutex<Vec<Vec<u8>>> = parking_lot::Mutex::new(Vec::new());

/// A buffer of `len` (≤ [`FILE_CHUNK`]) bytes, recycled when one is idle. Its bytes are
/// whatever it held before.
fn take_chunk(len: usize) -> Vec<u8> {
    let mut buf = IDLE_CHUNKS
        .lock()
        .pop()
        .unwrap_or_else(|| vec![0u8; FILE_CHUNK]);
    buf.resize(len.max(FILE_CHUNK), 0);
    buf.truncate(len);
    buf
}

/// Gives a buffer from [`take_chunk`] back.
fn give_chunk(buf: Vec<u8>) {
    if (FILE_CHUNK..2 * FILE_CHUNK).contains(&buf.capacity()) {
        let mut idle = IDLE_CHUNKS.lock();
        if idle.len() < CHUNKS_KEPT {
            idle.push(buf);
        }
    }
}

/// A chunk read from a file, as `Bytes` that give the buffer back when the last copy goes.
struct Chunk(Vec<u8>);

impl AsRef<[u8]> for Chunk {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        give_chunk(std::mem::take(&mut self.0));
    }
}

/// What a write request sends.
#[derive(Clone, Debug)]
pub enum Payload {
    Bytes(Bytes),
    /// `len` bytes of the file at `path` from `offset`; the file is opened for each attempt,
    /// and must keep those bytes until the request ends (a short read fails the attempt).
    File {
        path: Arc<PathBuf>,
        offset: u64,
        len: u64,
    },
    /// `len` zero bytes, handed out from one static block while they are sent: never held in
    /// memory, whatever their length (the body of a hidden zeros object, a part of a hole).
    Zeros(u64),
    /// A body whose CRC32C is known already (computed while its bytes were written): sent as
    /// the body it wraps, its `x-amz-checksum-crc32c` taken from here instead of hashed from
    /// its bytes, which are then read once, as they are sent. A wrong value makes the server
    /// refuse the body (`BadDigest`), never store other bytes.
    WithCrc32c(Box<Payload>, u32),
}

/// The zeros a [`Payload::Zeros`] is sent and hashed from, a slice at a time.
pub(crate) static ZERO_BLOCK: [u8; 64 * 1024] = [0; 64 * 1024];

impl Default for Payload {
    fn default() -> Self {
        Payload::Bytes(Bytes::new())
    }
}

impl From<Bytes> for Payload {
    fn from(b: Bytes) -> Self {
        Payload::Bytes(b)
    }
}

impl From<Vec<u8>> for Payload {
    fn from(b: Vec<u8>) -> Self {
        Payload::Bytes(Bytes::from(b))
    }
}

impl Payload {
    /// The first `len` bytes of the file at `path`.
    pub fn file(path: &Path, len: u64) -> Payload {
        Payload::File {
            path: Arc::new(path.to_path_buf()),
            offset: 0,
            len,
        }
    }

    /// `len` zero bytes (see [`Payload::Zeros`]).
    pub fn zeros(len: u64) -> Payload {
        Payload::Zeros(len)
    }

    pub fn len(&self) -> u64 {
        match self {
            Payload::Bytes(b) => b.len() as u64,
            Payload::File { len, .. } => *len,
            Payload::Zeros(len) => *len,
            Payload::WithCrc32c(body, _) => body.len(),
        }
    }

    /// This body with its CRC32C known (`None`: not known, the body as it is).
    pub fn with_crc32c(self, crc32c: Option<u32>) -> Payload {
        match crc32c {
            Some(crc) => Payload::WithCrc32c(Box::new(self.without_crc32c()), crc),
            None => self,
        }
    }

    /// The CRC32C known without reading the body (see [`Payload::WithCrc32c`]).
    pub fn known_crc32c(&self) -> Option<u32> {
        match self {
            Payload::WithCrc32c(_, crc) => Some(*crc),
            _ => None,
        }
    }

    /// The body alone, its CRC32C (if known) to be hashed from its bytes.
    pub fn without_crc32c(self) -> Payload {
        match self {
            Payload::WithCrc32c(body, _) => body.without_crc32c(),
            other => other,
        }
    }

    /// The bytes sent, without a known CRC32C around them.
    pub fn body(&self) -> &Payload {
        match self {
            Payload::WithCrc32c(body, _) => body.body(),
            other => other,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Hex MD5 of the bytes (read on a blocking thread).
    pub(crate) async fn md5_hex(&self) -> io::Result<String> {
        self.digest::<Md5>().await.map(hex::encode)
    }

    /// Hex SHA-256 of the bytes (read on a blocking thread).
    pub(crate) async fn sha256_hex(&self) -> io::Result<String> {
        self.digest::<Sha256>().await.map(hex::encode)
    }

    /// Base64 MD5 (`Content-MD5`).
    pub(crate) async fn md5_base64(&self) -> io::Result<String> {
        use base64::Engine as _;
        let d = self.digest::<Md5>().await?;
        Ok(base64::engine::general_purpose::STANDARD.encode(d))
    }

    /// Base64 big-endian CRC32C (`x-amz-checksum-crc32c`): the one known, else read on a
    /// blocking thread.
    pub(crate) async fn crc32c_base64(&self) -> io::Result<String> {
        use base64::Engine as _;
        if let Some(crc) = self.known_crc32c() {
            return Ok(base64::engine::general_purpose::STANDARD.encode(crc.to_be_bytes()));
        }
        let this = self.clone();
        let crc = tokio::task::spawn_blocking(move || {
            let mut crc = 0u32;
            this.for_each_chunk(|c| crc = crc32c::crc32c_append(crc, c))?;
            Ok::<_, io::Error>(crc)
        })
        .await
        .map_err(io::Error::other)??;
        Ok(base64::engine::general_purpose::STANDARD.encode(crc.to_be_bytes()))
    }

    async fn digest<D: Digest + Send + 'static>(&self) -> io::Result<Vec<u8>> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let mut d = D::new();
            this.for_each_chunk(|c| d.update(c))?;
            Ok(d.finalize().to_vec())
        })
        .await
        .map_err(io::Error::other)?
    }

    /// Runs `f` over the bytes in order (blocking: file reads).
    fn for_each_chunk(&self, mut f: impl FnMut(&[u8])) -> io::Result<()> {
        match self {
            Payload::Bytes(b) => {
                f(b);
                Ok(())
            }
            Payload::File { path, offset, len } => {
                let file = File::open(path.as_path())?;
                let mut buf = take_chunk(FILE_CHUNK.min(*len as usize));
                let mut pos = 0u64;
                let mut result = Ok(());
                while pos < *len {
                    let n = (*len - pos).min(FILE_CHUNK as u64) as usize;
                    if let Err(e) = file.read_exact_at(&mut buf[..n], offset + pos) {
                        result = Err(e);
                        break;
                    }
                    f(&buf[..n]);
                    pos += n as u64;
                }
                give_chunk(buf);
                result
            }
            Payload::Zeros(len) => {
                let mut left = *len;
                while left > 0 {
                    let n = left.min(ZERO_BLOCK.len() as u64) as usize;
                    f(&ZERO_BLOCK[..n]);
                    left -= n as u64;
                }
                Ok(())
            }
            Payload::WithCrc32c(body, _) => body.for_each_chunk(f),
        }
    }
}

/// Reads `len` bytes at `at` of `path`, opening it if `file` is `None` (blocking).
pub(crate) fn read_chunk(
    file: Option<File>,
    path: &Path,
    at: u64,
    len: usize,
) -> io::Result<(File, Bytes)> {
    let file = match file {
        Some(f) => f,
        None => File::open(path)?,
    };
    let mut buf = take_chunk(len);
    if let Err(e) = file.read_exact_at(&mut buf, at) {
        give_chunk(buf);
        return Err(e);
    }
    Ok((file, Bytes::from_owner(Chunk(buf))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_read_right_into_recycled_buffers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p");
        let data: Vec<u8> = (0..(FILE_CHUNK + 300)).map(|i| (i % 253) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let (f, first) = read_chunk(None, &path, 0, FILE_CHUNK).unwrap();
        assert_eq!(&first[..], &data[..FILE_CHUNK]);
        let ptr = first.as_ptr();
        drop(first);
        assert!(
            IDLE_CHUNKS.lock().iter().any(|b| b.as_ptr() == ptr),
            "the buffer is back for the next read"
        );
        // a short last chunk (in a recycled buffer) holds only its bytes
        let (_, last) = read_chunk(Some(f), &path, FILE_CHUNK as u64, 300).unwrap();
        assert_eq!(&last[..], &data[FILE_CHUNK..]);
        // a failed read gives its buffer back too, and says why
        assert!(read_chunk(None, &path, FILE_CHUNK as u64, FILE_CHUNK).is_err());
    }

    #[tokio::test]
    async fn a_file_range_hashes_like_its_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p");
        let data: Vec<u8> = (0..(FILE_CHUNK * 2 + 77))
            .map(|i| (i % 251) as u8)
            .collect();
        std::fs::write(&path, &data).unwrap();
        let file = Payload::file(&path, data.len() as u64);
        let bytes = Payload::from(data.clone());
        assert_eq!(file.len(), bytes.len());
        assert_eq!(
            file.md5_hex().await.unwrap(),
            bytes.md5_hex().await.unwrap()
        );
        assert_eq!(
            file.sha256_hex().await.unwrap(),
            bytes.sha256_hex().await.unwrap()
        );
        assert_eq!(
            file.crc32c_base64().await.unwrap(),
            bytes.crc32c_base64().await.unwrap()
        );
        // the check value of CRC32C (RFC 3720): "123456789" gives 0xE3069283
        assert_eq!(
            Payload::from(b"123456789".to_vec())
                .crc32c_base64()
                .await
                .unwrap(),
            "4waSgw=="
        );
        // a file shorter than the range is an error, not a short body
        let long = Payload::file(&path, data.len() as u64 + 1);
        assert!(long.md5_hex().await.is_err());
    }

    #[tokio::test]
    async fn a_known_crc32c_is_taken_without_reading_the_body() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p");
        std::fs::write(&path, b"123456789").unwrap();
        let file = Payload::file(&path, 9).with_crc32c(Some(0xE306_9283));
        assert_eq!(file.len(), 9);
        assert_eq!(file.known_crc32c(), Some(0xE306_9283));
        assert!(matches!(file.body(), Payload::File { .. }));
        // the file is gone: the CRC32C comes from what was known, the MD5 cannot be read
        std::fs::remove_file(&path).unwrap();
        assert_eq!(file.crc32c_base64().await.unwrap(), "4waSgw==");
        assert!(file.md5_hex().await.is_err());
        // without it, the body is read again
        assert!(file.clone().without_crc32c().crc32c_base64().await.is_err());
        // a body wrapped twice keeps one CRC, the last given
        let bytes = Payload::from(b"abc".to_vec())
            .with_crc32c(Some(1))
            .with_crc32c(Some(crc32c::crc32c(b"abc")));
        assert!(matches!(&bytes, Payload::WithCrc32c(b, _) if matches!(**b, Payload::Bytes(_))));
        assert_eq!(
            bytes.crc32c_base64().await.unwrap(),
            Payload::from(b"abc".to_vec())
                .crc32c_base64()
                .await
                .unwrap()
        );
        assert_eq!(
            bytes.md5_hex().await.unwrap(),
            Payload::from(b"abc".to_vec()).md5_hex().await.unwrap()
        );
        assert_eq!(Payload::zeros(3).with_crc32c(None).known_crc32c(), None);
    }

    #[tokio::test]
    async fn zeros_hash_like_a_buffer_of_zeros() {
        let len = ZERO_BLOCK.len() * 3 + 5;
        let zeros = Payload::zeros(len as u64);
        let bytes = Payload::from(vec![0u8; len]);
        assert_eq!(zeros.len(), len as u64);
        assert_eq!(
            zeros.md5_hex().await.unwrap(),
            bytes.md5_hex().await.unwrap()
        );
        assert_eq!(
            zeros.crc32c_base64().await.unwrap(),
            bytes.crc32c_base64().await.unwrap()
        );
    }
}

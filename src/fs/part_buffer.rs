//! The bytes of the part being filled: in memory, or (with `--cache-dir`) in a part file on
//! disk so that many writers fit and a closed file's parts survive a crash.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};

pub enum PartBuffer {
    Mem(BytesMut),
    Disk { file: File, len: usize },
}

fn create(path: &Path) -> io::Result<File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
}

impl PartBuffer {
    pub fn memory() -> PartBuffer {
        PartBuffer::Mem(BytesMut::new())
    }

    pub fn disk(path: &Path) -> io::Result<PartBuffer> {
        Ok(PartBuffer::Disk {
            file: create(path)?,
            len: 0,
        })
    }

    pub fn len(&self) -> usize {
        match self {
            PartBuffer::Mem(b) => b.len(),
            PartBuffer::Disk { len, .. } => *len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn in_memory(&self) -> bool {
        matches!(self, PartBuffer::Mem(_))
    }

    /// Write `data` at `rel`, filling any gap with zeros.
    pub fn write_at(&mut self, rel: usize, data: &[u8]) -> io::Result<()> {
        let end = rel + data.len();
        match self {
            PartBuffer::Mem(b) => {
                if end > b.len() {
                    b.resize(end, 0);
                }
                b[rel..end].copy_from_slice(data);
            }
            PartBuffer::Disk { file, len } => {
                file.write_all_at(data, rel as u64)?;
                *len = (*len).max(end);
            }
        }
        Ok(())
    }

    /// Truncate or extend with zeros.
    pub fn resize(&mut self, new_len: usize) -> io::Result<()> {
        match self {
            PartBuffer::Mem(b) => b.resize(new_len, 0),
            PartBuffer::Disk { file, len } => {
                file.set_len(new_len as u64)?;
                *len = new_len;
            }
        }
        Ok(())
    }

    /// Bytes `[start, end)` (clamped to the length).
    pub fn read(&self, start: usize, end: usize) -> io::Result<Bytes> {
        let end = end.min(self.len());
        let start = start.min(end);
        match self {
            PartBuffer::Mem(b) => Ok(Bytes::copy_from_slice(&b[start..end])),
            PartBuffer::Disk { file, .. } => {
                let mut buf = vec![0u8; end - start];
                file.read_exact_at(&mut buf, start as u64)?;
                Ok(Bytes::from(buf))
            }
        }
    }

    /// Take the first `n` bytes out as a part body; the rest becomes the next part (for a
    /// disk buffer: in a new file at `next_path`; the old file keeps exactly the part).
    pub fn split_to(&mut self, n: usize, next_path: Option<&PathBuf>) -> io::Result<Bytes> {
        match self {
            PartBuffer::Mem(b) => Ok(b.split_to(n.min(b.len())).freeze()),
            PartBuffer::Disk { file, len } => {
                let n = n.min(*len);
                let mut body = vec![0u8; n];
                file.read_exact_at(&mut body, 0)?;
                let mut rest = vec![0u8; *len - n];
                file.read_exact_at(&mut rest, n as u64)?;
                file.set_len(n as u64)?;
                let path =
                    next_path.ok_or_else(|| io::Error::other("no path for the next part"))?;
                let next = create(path)?;
                next.write_all_at(&rest, 0)?;
                *file = next;
                *len = rest.len();
                Ok(Bytes::from(body))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_and_memory_buffers_agree() {
        let dir = std::env::temp_dir().join(format!("bfs-pb-{}", std::process::id()));
        let mut d = PartBuffer::disk(&dir.join("1")).expect("disk");
        let mut m = PartBuffer::memory();
        for b in [&mut d, &mut m] {
            b.write_at(0, b"hello").expect("w");
            b.write_at(8, b"world").expect("w");
            assert_eq!(b.len(), 13);
            assert_eq!(&b.read(0, 13).expect("r")[..], b"hello\0\0\0world");
            let first = b.split_to(6, Some(&dir.join("2"))).expect("split");
            assert_eq!(&first[..], b"hello\0");
            assert_eq!(&b.read(0, 100).expect("r")[..], b"\0\0world");
            b.resize(3).expect("resize");
            assert_eq!(&b.read(0, 100).expect("r")[..], b"\0\0w");
        }
        assert_eq!(std::fs::read(dir.join("1")).expect("part file"), b"hello\0");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

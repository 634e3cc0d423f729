//! Large writes to staging and cache files, and large reads of cache files, that skip the page
//! cache (`O_DIRECT`): a full part or a sequential read's run of cache blocks is written once and
//! read back rarely (a random read's lone block is not, and `data_cache` writes it through the
//! page cache), and on a VM the page cache's fresh pages cost more CPU than the write (2.5 s of
//! system time per GiB in a buffered `dd` here, 0.06 s direct). Aligned pieces go direct from
//! an aligned copy; the rest, and files on filesystems that refuse `O_DIRECT` (tmpfs), are
//! written and read as usual.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;

use crate::buffer_pool::BufferPool;

/// Offsets, lengths and memory of direct writes are multiples of this (the largest logical
/// block size of the disks in use; 512 suffices on most).
pub const ALIGN: usize = 4096;

/// Below this, a write goes through the page cache (not worth the copy and the syscalls).
const MIN_DIRECT: usize = 64 * 1024;

/// The aligned copy of each direct write, in pieces of at most this.
const BOUNCE: usize = 1024 * 1024;

/// At most this many aligned copies exist at once (each [`BOUNCE`] bytes, outside the memory
/// budget); a write of unaligned memory that finds none free goes through the page cache.
const BOUNCES_AT_ONCE: usize = 4;

/// Aligned copies in use now.
static BOUNCES_OUT: AtomicUsize = AtomicUsize::new(0);

/// Set once a filesystem refused `O_DIRECT`: every later write is buffered.
static REFUSED: AtomicBool = AtomicBool::new(false);

/// Aligned buffers kept for reuse (at most a few; each is [`BOUNCE`] + [`ALIGN`] bytes).
static BOUNCES: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// Whether a filesystem has refused `O_DIRECT` in this process (every write since went
/// through the page cache).
#[cfg(test)]
pub fn refused_anywhere() -> bool {
    REFUSED.load(Ordering::Relaxed)
}

/// Writes all of `data` at `offset` of `file` (opened for writing, without `O_DIRECT`):
/// the aligned middle directly to disk, the unaligned ends through the page cache. Blocking.
pub fn write_all_at(file: &File, data: &[u8], offset: u64) -> io::Result<()> {
    let a = ALIGN as u64;
    let first = offset.next_multiple_of(a);
    let end = offset + data.len() as u64;
    let last = end - end % a;
    if REFUSED.load(Ordering::Relaxed) || last < first || ((last - first) as usize) < MIN_DIRECT {
        return file.write_all_at(data, offset);
    }
    let head = (first - offset) as usize;
    let mid = (last - first) as usize;
    file.write_all_at(&data[..head], offset)?;
    if !direct(file, &data[head..head + mid], first)? {
        file.write_all_at(&data[head..head + mid], first)?;
    }
    file.write_all_at(&data[head + mid..], last)
}

/// Writes `data` (a multiple of [`ALIGN`] long) at `offset` (aligned) with `O_DIRECT` set on
/// `file` for the time of it; `false` when the filesystem refuses it (nothing written).
fn direct(file: &File, data: &[u8], offset: u64) -> io::Result<bool> {
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor `file` owns, reading and setting its status flags
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_DIRECT) } < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EINVAL) {
            refused(&e);
            return Ok(false);
        }
        return Err(e);
    }
    let written = write_aligned(file, data, offset);
    // SAFETY: as above, restoring the flags read
    let restored = unsafe { libc::fcntl(fd, libc::F_SETFL, flags) };
    let done = match written {
        Ok(n) => n,
        Err(e) => {
            if restored < 0 {
                return Err(io::Error::last_os_error());
            }
            if e.raw_os_error() != Some(libc::EINVAL) {
                return Err(e);
            }
            // the disk wants a larger alignment, or the filesystem direct writes of this kind
            refused(&e);
            0
        }
    };
    if restored < 0 {
        return Err(io::Error::last_os_error());
    }
    // a direct write that stopped short: the rest goes through the page cache
    if done < data.len() {
        file.write_all_at(&data[done..], offset + done as u64)?;
    }
    Ok(true)
}

/// Writes `data` at `offset` — from where it is when its address is aligned (a part held
/// in memory), else through an aligned copy a piece at a time; the bytes written before a
/// short write or an error (`EINVAL` only when nothing was written).
fn write_aligned(file: &File, data: &[u8], offset: u64) -> io::Result<usize> {
    let copy = data.as_ptr().align_offset(ALIGN) != 0;
    if copy && BOUNCES_OUT.fetch_add(1, Ordering::AcqRel) >= BOUNCES_AT_ONCE {
        // every aligned copy in use: nothing written here, all of it through the page cache
        BOUNCES_OUT.fetch_sub(1, Ordering::AcqRel);
        return Ok(0);
    }
    let mut bounce = copy.then(|| {
        BOUNCES
            .lock()
            .pop()
            .unwrap_or_else(|| vec![0u8; BOUNCE + ALIGN])
    });
    let mut done = 0;
    let result = loop {
        if done == data.len() {
            break Ok(done);
        }
        let rest = &data[done..];
        let buf: &[u8] = match bounce.as_mut() {
            Some(b) => {
                let skip = b.as_ptr().align_offset(ALIGN);
                let n = rest.len().min(BOUNCE);
                b[skip..skip + n].copy_from_slice(&rest[..n]);
                &b[skip..skip + n]
            }
            None => rest,
        };
        let n = buf.len();
        match file.write_at(buf, offset + done as u64) {
            Ok(w) if w == n => done += n,
            // short (a full disk says so on the buffered retry of the rest)
            Ok(w) => break Ok(done + w - w % ALIGN),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if done > 0 && e.raw_os_error() == Some(libc::EINVAL) => break Ok(done),
            Err(e) => break Err(e),
        }
    };
    if let Some(b) = bounce {
        let mut idle = BOUNCES.lock();
        if idle.len() < 2 {
            idle.push(b);
        }
        BOUNCES_OUT.fetch_sub(1, Ordering::AcqRel);
    }
    result
}

/// `len` bytes at `offset` (a multiple of [`ALIGN`]) of the file at `path`, read past the page
/// cache into a page-aligned buffer of `pool` (the bytes hand it back when dropped): no fresh
/// page-cache pages, no copy out of them, no fresh buffer to fault in. `None` when the file's
/// filesystem refuses `O_DIRECT` (read it as usual then); an error when the file holds fewer
/// bytes. Blocking.
pub fn read_at(
    path: &Path,
    offset: u64,
    len: usize,
    pool: &Arc<BufferPool>,
) -> io::Result<Option<Bytes>> {
    if REFUSED.load(Ordering::Relaxed) || offset % ALIGN as u64 != 0 {
        return Ok(None);
    }
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            refused(&e);
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    // whole aligned pieces; the file's end (an object's last block) cuts the last one short
    let want = len.next_multiple_of(ALIGN);
    let mut buf = pool.take_page_aligned(want);
    let skip = buf.len();
    let mut done = 0;
    while done < len {
        // the spare capacity starts right after the bytes read so far (and the skipped ones)
        let at = &mut buf.spare_capacity_mut()[..want - done];
        // SAFETY: reads into the buffer's spare capacity (`want - done` bytes past its
        // initialized ones, within its capacity: take_page_aligned made room for `want`
        // after the skipped bytes); only the bytes the kernel wrote are marked initialized
        let n = unsafe {
            libc::pread(
                file.as_raw_fd(),
                at.as_mut_ptr().cast(),
                at.len(),
                (offset + done as u64) as libc::off_t,
            )
        };
        match n {
            n if n > 0 => {
                done += n as usize;
                // SAFETY: the kernel wrote these `n` bytes just past the initialized ones
                unsafe { buf.set_len(skip + done) };
                if done < len && done % ALIGN != 0 {
                    // stopped inside a piece before the end: the rest as usual
                    return Ok(None);
                }
            }
            0 => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("{} holds {done} of {len} bytes at {offset}", path.display()),
                ))
            }
            _ => {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EINTR) => {}
                    Some(libc::EINVAL) if done == 0 => {
                        refused(&e);
                        return Ok(None);
                    }
                    _ => return Err(e),
                }
            }
        }
    }
    buf.truncate(skip + len);
    Ok(Some(pool.freeze_from(buf, skip)))
}

fn refused(e: &io::Error) {
    if !REFUSED.swap(true, Ordering::Relaxed) {
        tracing::debug!(
            "direct writes refused ({e}): staging and cache files go through the page cache"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    /// An empty file at `path`, open for reading and writing.
    fn fresh(path: &std::path::Path) -> File {
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(path)
            .expect("open")
    }

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 4099) as u8).collect()
    }

    #[test]
    fn every_alignment_lands_the_same_bytes() {
        let dir = std::env::temp_dir().join(format!("bucketfs-direct-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let cases: [(usize, u64); 6] = [
            (3 * BOUNCE + 5 * ALIGN, 0),
            (2 * BOUNCE, 100),
            (MIN_DIRECT + 1, ALIGN as u64 - 1),
            (BOUNCE + 17, 3 * ALIGN as u64),
            (10, 4),
            (MIN_DIRECT, 0),
        ];
        for (i, (len, offset)) in cases.into_iter().enumerate() {
            let path = dir.join(format!("f{i}"));
            let file = fresh(&path);
            // bytes before stay
            file.write_all_at(&[9u8; 8], 0).expect("before");
            // from an unaligned copy, or (odd cases) from an aligned address
            let mut store = vec![0u8; len + ALIGN];
            let at = match i % 2 {
                0 => store.as_ptr().align_offset(ALIGN) + 1,
                _ => store.as_ptr().align_offset(ALIGN),
            };
            let d = data(len);
            store[at..at + len].copy_from_slice(&d);
            write_all_at(&file, &store[at..at + len], offset).expect("write");
            let mut back = vec![0u8; len];
            file.read_exact_at(&mut back, offset).expect("read");
            assert!(back == d, "case {i}: bytes differ");
            let size = std::fs::metadata(&path).expect("meta").len();
            assert_eq!(size, (offset + len as u64).max(8), "case {i}");
            if offset >= 8 {
                let mut head = [0u8; 8];
                file.read_exact_at(&mut head, 0).expect("head");
                assert_eq!(head, [9u8; 8], "case {i}");
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn unaligned_memory_goes_through_the_page_cache_when_every_copy_is_in_use() {
        let path = std::env::temp_dir().join(format!("bucketfs-bounce-{}", std::process::id()));
        let file = fresh(&path);
        let len = 2 * BOUNCE;
        let mut store = vec![0u8; len + ALIGN];
        let at = store.as_ptr().align_offset(ALIGN) + 1;
        let d = data(len);
        store[at..at + len].copy_from_slice(&d);
        // every aligned copy taken (by writes that are not there): this one makes none
        let before = BOUNCES_OUT.fetch_add(BOUNCES_AT_ONCE, Ordering::AcqRel);
        let written = write_all_at(&file, &store[at..at + len], 0);
        let after = BOUNCES_OUT.fetch_sub(BOUNCES_AT_ONCE, Ordering::AcqRel);
        written.expect("write");
        let mut back = vec![0u8; len];
        file.read_exact_at(&mut back, 0).expect("read");
        assert!(back == d, "bytes differ");
        // the write gave back the slot it looked at (the other test may hold one meanwhile)
        assert!(after.saturating_sub(BOUNCES_AT_ONCE) <= before + 1);
        let _ = std::fs::remove_file(&path);
    }
}

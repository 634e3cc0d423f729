//! The bytes of the part being filled: in memory, or (with `--cache-dir`) in a part file on
//! disk so that many writers fit and a closed file's parts survive a crash. Each part split off
//! carries its CRC32C when it was written in order (see `part_crc.rs`).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use super::blocking::blocking;
use super::memory::Reservation;
use super::part_crc::PartCrcs;
use super::part_files::FileWrite;
use crate::buffer_pool::BufferPool;
use crate::buffer_pool::Room;
use crate::s3::Payload;

/// The bytes themselves.
enum Store {
    /// Bytes `buf[start..]`, in a buffer of the part's size from the pool (recycled once the
    /// part is sent). `start` moves past parts split off a buffer that held more than one part
    /// (a write far past the end), so each split copies one part, not the rest.
    Mem {
        buf: Vec<u8>,
        start: usize,
        part_size: usize,
        pool: Arc<BufferPool>,
    },
    /// A part file; once a part is split off, its file is what the upload sends (read while
    /// it is sent, never whole into memory) and keeps for a later resend.
    /// The file (and its upload's directory) is created when a byte first goes to it, not
    /// before: an open for writing that writes nothing (`touch`, `chmod` through an open
    /// file descriptor, a file whose bytes are all sent from memory) creates and removes no
    /// file in the staging area, whose inode allocator slows with every file created and
    /// removed in a row (issue #16).
    Disk {
        /// `None` until the file is created (see [`part_file`]).
        file: Option<File>,
        path: PathBuf,
        len: usize,
        /// Bytes appended at the end, held in memory (see [`Store::append_held`]).
        tail: Option<Tail>,
        pool: Arc<BufferPool>,
    },
}

/// Bytes `from..` of a disk buffer's part, appended in order and not written to the file yet.
/// A part that is all tail when it is full is sent from memory and written to its file once
/// (for a resend, a rewrite of a sent part, a resume after a crash): no small writes, no
/// reading the part back to hash and send it. Anything else that touches the buffer writes the
/// tail to the file first.
/// Its bytes start at an aligned address (`buf[skip..]`), so that the part file's write goes
/// to disk straight from them (see `direct_io`).
pub struct Tail {
    buf: Vec<u8>,
    skip: usize,
    from: usize,
}

impl Tail {
    /// An empty tail starting at `from` of the part, with room for `room` bytes; a recycled
    /// buffer's room in the budget goes to `rooms`.
    fn new(pool: &BufferPool, room: usize, from: usize, rooms: &mut Vec<Room>) -> Tail {
        let (buf, held) = pool.take_with_room(room + super::direct_io::ALIGN);
        rooms.extend(held);
        Tail::around(buf, from)
    }

    /// An empty tail in an idle buffer of `pool` that holds room in the budget (its room to
    /// `rooms`), or `None` when the pool has none.
    fn from_idle(
        pool: &BufferPool,
        room: usize,
        from: usize,
        rooms: &mut Vec<Room>,
    ) -> Option<Tail> {
        let (buf, held) = pool.take_idle_with_room(room + super::direct_io::ALIGN)?;
        rooms.push(held);
        Some(Tail::around(buf, from))
    }

    fn around(mut buf: Vec<u8>, from: usize) -> Tail {
        let skip = buf.as_ptr().align_offset(super::direct_io::ALIGN);
        let skip = if skip < super::direct_io::ALIGN {
            skip
        } else {
            0
        };
        buf.resize(skip, 0);
        Tail { buf, skip, from }
    }

    fn data(&self) -> &[u8] {
        &self.buf[self.skip..]
    }

    fn len(&self) -> usize {
        self.buf.len() - self.skip
    }

    /// Its bytes as a body, the buffer going back to `pool` when the body is dropped.
    fn freeze(self, pool: &Arc<BufferPool>) -> Bytes {
        pool.freeze(self.buf).slice(self.skip..)
    }
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

/// The part file of a disk buffer at `path`, created if it is not yet (blocking).
fn part_file<'a>(file: &'a mut Option<File>, path: &Path) -> io::Result<&'a File> {
    if file.is_none() {
        *file = Some(blocking(|| create(path))?);
    }
    file.as_ref()
        .ok_or_else(|| io::Error::other("part file missing"))
}

/// Copy the data of `from[start..end)` to `to` at offset 0 onwards, 1 MiB at a time, skipping
/// holes (`SEEK_DATA`/`SEEK_HOLE`; where those are not supported, everything is copied).
fn copy_data(from: &File, start: u64, end: u64, to: &File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    const CHUNK: u64 = 1024 * 1024;
    let fd = from.as_raw_fd();
    let mut pos = start;
    let mut buf = vec![0u8; CHUNK.min(end.saturating_sub(start)) as usize];
    while pos < end {
        // SAFETY: lseek on a descriptor this File owns; it only moves the file offset.
        let data = unsafe { libc::lseek(fd, pos as libc::off_t, libc::SEEK_DATA) };
        let data = if data < 0 {
            match io::Error::last_os_error().raw_os_error() {
                Some(libc::ENXIO) => return Ok(()), // only a hole up to the end
                _ => pos,                           // no SEEK_DATA: copy it all
            }
        } else {
            data as u64
        };
        if data >= end {
            return Ok(());
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(fd, data as libc::off_t, libc::SEEK_HOLE) };
        let stop = if hole < 0 {
            end
        } else {
            (hole as u64).min(end)
        };
        let mut at = data;
        while at < stop {
            let take = (stop - at).min(CHUNK) as usize;
            from.read_exact_at(&mut buf[..take], at)?;
            to.write_all_at(&buf[..take], at - start)?;
            at += take as u64;
        }
        pos = stop;
    }
    Ok(())
}

/// A buffer dropped (its file closed, unlinked, or sent whole) hands its memory back to the
/// pool: a small file's 1 byte took a part's room, and freeing it cost an 8 MiB `munmap` (a
/// TLB shootdown on every core) and the next file an 8 MiB `mmap` (seen per file in `cp -r`).
impl Drop for Store {
    fn drop(&mut self) {
        match self {
            Store::Mem { buf, pool, .. } if buf.capacity() > 0 => pool.give(std::mem::take(buf)),
            Store::Disk {
                tail: Some(t),
                pool,
                ..
            } => pool.give(std::mem::take(&mut t.buf)),
            _ => {}
        }
    }
}

impl Store {
    /// A buffer in memory for parts of `part_size` bytes, from `pool`.
    pub fn memory(pool: Arc<BufferPool>, part_size: usize) -> Store {
        Store::Mem {
            buf: Vec::new(),
            start: 0,
            part_size,
            pool,
        }
    }

    /// The first `len` bytes of an existing part file (the rest is cut off).
    pub fn disk_existing(path: &Path, len: usize, pool: Arc<BufferPool>) -> io::Result<Store> {
        let file = blocking(|| {
            let file = OpenOptions::new().read(true).write(true).open(path)?;
            file.set_len(len as u64)?;
            Ok::<_, io::Error>(file)
        })?;
        Ok(Store::Disk {
            file: Some(file),
            path: path.to_path_buf(),
            len,
            tail: None,
            pool,
        })
    }

    /// An empty buffer whose part file is `path`, created when a byte first goes to it.
    pub fn disk(path: &Path, pool: Arc<BufferPool>) -> Store {
        Store::Disk {
            file: None,
            path: path.to_path_buf(),
            len: 0,
            tail: None,
            pool,
        }
    }

    /// Creates a disk buffer's part file now if it is not yet (an empty file staged by
    /// write-back needs its part on disk, see `Upload::stage`).
    pub fn create_file(&mut self) -> io::Result<()> {
        if let Store::Disk { file, path, .. } = self {
            part_file(file, path)?;
        }
        Ok(())
    }

    /// Whether a disk buffer's part file exists yet (always false for a memory buffer).
    pub fn has_file(&self) -> bool {
        matches!(self, Store::Disk { file: Some(_), .. })
    }

    /// Bytes a disk buffer holds in memory (its tail).
    pub fn held(&self) -> usize {
        match self {
            Store::Disk { tail: Some(t), .. } => t.len(),
            _ => 0,
        }
    }

    /// Append `data` at the end of a disk buffer, in memory (the caller has counted it);
    /// `part_size`: the size of the part being filled, the room a new tail takes.
    pub fn append_held(&mut self, data: &[u8], part_size: usize, rooms: &mut Vec<Room>) {
        match self {
            Store::Disk {
                len, tail, pool, ..
            } => {
                let t = tail.get_or_insert_with(|| {
                    let room = part_size.saturating_sub(*len).max(data.len());
                    Tail::new(pool, room, *len, rooms)
                });
                t.buf.extend_from_slice(data);
                *len += data.len();
            }
            Store::Mem { .. } => {
                let at = self.len();
                // a memory buffer holds everything in memory anyway
                let _ = self.write_at(at, data, rooms);
            }
        }
    }

    /// Starts a disk buffer's tail (the rest of a part of `part_size`) in an idle buffer of
    /// its pool that holds room in the budget, the room to `rooms`; whether it did (not when a
    /// tail is there already, or the pool has no such buffer).
    fn claim_tail(&mut self, part_size: usize, rooms: &mut Vec<Room>) -> bool {
        match self {
            Store::Disk {
                len,
                tail: tail @ None,
                pool,
                ..
            } if *len < part_size => {
                *tail = Tail::from_idle(pool, part_size - *len, *len, rooms);
                tail.is_some()
            }
            _ => false,
        }
    }

    /// Write a disk buffer's tail to its file (blocking); its memory goes back to the pool.
    pub fn flush_tail(&mut self) -> io::Result<()> {
        if let Store::Disk {
            file,
            path,
            tail,
            pool,
            ..
        } = self
        {
            if let Some(t) = tail.take() {
                let file = part_file(file, path)?;
                blocking(|| super::direct_io::write_all_at(file, t.data(), t.from as u64))?;
                pool.give(t.buf);
            }
        }
        Ok(())
    }

    /// Whether the next `n` bytes split off will be sent from memory.
    pub fn splits_from_memory(&self, n: usize) -> bool {
        match self {
            Store::Mem { .. } => true,
            Store::Disk { tail: Some(t), .. } => t.from == 0 && t.len() >= n,
            Store::Disk { .. } => false,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Store::Mem { buf, start, .. } => buf.len() - *start,
            Store::Disk { len, .. } => *len,
        }
    }

    pub fn in_memory(&self) -> bool {
        matches!(self, Store::Mem { .. })
    }

    /// Write `data` at `rel`, filling any gap with zeros.
    pub fn write_at(&mut self, rel: usize, data: &[u8], rooms: &mut Vec<Room>) -> io::Result<()> {
        let end = rel + data.len();
        match self {
            Store::Mem {
                buf,
                start,
                part_size,
                pool,
            } => {
                if buf.capacity() == 0 {
                    // the first byte of a part: a whole part's room, recycled if possible
                    let (taken, held) = pool.take_with_room((*part_size).max(end));
                    *buf = taken;
                    rooms.extend(held);
                }
                let (rel, end) = (*start + rel, *start + end);
                if rel == buf.len() {
                    buf.extend_from_slice(data);
                } else {
                    if end > buf.len() {
                        buf.resize(end, 0);
                    }
                    buf[rel..end].copy_from_slice(data);
                }
            }
            Store::Disk { .. } => {
                self.flush_tail()?;
                if let Store::Disk {
                    file, path, len, ..
                } = self
                {
                    let file = part_file(file, path)?;
                    blocking(|| file.write_all_at(data, rel as u64))?;
                    *len = (*len).max(end);
                }
            }
        }
        Ok(())
    }

    /// Truncate or extend with zeros.
    pub fn resize(&mut self, new_len: usize) -> io::Result<()> {
        match self {
            Store::Mem { buf, start, .. } => buf.resize(*start + new_len, 0),
            Store::Disk { .. } => {
                self.flush_tail()?;
                if let Store::Disk {
                    file, path, len, ..
                } = self
                {
                    // cut to nothing before any byte went to it: no file needed
                    if file.is_some() || new_len > 0 {
                        let file = part_file(file, path)?;
                        blocking(|| file.set_len(new_len as u64))?;
                    }
                    *len = new_len;
                }
            }
        }
        Ok(())
    }

    /// Everything in the buffer, as a request body: a disk buffer all held in memory is sent
    /// from there (its file is not made); otherwise its file is read as it is sent, its tail
    /// written to it first.
    pub fn payload(&mut self) -> io::Result<Payload> {
        if let Store::Disk { tail: Some(t), .. } = self {
            if t.from == 0 {
                return Ok(Payload::from(Bytes::copy_from_slice(t.data())));
            }
        }
        self.flush_tail()?;
        match self {
            Store::Mem { .. } => self.read(0, self.len()).map(Payload::from),
            // nothing was ever written (the tail, if any, went to the file above)
            Store::Disk { file: None, .. } => Ok(Payload::from(Bytes::new())),
            Store::Disk { path, len, .. } => Ok(Payload::file(path, *len as u64)),
        }
    }

    /// Bytes `[start, end)` (clamped to the length).
    pub fn read(&self, start: usize, end: usize) -> io::Result<Bytes> {
        let end = end.min(self.len());
        let start = start.min(end);
        match self {
            Store::Mem { buf, start: at, .. } => {
                Ok(Bytes::copy_from_slice(&buf[at + start..at + end]))
            }
            Store::Disk { file, tail, .. } => {
                let mut buf = vec![0u8; end - start];
                let on_disk = tail.as_ref().map_or(end, |t| t.from.clamp(start, end));
                // without a file, every byte is in the tail (or the buffer is empty)
                if let Some(file) = file.as_ref().filter(|_| on_disk > start) {
                    blocking(|| file.read_exact_at(&mut buf[..on_disk - start], start as u64))?;
                }
                if let Some(t) = tail.as_ref().filter(|_| on_disk < end) {
                    buf[on_disk - start..]
                        .copy_from_slice(&t.data()[on_disk - t.from..end - t.from]);
                }
                Ok(Bytes::from(buf))
            }
        }
    }

    /// Take the first `n` bytes out as a part body; the rest becomes the next part (for a
    /// disk buffer: in a new file at `next_path`; the old file keeps exactly the part).
    /// `next_part_size`: the size of the part that follows.
    /// A part sent from memory comes with the write of its file, for the caller to run.
    pub fn split_to(
        &mut self,
        n: usize,
        next_path: Option<&PathBuf>,
        next_part_size: usize,
        rooms: &mut Vec<Room>,
    ) -> io::Result<(Payload, Option<FileWrite>)> {
        match self {
            Store::Mem {
                buf,
                start,
                part_size,
                pool,
            } => {
                *part_size = next_part_size;
                let n = n.min(buf.len() - *start);
                if *start == 0 && n == buf.len() {
                    // the usual case: the buffer is exactly the part; the next write takes a
                    // new one from the pool
                    return Ok((pool.freeze(std::mem::take(buf)).into(), None));
                }
                let mut body = pool.take(n);
                body.extend_from_slice(&buf[*start..*start + n]);
                *start += n;
                let rest = buf.len() - *start;
                if rest == 0 {
                    buf.clear();
                    *start = 0;
                } else if rest <= *start {
                    // moving the rest to the front costs less than what was split off
                    buf.drain(..*start);
                    *start = 0;
                }
                Ok((pool.freeze(body).into(), None))
            }
            Store::Disk { .. } if self.splits_from_memory(n) => {
                let Store::Disk {
                    file,
                    path,
                    len,
                    tail,
                    pool,
                } = self
                else {
                    return Err(io::Error::other("not a disk buffer"));
                };
                let next_path =
                    next_path.ok_or_else(|| io::Error::other("no path for the next part"))?;
                let Some(mut t) = tail.take() else {
                    return Err(io::Error::other("no tail"));
                };
                // the part's file, for a resend or a resume; the next part's bytes stay held
                let rest = if t.len() > n {
                    let mut rest = Tail::new(pool, next_part_size.max(t.len() - n), 0, rooms);
                    rest.buf.extend_from_slice(&t.data()[n..]);
                    t.buf.truncate(t.skip + n);
                    Some(rest)
                } else {
                    None
                };
                // the part's file now; the next part's, when a byte goes to it
                let part_file = match file.take() {
                    Some(f) => f,
                    None => blocking(|| create(path))?,
                };
                *tail = rest;
                *path = next_path.clone();
                *len -= n;
                let data = t.freeze(pool);
                let write = FileWrite {
                    file: part_file,
                    data: data.clone(),
                };
                Ok((data.into(), Some(write)))
            }
            Store::Disk { .. } => {
                self.flush_tail()?;
                let Store::Disk {
                    file, path, len, ..
                } = self
                else {
                    return Err(io::Error::other("not a disk buffer"));
                };
                let n = n.min(*len);
                let next_path =
                    next_path.ok_or_else(|| io::Error::other("no path for the next part"))?;
                // the part is sent from its file (made if nothing went to it: a zero part)
                let part = part_file(file, path)?;
                let next = blocking(|| {
                    // Only when there is a rest (no truncate otherwise: ext4 takes a truncate
                    // to size 0 for a "replace via truncate" and writes the file out to disk
                    // when it is closed — every part file, on the write path). The rest may be
                    // large and mostly a hole (a write far past the end): its data is copied a
                    // piece at a time, and the holes stay holes. Without a rest the next
                    // part's file is made when a byte goes to it.
                    if *len > n {
                        let next = create(next_path)?;
                        next.set_len((*len - n) as u64)?;
                        copy_data(part, n as u64, *len as u64, &next)?;
                        part.set_len(n as u64)?;
                        return Ok::<_, io::Error>(Some(next));
                    }
                    Ok(None)
                })?;
                let body = Payload::file(path, n as u64);
                *file = next;
                *path = next_path.clone();
                *len -= n;
                Ok((body, None))
            }
        }
    }
}

/// The bytes not yet split off into parts, and the CRC32C of each part among them as far as it
/// is known. Every change of the bytes goes through here, and is told to `crcs`.
pub struct PartBuffer {
    store: Store,
    crcs: PartCrcs,
    /// Rooms in the budget of recycled buffers taken since the owner last asked
    /// ([`keep_rooms_in`](Self::keep_rooms_in)).
    rooms: Vec<Room>,
}

impl PartBuffer {
    /// A buffer in memory for parts of `part_size` bytes, from `pool`.
    pub fn memory(pool: Arc<BufferPool>, part_size: usize) -> PartBuffer {
        PartBuffer {
            store: Store::memory(pool, part_size),
            crcs: PartCrcs::new(part_size),
            rooms: Vec::new(),
        }
    }

    /// The first `len` bytes of an existing part file (the rest is cut off), a part of
    /// `part_size` bytes: their CRC is not known.
    pub fn disk_existing(
        path: &Path,
        len: usize,
        part_size: usize,
        pool: Arc<BufferPool>,
    ) -> io::Result<PartBuffer> {
        Ok(PartBuffer {
            store: Store::disk_existing(path, len, pool)?,
            crcs: PartCrcs::unknown(len, part_size),
            rooms: Vec::new(),
        })
    }

    /// An empty buffer for a part of `part_size` bytes whose file is `path`, created when a
    /// byte first goes to it.
    pub fn disk(path: &Path, part_size: usize, pool: Arc<BufferPool>) -> PartBuffer {
        PartBuffer {
            store: Store::disk(path, pool),
            crcs: PartCrcs::new(part_size),
            rooms: Vec::new(),
        }
    }

    /// Creates a disk buffer's part file now if it is not yet (an empty file staged by
    /// write-back needs its part on disk, see `Upload::stage`).
    pub fn create_file(&mut self) -> io::Result<()> {
        self.store.create_file()
    }

    /// Whether a disk buffer's part file exists yet (always false for a memory buffer).
    pub fn has_file(&self) -> bool {
        self.store.has_file()
    }

    /// After a change that failed part way: the bytes are whatever it left.
    fn lost(&mut self) {
        self.crcs = PartCrcs::unknown(self.store.len(), self.crcs.part_size());
    }

    /// Bytes a disk buffer holds in memory (its tail).
    pub fn held(&self) -> usize {
        self.store.held()
    }

    /// Moves the rooms in the budget of recycled buffers this buffer took (a part's buffer, a
    /// tail) since the last call into the owner's `reservation`, as the buffers are resident
    /// in full from the start; how many there were.
    pub fn keep_rooms_in(&mut self, reservation: &mut Reservation) -> usize {
        let n = self.rooms.len();
        for room in self.rooms.drain(..) {
            reservation.merge_room(room);
        }
        n
    }

    /// Append `data` at the end of a disk buffer, in memory (the caller has counted it);
    /// `part_size`: the size of the part being filled, the room a new tail takes.
    pub fn append_held(&mut self, data: &[u8], part_size: usize) {
        self.store.append_held(data, part_size, &mut self.rooms);
        self.crcs.append(data);
    }

    /// Write a disk buffer's tail to its file (blocking); its memory goes back to the pool.
    pub fn flush_tail(&mut self) -> io::Result<()> {
        self.store.flush_tail()
    }

    /// With no tail yet, start one for the rest of a part of `part_size` in an idle pooled
    /// buffer that holds room in the budget: that buffer is what the tail would take anyway,
    /// and its room comes with it (see [`keep_rooms_in`](Self::keep_rooms_in)). Whether it did.
    pub fn claim_tail(&mut self, part_size: usize) -> bool {
        self.store.claim_tail(part_size, &mut self.rooms)
    }

    /// Whether the next `n` bytes split off will be sent from memory.
    pub fn splits_from_memory(&self, n: usize) -> bool {
        self.store.splits_from_memory(n)
    }

    pub fn len(&self) -> usize {
        self.store.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn in_memory(&self) -> bool {
        self.store.in_memory()
    }

    /// Write `data` at `rel`, filling any gap with zeros.
    pub fn write_at(&mut self, rel: usize, data: &[u8]) -> io::Result<()> {
        let r = self.store.write_at(rel, data, &mut self.rooms);
        match r {
            Ok(()) => self.crcs.write(rel, data),
            Err(_) => self.lost(),
        }
        r
    }

    /// Truncate or extend with zeros.
    pub fn resize(&mut self, new_len: usize) -> io::Result<()> {
        let r = self.store.resize(new_len);
        match r {
            Ok(()) => self.crcs.resize(new_len),
            Err(_) => self.lost(),
        }
        r
    }

    /// Everything in the buffer, as a request body with its CRC32C when known (a disk
    /// buffer's file is read as it is sent: its tail is written to it first).
    pub fn payload(&mut self) -> io::Result<Payload> {
        let body = self.store.payload()?;
        Ok(body.with_crc32c(self.crcs.whole()))
    }

    /// Bytes `[start, end)` (clamped to the length).
    pub fn read(&self, start: usize, end: usize) -> io::Result<Bytes> {
        self.store.read(start, end)
    }

    /// Take the first `n` bytes out as a part body, with its CRC32C when it is known; the rest
    /// becomes the next part (for a disk buffer: in a new file at `next_path`; the old file
    /// keeps exactly the part). `next_part_size`: the size of the part that follows.
    /// A part sent from memory comes with the write of its file, for the caller to run.
    pub fn split_to(
        &mut self,
        n: usize,
        next_path: Option<&PathBuf>,
        next_part_size: usize,
    ) -> io::Result<(Payload, Option<FileWrite>)> {
        match self
            .store
            .split_to(n, next_path, next_part_size, &mut self.rooms)
        {
            Ok((body, write)) => {
                let crc = self.crcs.split(body.len() as usize, next_part_size);
                Ok((body.with_crc32c(crc), write))
            }
            Err(e) => {
                self.lost();
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes a part body sends.
    fn sent(p: &Payload) -> Vec<u8> {
        match p {
            Payload::Bytes(b) => b.to_vec(),
            Payload::File { path, offset, len } => {
                let all = std::fs::read(path.as_path()).expect("part file");
                all[*offset as usize..(*offset + *len) as usize].to_vec()
            }
            Payload::Zeros(len) => vec![0; *len as usize],
            Payload::WithCrc32c(body, crc) => {
                let bytes = sent(body);
                assert_eq!(*crc, crc32c::crc32c(&bytes), "the CRC32C of the bytes sent");
                bytes
            }
        }
    }

    #[test]
    fn disk_and_memory_buffers_agree() {
        let dir = std::env::temp_dir().join(format!("bfs-pb-{}", std::process::id()));
        let pool = Arc::new(BufferPool::default());
        let mut d = PartBuffer::disk(&dir.join("1"), 16, pool.clone());
        let mut m = PartBuffer::memory(pool.clone(), 16);
        for b in [&mut d, &mut m] {
            b.write_at(0, b"hello").expect("w");
            b.write_at(8, b"world").expect("w");
            assert_eq!(b.len(), 13);
            assert_eq!(&b.read(0, 13).expect("r")[..], b"hello\0\0\0world");
            let (first, w) = b.split_to(6, Some(&dir.join("2")), 16).expect("split");
            if let Some(w) = w {
                w.run().expect("part file");
            }
            assert_eq!(sent(&first), b"hello\0");
            assert_eq!(&b.read(0, 100).expect("r")[..], b"\0\0world");
            b.resize(3).expect("resize");
            assert_eq!(&b.read(0, 100).expect("r")[..], b"\0\0w");
        }
        assert_eq!(std::fs::read(dir.join("1")).expect("part file"), b"hello\0");
        assert_eq!(pool.idle(), 1, "the sent part's buffer is back in the pool");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn parts_written_in_order_carry_their_crc32c_and_others_none() {
        let dir = std::env::temp_dir().join(format!("bfs-pb-crc-{}", std::process::id()));
        let pool = Arc::new(BufferPool::default());
        let d = PartBuffer::disk(&dir.join("d1"), 8, pool.clone());
        let m = PartBuffer::memory(pool.clone(), 8);
        for (tag, mut b) in [("d", d), ("m", m)] {
            let next = |i: u32| Some(dir.join(format!("{tag}{i}")));
            let split = |b: &mut PartBuffer, n: usize, i: u32| {
                let (body, w) = b.split_to(n, next(i).as_ref(), 8).expect("split");
                if let Some(w) = w {
                    w.run().expect("part file");
                }
                body
            };
            // held in memory, then written, in order, past the part's end
            b.append_held(b"abcd", 8);
            b.write_at(4, b"efghij").expect("w");
            let first = split(&mut b, 8, 2);
            assert_eq!(first.known_crc32c(), Some(crc32c::crc32c(b"abcdefgh")));
            assert_eq!(sent(&first), b"abcdefgh");
            // a write before the end: the part's CRC is not known
            b.write_at(0, b"I").expect("w");
            b.write_at(2, b"kl").expect("w");
            let second = split(&mut b, 4, 3);
            assert_eq!(
                (second.known_crc32c(), sent(&second)),
                (None, b"Ijkl".to_vec())
            );
            // the next part in order again; a cut loses it
            b.write_at(0, b"mnop").expect("w");
            let third = split(&mut b, 4, 4);
            assert_eq!(third.known_crc32c(), Some(crc32c::crc32c(b"mnop")));
            b.write_at(0, b"qrst").expect("w");
            b.resize(2).expect("cut");
            assert_eq!(b.payload().expect("body").known_crc32c(), None);
            b.resize(0).expect("cut");
            b.write_at(0, b"uv").expect("w");
            let whole = b.payload().expect("body");
            assert_eq!(whole.known_crc32c(), Some(crc32c::crc32c(b"uv")));
            assert_eq!(sent(&whole), b"uv");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A pool whose idle buffers count against a 16 MiB budget.
    fn gated_pool() -> (Arc<crate::fs::memory::MemoryBudget>, Arc<BufferPool>) {
        use crate::fs::memory::{BudgetGate, MemoryBudget};
        let budget = Arc::new(MemoryBudget::new(16 << 20));
        let pool = Arc::new(BufferPool::default());
        pool.set_gate(Arc::new(BudgetGate(budget.clone())));
        (budget, pool)
    }

    /// A sent part's buffer (a tail of `part` bytes, written in full) given back to `pool`.
    fn give_a_sent_part(pool: &BufferPool, part: usize) {
        let mut used = pool.take(part + super::super::direct_io::ALIGN);
        used.resize(used.capacity(), 1);
        pool.give(used);
    }

    #[test]
    fn a_recycled_buffer_comes_with_its_room_in_the_budget() {
        let dir = std::env::temp_dir().join(format!("bfs-pb-room-{}", std::process::id()));
        let (budget, pool) = gated_pool();
        let part = 1 << 20;
        // a sent part's buffer, idle in the pool: counted in full
        give_a_sent_part(&pool, part);
        let idle = budget.in_use();
        assert!(idle > part as u64);
        for memory in [false, true] {
            let mut b = match memory {
                false => PartBuffer::disk(&dir.join("1"), part, pool.clone()),
                true => PartBuffer::memory(pool.clone(), part),
            };
            // one byte into a tail (a part) that takes the recycled buffer: its room goes
            // to the owner with it, not back to the budget
            match memory {
                false => b.append_held(b"x", part),
                true => b.write_at(0, b"x").expect("w"),
            }
            assert_eq!(
                budget.in_use(),
                idle,
                "memory {memory}: the room is still counted"
            );
            let mut kept = Reservation::default();
            assert_eq!(b.keep_rooms_in(&mut kept), 1, "memory {memory}");
            assert_eq!(kept.bytes(), idle, "memory {memory}");
            assert_eq!(b.keep_rooms_in(&mut kept), 0);
            // the buffer back in the pool (the part flushed or dropped), its room with it
            drop(kept);
            drop(b);
            assert_eq!(budget.in_use(), idle, "memory {memory}: idle again");
        }
        // a new buffer brings no room: its pages come as they are written
        let mut fresh = PartBuffer::memory(pool.clone(), 4 * part);
        fresh.write_at(0, b"y").expect("w");
        assert_eq!(fresh.keep_rooms_in(&mut Reservation::default()), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_tail_claims_an_idle_buffer_that_holds_room_and_nothing_else() {
        let dir = std::env::temp_dir().join(format!("bfs-pb-claim-{}", std::process::id()));
        let (budget, pool) = gated_pool();
        let part = 1 << 20;
        let mut d = PartBuffer::disk(&dir.join("1"), part, pool.clone());
        assert!(!d.claim_tail(part), "no idle buffer: nothing to claim");
        // a sent part's buffer, idle in the pool with its room
        give_a_sent_part(&pool, part);
        let idle = budget.in_use();
        assert!(idle > part as u64);
        // a tail started in it: the room comes along, the budget in use does not grow
        assert!(d.claim_tail(part));
        assert_eq!((pool.idle(), d.held(), d.len()), (0, 0, 0));
        let mut kept = Reservation::default();
        assert_eq!(d.keep_rooms_in(&mut kept), 1);
        assert_eq!((kept.bytes(), budget.in_use()), (idle, idle));
        // the bytes go into the claimed tail, which takes no other buffer
        d.append_held(b"abc", part);
        assert_eq!((d.held(), d.keep_rooms_in(&mut kept)), (3, 0));
        assert!(!d.claim_tail(part), "a tail is there already");
        assert_eq!(&d.read(0, 3).expect("r")[..], b"abc");
        // a buffer in memory has no tail to claim
        give_a_sent_part(&pool, part);
        assert!(!PartBuffer::memory(pool.clone(), part).claim_tail(part));
        assert_eq!(pool.idle(), 1, "the idle buffer is still there");
        // nor does a part already full
        let mut full = PartBuffer::disk(&dir.join("2"), 8, pool.clone());
        full.append_held(b"12345678", 8);
        full.flush_tail().expect("flush");
        assert!(!full.claim_tail(8));
        drop(d);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn appended_bytes_held_in_memory_go_from_memory_and_land_in_the_part_file() {
        let dir = std::env::temp_dir().join(format!("bfs-pb-tail-{}", std::process::id()));
        let pool = Arc::new(BufferPool::default());
        let mut d = PartBuffer::disk(&dir.join("1"), 16, pool.clone());
        d.append_held(b"abcd", 8);
        d.append_held(b"efghij", 8);
        assert_eq!((d.len(), d.held()), (10, 10));
        assert_eq!(
            &d.read(2, 9).expect("r")[..],
            b"cdefghi",
            "reads see the tail"
        );
        assert!(d.splits_from_memory(8));
        let (first, w) = d.split_to(8, Some(&dir.join("2")), 8).expect("split");
        w.expect("a file write").run().expect("part file");
        assert!(
            matches!(first.body(), Payload::Bytes(_)),
            "sent from memory"
        );
        assert_eq!(sent(&first), b"abcdefgh");
        assert_eq!(
            std::fs::read(dir.join("1")).expect("part file"),
            b"abcdefgh"
        );
        // the next part's first bytes stay held; a write elsewhere puts them in the file
        assert_eq!((d.len(), d.held()), (2, 2));
        d.write_at(4, b"z").expect("w");
        assert_eq!(d.held(), 0);
        assert_eq!(&d.read(0, 5).expect("r")[..], b"ij\0\0z");
        // a tail that started after bytes on disk is written out before its part goes
        d.append_held(b"123", 8);
        assert!(!d.splits_from_memory(8));
        let (second, w) = d.split_to(8, Some(&dir.join("3")), 8).expect("split");
        assert!(w.is_none(), "its file has its bytes");
        assert_eq!(sent(&second), b"ij\0\0z123");
        assert!(matches!(second.body(), Payload::File { .. }));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_disk_buffer_far_past_the_end_splits_without_reading_the_hole() {
        // one byte at 1 TiB: the rest after each split is a hole, never read into memory
        let dir = std::env::temp_dir().join(format!("bfs-pb-hole-{}", std::process::id()));
        let mut d = PartBuffer::disk(&dir.join("1"), 16, Arc::new(BufferPool::default()));
        let far = 1usize << 40;
        d.write_at(100, b"head").expect("w");
        d.write_at(far, b"x").expect("far write");
        let (first, _) = d.split_to(16, Some(&dir.join("2")), 16).expect("split");
        assert_eq!(sent(&first), [0u8; 16]);
        assert_eq!(d.len(), far + 1 - 16);
        assert_eq!(&d.read(84, 88).expect("r")[..], b"head");
        assert_eq!(&d.read(far - 16, far - 15).expect("r")[..], b"x");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_buffer_holding_several_parts_splits_them_off_in_order() {
        // a write far past the end: zeros, then the data, split part by part
        let pool = Arc::new(BufferPool::default());
        let mut m = PartBuffer::memory(pool, 4);
        m.write_at(10, b"xy").expect("w");
        assert_eq!(m.len(), 12);
        let mut parts = Vec::new();
        while m.len() >= 4 {
            parts.push(sent(&m.split_to(4, None, 4).expect("split").0));
        }
        assert_eq!(parts.len(), 3);
        assert_eq!(&parts[0][..], b"\0\0\0\0");
        assert_eq!(&parts[2][..], b"\0\0xy");
        assert!(m.is_empty());
        // the rest keeps taking writes at the right place
        m.write_at(0, b"abc").expect("w");
        m.write_at(3, b"defg").expect("w");
        assert_eq!(sent(&m.split_to(4, None, 4).expect("split").0), b"abcd");
        assert_eq!(&m.read(0, 10).expect("r")[..], b"efg");
    }
}

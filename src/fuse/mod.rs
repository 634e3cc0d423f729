//! Thin FUSE adapter: turns fuser callbacks into calls on the filesystem core.
//!
//! A request's work starts on the FUSE thread and is handed to the tokio runtime at its first
//! wait, so a slow S3 call never blocks the loop that reads /dev/fuse. Failures are logged
//! here, in one place, with the errno sent.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use fuser::{
    AccessFlags, Config, Errno, FileAttr, FileHandle, FileType, FopenFlags, Generation, INodeNo,
    InitFlags, KernelConfig, LockOwner, MountOption, OpenFlags, RenameFlags, ReplyAttr,
    ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs,
    ReplyWrite, ReplyXattr, Request, SessionACL, TimeOrNow, WriteFlags,
};

use crate::buffer_pool::BufferPool;
use crate::fs::error::log_failure;
use crate::fs::{Attr, Caller, CloseRoute, Closing, FileKind, Filesystem, FsError, SetAttr};

/// How the kernel mount is set up.
#[derive(Debug, Clone)]
pub struct MountOptions {
    pub mountpoint: PathBuf,
    pub read_only: bool,
    pub allow_other: bool,
    pub allow_root: bool,
    /// Let the kernel enforce mode bits (on by default).
    pub default_permissions: bool,
    /// Shown as the source in /proc/mounts, e.g. `bucketfs:my-bucket/prefix/`.
    pub fsname: String,
    /// FUSE worker threads reading /dev/fuse.
    pub threads: usize,
}

/// Largest read and write the kernel sends in one request. 1 MiB requests cut the number of
/// round trips through the kernel for big sequential I/O by 8x against the 128 KiB default.
const MAX_IO: u32 = 1024 * 1024;
/// Kernel read-ahead per file; our own prefetcher does the long-range read-ahead.
const MAX_READAHEAD: u32 = 1024 * 1024;
/// st_blksize: `cp` and friends size their buffers from it, so large means fewer requests.
const BLKSIZE: u32 = 1024 * 1024;

struct Adapter {
    fs: Arc<Filesystem>,
    rt: tokio::runtime::Handle,
    /// Buffers for write data copied out of fuser's request buffer, reused (a fresh 1 MiB one
    /// per write costs 256 page faults).
    write_bufs: Arc<BufferPool>,
}

fn to_file_type(kind: FileKind) -> FileType {
    match kind {
        FileKind::File => FileType::RegularFile,
        FileKind::Directory => FileType::Directory,
        FileKind::Symlink => FileType::Symlink,
        FileKind::Fifo => FileType::NamedPipe,
        FileKind::Socket => FileType::Socket,
        FileKind::CharDevice => FileType::CharDevice,
        FileKind::BlockDevice => FileType::BlockDevice,
    }
}

fn to_file_attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.size.div_ceil(512),
        atime: a.atime,
        mtime: a.mtime,
        ctime: a.ctime,
        crtime: a.mtime,
        kind: to_file_type(a.kind),
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev,
        blksize: BLKSIZE,
        flags: 0,
    }
}

fn errno(e: &FsError) -> Errno {
    Errno::from_i32(e.errno)
}

fn caller(req: &Request) -> Caller {
    Caller {
        uid: req.uid(),
        gid: req.gid(),
        pid: req.pid(),
    }
}

fn resolve_time(t: Option<TimeOrNow>) -> Option<SystemTime> {
    t.map(|t| match t {
        TimeOrNow::SpecificTime(t) => t,
        TimeOrNow::Now => SystemTime::now(),
    })
}

/// Names must be UTF-8 to become S3 keys.
fn utf8_name(name: &OsStr) -> Result<String, FsError> {
    std::str::from_utf8(name.as_bytes())
        .map(str::to_string)
        .map_err(|_| {
            FsError::new(
                libc::EINVAL,
                "file names must be valid UTF-8 to become S3 keys",
            )
        })
}

impl Adapter {
    /// Run `work` (which answers the request) here, on this FUSE thread, as far as it goes
    /// without waiting; what must wait (an S3 request, the blocking pool, a lock held by
    /// another task) goes on on the runtime. Most writes, creates, releases and reads of
    /// bytes already fetched never wait: their answer then costs no thread switch.
    fn spawn<F>(&self, fut: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let _rt = self.rt.enter();
        let mut fut = Box::pin(fut);
        // (no waker is kept: the runtime polls the task once as soon as it is spawned, and
        // the waker of that poll is the one its resources wake)
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        // a panic must not end this FUSE thread (the runtime survives a task's): the work is
        // dropped, and with it its reply, which fuser then answers with EIO
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fut.as_mut().poll(&mut cx)))
        {
            Ok(std::task::Poll::Ready(())) => {}
            Ok(std::task::Poll::Pending) => {
                self.rt.spawn(fut);
            }
            Err(_) => tracing::error!("a request's work panicked on the FUSE thread: EIO"),
        }
    }

    /// Run `work` on the runtime from its start: for fsync, for the close of a file of more
    /// than one part or with `--write-back` (long blocking calls, such as fsyncs of staged
    /// files, that must not hold a FUSE thread), and for a durable large file's writes.
    fn spawn_away<F>(&self, fut: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.rt.spawn(fut);
    }
}

/// A name in a directory, made into a path only for a failure's log line (the walk up the
/// tree takes the inode lock: not paid by requests that succeed).
struct At(u64, std::ffi::OsString);

impl At {
    fn path(&self, fs: &Filesystem) -> String {
        let p = fs.path_of(self.0);
        let sep = if p.ends_with('/') { "" } else { "/" };
        format!("{p}{sep}{}", self.1.to_string_lossy())
    }
}

/// Answer a request that creates or finds a name; a failure is logged with the path.
fn answer_entry(fs: &Filesystem, op: &str, at: &At, res: Result<Attr, FsError>, reply: ReplyEntry) {
    match res {
        Ok(attr) => reply.entry(&fs.ttl(), &to_file_attr(&attr), Generation(0)),
        Err(e) => {
            log_failure(op, || at.path(fs), &e);
            reply.error(errno(&e))
        }
    }
}

/// Answer a request with no payload (unlink, rmdir, rename); a failure is logged with the path.
fn answer_empty(fs: &Filesystem, op: &str, at: &At, res: Result<(), FsError>, reply: ReplyEmpty) {
    match res {
        Ok(()) => reply.ok(),
        Err(e) => {
            log_failure(op, || at.path(fs), &e);
            reply.error(errno(&e))
        }
    }
}

/// Answer an xattr request: the size when asked for it, ERANGE when the buffer is too small.
fn reply_xattr(reply: ReplyXattr, size: u32, value: &[u8]) {
    if size == 0 {
        reply.size(value.len() as u32);
    } else if value.len() > size as usize {
        reply.error(Errno::ERANGE);
    } else {
        reply.data(value);
    }
}

/// Answer getxattr: a missing attribute is an everyday answer, not a failure to log.
fn answer_xattr(
    fs: &Filesystem,
    ino: u64,
    size: u32,
    res: Result<Vec<u8>, FsError>,
    reply: ReplyXattr,
) {
    match res {
        Ok(v) => reply_xattr(reply, size, &v),
        Err(e) if e.errno == libc::ENODATA => reply.error(Errno::ENODATA),
        Err(e) => reply.error(fail(fs, "getxattr", ino, &e)),
    }
}

fn fail(fs: &Filesystem, op: &str, ino: u64, e: &FsError) -> Errno {
    log_failure(op, || fs.path_of(ino), e);
    errno(e)
}

impl fuser::Filesystem for Adapter {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        // Big requests: fewer kernel round trips for sequential I/O.
        let _ = config.set_max_write(MAX_IO);
        let _ = config.set_max_readahead(MAX_READAHEAD);
        // O_TRUNC arrives with open() instead of a separate setattr(size=0): one PUT less.
        // Parallel lookups and readdirs in one directory: S3 latency overlaps.
        let _ = config
            .add_capabilities(InitFlags::FUSE_ATOMIC_O_TRUNC | InitFlags::FUSE_PARALLEL_DIROPS);
        // Many reads and writes in flight at once (read-ahead, parallel readers).
        let _ = config.set_max_background(64);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        // what memory answers is answered here, on this FUSE thread (no hop through the runtime;
        // in its context, since an entry fetched ahead starts the next fetches)
        let _rt = self.rt.enter();
        if let Some(attr) = std::str::from_utf8(name.as_bytes())
            .ok()
            .and_then(|n| self.fs.lookup_now(parent.0, n))
        {
            return reply.entry(&self.fs.ttl(), &to_file_attr(&attr), Generation(0));
        }
        let fs = self.fs.clone();
        let at = At(parent.0, name.to_owned());
        let name = name.to_owned();
        self.spawn(async move {
            let name = match utf8_name(&name) {
                Ok(n) => n,
                Err(_) => return reply.error(Errno::ENOENT),
            };
            let res = fs.lookup(parent.0, &name).await;
            answer_entry(&fs, "lookup", &at, res, reply);
        });
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.fs.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        if let Some(attr) = self.fs.getattr_now(ino.0) {
            return reply.attr(&self.fs.ttl(), &to_file_attr(&attr));
        }
        let fs = self.fs.clone();
        self.spawn(async move {
            match fs.getattr(ino.0).await {
                Ok(attr) => reply.attr(&fs.ttl(), &to_file_attr(&attr)),
                Err(e) => reply.error(fail(&fs, "getattr", ino.0, &e)),
            }
        });
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let fs = self.fs.clone();
        let who = caller(req);
        let change = SetAttr {
            mode,
            uid,
            gid,
            size,
            atime: resolve_time(atime),
            mtime: resolve_time(mtime),
            fh: fh.map(|f| f.0),
        };
        self.spawn(async move {
            match fs.setattr(ino.0, change, who).await {
                Ok(attr) => reply.attr(&fs.ttl(), &to_file_attr(&attr)),
                Err(e) => reply.error(fail(&fs, "setattr", ino.0, &e)),
            }
        });
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let fs = self.fs.clone();
        self.spawn(async move {
            match fs.readlink(ino.0).await {
                Ok(target) => reply.data(&target),
                Err(e) => reply.error(fail(&fs, "readlink", ino.0, &e)),
            }
        });
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let fs = self.fs.clone();
        let at = At(parent.0, name.to_owned());
        let name = name.to_owned();
        let who = caller(req);
        self.spawn(async move {
            let res = match utf8_name(&name) {
                Ok(n) => fs.mkdir(parent.0, &n, mode & !umask, who).await,
                Err(e) => Err(e),
            };
            answer_entry(&fs, "mkdir", &at, res, reply);
        });
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let fs = self.fs.clone();
        let at = At(parent.0, name.to_owned());
        let name = name.to_owned();
        let who = caller(req);
        self.spawn(async move {
            let mode = (mode & libc::S_IFMT) | (mode & 0o7777 & !umask);
            let res = match utf8_name(&name) {
                Ok(n) => fs.mknod(parent.0, &n, mode, rdev, who).await,
                Err(e) => Err(e),
            };
            answer_entry(&fs, "mknod", &at, res, reply);
        });
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let fs = self.fs.clone();
        let at = At(parent.0, name.to_owned());
        let name = name.to_owned();
        self.spawn(async move {
            let res = match utf8_name(&name) {
                Ok(n) => fs.unlink(parent.0, &n).await,
                Err(_) => Err(FsError::not_found()),
            };
            answer_empty(&fs, "unlink", &at, res, reply);
        });
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let fs = self.fs.clone();
        let at = At(parent.0, name.to_owned());
        let name = name.to_owned();
        self.spawn(async move {
            let res = match utf8_name(&name) {
                Ok(n) => fs.rmdir(parent.0, &n).await,
                Err(_) => Err(FsError::not_found()),
            };
            answer_empty(&fs, "rmdir", &at, res, reply);
        });
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let fs = self.fs.clone();
        let at = At(parent.0, link_name.to_owned());
        let name = link_name.to_owned();
        let target = target.as_os_str().to_owned();
        let who = caller(req);
        self.spawn(async move {
            let res = match (utf8_name(&name), utf8_name(&target)) {
                (Ok(n), Ok(t)) => fs.symlink(parent.0, &n, &t, who).await,
                (Err(e), _) | (_, Err(e)) => Err(e),
            };
            answer_entry(&fs, "symlink", &at, res, reply);
        });
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let fs = self.fs.clone();
        let at = At(parent.0, name.to_owned());
        let (name, newname) = (name.to_owned(), newname.to_owned());
        let flags = flags.bits();
        self.spawn(async move {
            let res = match (utf8_name(&name), utf8_name(&newname)) {
                (Ok(a), Ok(b)) => fs.rename(parent.0, &a, newparent.0, &b, flags).await,
                (Err(e), _) | (_, Err(e)) => Err(e),
            };
            answer_empty(&fs, "rename", &at, res, reply);
        });
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        _newparent: INodeNo,
        _newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let e = FsError::new(libc::EOPNOTSUPP, "hard links cannot be stored in S3");
        reply.error(fail(&self.fs, "link", ino.0, &e));
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let fs = self.fs.clone();
        let who = caller(req);
        self.spawn(async move {
            match fs.open(ino.0, flags.0, who).await {
                Ok(o) => {
                    let mut f = FopenFlags::empty();
                    if o.keep_cache {
                        f |= FopenFlags::FOPEN_KEEP_CACHE;
                    }
                    if o.direct_io {
                        f |= FopenFlags::FOPEN_DIRECT_IO;
                    }
                    reply.opened(FileHandle(o.fh), f)
                }
                Err(e) => reply.error(fail(&fs, "open", ino.0, &e)),
            }
        });
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        // bytes the data cache holds are read here, on this FUSE thread (local disk)
        if let Some(data) = self.fs.read_cached(fh.0, offset, size) {
            reply.data(&data);
            return;
        }
        let fs = self.fs.clone();
        self.spawn(async move {
            match fs.read(fh.0, offset, size).await {
                Ok(data) => reply.data(&data),
                Err(e) => reply.error(fail(&fs, "read", ino.0, &e)),
            }
        });
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        // bytes that continue the file inside the part being filled go there now, straight
        // from fuser's buffer (a sequential writer's usual write: one copy, no task)
        let now = {
            let _rt = self.rt.enter();
            self.fs.try_write_now(fh.0, offset, data)
        };
        if let Some(res) = now {
            match res {
                Ok(n) => reply.written(n),
                Err(e) => reply.error(fail(&self.fs, "write", ino.0, &e)),
            }
            return;
        }
        let fs = self.fs.clone();
        let bufs = self.write_bufs.clone();
        // the copy of the data counts against the budget: with none left this FUSE thread
        // waits (back-pressure on the writer), like a writer in the core
        let memory = fs.write_buffer_memory(data.len() as u64, &self.rt);
        // placed so that a write to a part file goes to disk from it without a copy
        let mut buf = bufs.take_aligned_to(data.len(), offset);
        let skip = buf.len();
        buf.extend_from_slice(data);
        let away = fs.write_goes_away(offset + data.len() as u64);
        let work = async move {
            let result = fs.write(fh.0, offset, &buf[skip..]).await;
            bufs.give(buf);
            drop(memory);
            match result {
                Ok(n) => reply.written(n),
                Err(e) => reply.error(fail(&fs, "write", ino.0, &e)),
            }
        };
        // a small file's write is answered here; a large one's in the durable mode on the
        // runtime (see `write_goes_away`)
        if away {
            self.spawn_away(work);
        } else {
            self.spawn(work);
        }
    }

    fn flush(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        let fs = self.fs.clone();
        let work = |closing| async move {
            match fs.flush_by(fh.0, closing).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(fail(&fs, "flush", ino.0, &e)),
            }
        };
        match self.fs.close_route(fh.0) {
            // a reader's close has nothing to send: answered here
            CloseRoute::Reader => self.spawn(work(Closing::unread(req.pid()))),
            // who is closing, read here: no /proc read on the runtime; up to its `PutObject`,
            // which then waits on the runtime
            CloseRoute::Here => self.spawn(work(Closing::of(req.pid()))),
            CloseRoute::Away => self.spawn_away(work(Closing::of(req.pid()))),
        }
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let fs = self.fs.clone();
        self.spawn(async move {
            match fs.release(fh.0).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(fail(&fs, "release", ino.0, &e)),
            }
        });
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let fs = self.fs.clone();
        self.spawn_away(async move {
            match fs.fsync(fh.0).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(fail(&fs, "fsync", ino.0, &e)),
            }
        });
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let fs = self.fs.clone();
        self.spawn(async move {
            match fs.opendir(ino.0).await {
                Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
                Err(e) => reply.error(fail(&fs, "opendir", ino.0, &e)),
            }
        });
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let fs = self.fs.clone();
        self.spawn(async move {
            let res = fs
                .readdir_into(ino.0, fh.0, offset, |next, child, kind, name| {
                    reply.add(INodeNo(child), next, to_file_type(kind), name)
                })
                .await;
            match res {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(fail(&fs, "readdir", ino.0, &e)),
            }
        });
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.fs.releasedir(fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // directory changes are sent to S3 as they happen; with --write-back, files under it
        // still waiting for their upload go now (`sync DIR`, fsync of a directory)
        let fs = self.fs.clone();
        self.spawn_away(async move {
            match fs.sync_dir(ino.0).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(fail(&fs, "fsyncdir", ino.0, &e)),
            }
        });
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let s = self.fs.statfs();
        reply.statfs(
            s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.bsize, s.namelen, s.frsize,
        );
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let name = name.to_string_lossy().into_owned();
        if let Some(res) = self.fs.getxattr_now(ino.0, &name) {
            return answer_xattr(&self.fs, ino.0, size, res, reply);
        }
        let fs = self.fs.clone();
        self.spawn(async move {
            let res = fs.getxattr(ino.0, &name).await;
            answer_xattr(&fs, ino.0, size, res, reply);
        });
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let fs = self.fs.clone();
        self.spawn(async move {
            match fs.listxattr(ino.0).await {
                Ok(v) => reply_xattr(reply, size, &v),
                Err(e) => reply.error(fail(&fs, "listxattr", ino.0, &e)),
            }
        });
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let fs = self.fs.clone();
        let name = name.to_string_lossy().into_owned();
        let value = value.to_vec();
        self.spawn(async move {
            match fs.setxattr(ino.0, &name, &value, flags).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(fail(&fs, "setxattr", ino.0, &e)),
            }
        });
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let fs = self.fs.clone();
        let name = name.to_string_lossy().into_owned();
        self.spawn(async move {
            match fs.removexattr(ino.0, &name).await {
                Ok(()) => reply.ok(),
                Err(e) if e.errno == libc::ENODATA => reply.error(Errno::ENODATA),
                Err(e) => reply.error(fail(&fs, "removexattr", ino.0, &e)),
            }
        });
    }

    /// No ioctl is supported: ENOTTY, the answer `isatty` and the like expect (fuser's
    /// default logs a warning for each, and Python asks on every open).
    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: fuser::IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: fuser::ReplyIoctl,
    ) {
        reply.error(Errno::ENOTTY);
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        // with default_permissions the kernel checks mode bits itself
        reply.ok();
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let fs = self.fs.clone();
        let at = At(parent.0, name.to_owned());
        let name = name.to_owned();
        let who = caller(req);
        self.spawn(async move {
            let res = match utf8_name(&name) {
                Ok(n) => fs.create(parent.0, &n, mode & !umask, flags, who).await,
                Err(e) => Err(e),
            };
            match res {
                Ok((attr, o)) => reply.created(
                    &fs.ttl(),
                    &to_file_attr(&attr),
                    Generation(0),
                    FileHandle(o.fh),
                    FopenFlags::empty(),
                ),
                Err(e) => {
                    log_failure("create", || at.path(&fs), &e);
                    reply.error(errno(&e))
                }
            }
        });
    }
}

/// A live mount.
pub struct MountSession {
    session: fuser::BackgroundSession,
    mountpoint: PathBuf,
}

/// Can unmount the filesystem from another thread (signal handler thread).
#[derive(Clone)]
pub struct Unmounter {
    mountpoint: PathBuf,
}

impl Unmounter {
    /// Unmount; the serving loop in [`MountSession::wait`] then returns.
    pub fn unmount(&self) -> io::Result<()> {
        unmount_path(&self.mountpoint)
    }
}

/// The kernel caps a FUSE mount's read-ahead at its backing device's default (128 KiB), whatever
/// `max_readahead` says, so sequential reads arrive as 128 KiB requests. Raising the mount's
/// `read_ahead_kb` to what was negotiated halves the FUSE round trips of a big sequential read
/// (measured ~10-15 % faster cold reads). Needs root; without it the default stays.
fn raise_kernel_read_ahead(mountpoint: &Path) {
    use std::os::unix::fs::MetadataExt;
    let dev = match std::fs::metadata(mountpoint) {
        Ok(m) => m.dev(),
        Err(e) => {
            tracing::debug!("read-ahead: cannot stat the mountpoint: {e}");
            return;
        }
    };
    let path = format!(
        "/sys/class/bdi/{}:{}/read_ahead_kb",
        libc::major(dev),
        libc::minor(dev)
    );
    if let Err(e) = std::fs::write(&path, (MAX_READAHEAD / 1024).to_string()) {
        tracing::debug!("read-ahead: {path}: {e}");
    }
}

/// The kernel's id of the newest mount at `mountpoint`, from /proc/self/mountinfo.
fn mount_id_of(mountpoint: &Path) -> Option<u64> {
    let want = mountpoint.canonicalize().ok()?;
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    mount_id_in(&info, &want)
}

/// In a mountinfo text, the id of the last mount whose mount point is `path`.
fn mount_id_in(mountinfo: &str, path: &Path) -> Option<u64> {
    mountinfo.lines().rev().find_map(|line| {
        let mut fields = line.split(' ');
        let id = fields.next()?.parse::<u64>().ok()?;
        let point = fields.nth(3)?;
        (Path::new(&unescape_mountinfo(point)) == path).then_some(id)
    })
}

/// mountinfo writes space, tab, newline and backslash in paths as `\040`-style octal.
fn unescape_mountinfo(field: &str) -> std::ffi::OsString {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b.get(i + 1..i + 4).and_then(|d| {
            std::str::from_utf8(d)
                .ok()
                .and_then(|d| u8::from_str_radix(d, 8).ok())
        });
        match (b[i], octal) {
            (b'\\', Some(c)) => {
                out.push(c);
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    std::ffi::OsString::from_vec(out)
}

/// Detach the mount at `path` (umount2 with MNT_DETACH, as `umount -l` does).
pub fn unmount_path(path: &Path) -> io::Result<()> {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "mountpoint has a NUL byte"))?;
    // SAFETY: c is a valid NUL-terminated path.
    let rc = unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Mount `fs` at `opts.mountpoint`; returns once the mount is live.
pub fn mount(
    fs: Arc<Filesystem>,
    runtime: tokio::runtime::Handle,
    opts: &MountOptions,
) -> io::Result<MountSession> {
    let mut mount_options = vec![
        MountOption::FSName(opts.fsname.clone()),
        MountOption::Subtype("bucketfs".into()),
        MountOption::NoDev,
        MountOption::NoSuid,
        MountOption::NoAtime,
    ];
    if opts.read_only {
        mount_options.push(MountOption::RO);
    }
    if opts.default_permissions {
        mount_options.push(MountOption::DefaultPermissions);
    }
    let mut config = Config::default();
    config.mount_options = mount_options;
    config.acl = if opts.allow_other {
        SessionACL::All
    } else if opts.allow_root {
        SessionACL::RootAndOwner
    } else {
        SessionACL::Owner
    };
    config.n_threads = Some(opts.threads.max(1));
    config.clone_fd = opts.threads > 1;
    let write_bufs = Arc::new(BufferPool::default());
    write_bufs.set_gate(fs.memory_gate());
    let adapter = Adapter {
        fs: fs.clone(),
        rt: runtime.clone(),
        write_bufs,
    };
    let session = fuser::spawn_mount(adapter, &opts.mountpoint, &config)?;
    raise_kernel_read_ahead(&opts.mountpoint);
    match mount_id_of(&opts.mountpoint) {
        Some(id) => fs.set_mount_id(id),
        None => tracing::debug!("mount id of {} not found", opts.mountpoint.display()),
    }
    let notifier = session.notifier();
    let rt = runtime;
    fs.set_invalidator(Box::new(move |parent, name| {
        let notifier = notifier.clone();
        let name = name.to_string();
        // never from inside a request being answered: the kernel could wait on us
        rt.spawn_blocking(move || {
            if let Err(e) = notifier.inval_entry(INodeNo(parent), OsStr::new(&name)) {
                tracing::debug!("kernel entry invalidation for {name:?}: {e}");
            }
        });
    }));
    Ok(MountSession {
        session,
        mountpoint: opts.mountpoint.clone(),
    })
}

impl MountSession {
    pub fn unmounter(&self) -> Unmounter {
        Unmounter {
            mountpoint: self.mountpoint.clone(),
        }
    }

    /// Block until the filesystem is unmounted.
    pub fn wait(self) -> io::Result<()> {
        self.session.join()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_mount_at_a_path_is_found_in_mountinfo() {
        let info = "\
22 1 0:21 / /proc rw,nosuid - proc proc rw
57 22 0:50 / /tmp/my\\040mnt rw,nosuid,nodev - fuse bucketfs:b rw
61 22 0:52 / /tmp/other rw - fuse bucketfs:c rw
64 57 0:53 / /tmp/my\\040mnt rw,nosuid,nodev - fuse bucketfs:b rw
";
        assert_eq!(mount_id_in(info, Path::new("/tmp/my mnt")), Some(64));
        assert_eq!(mount_id_in(info, Path::new("/tmp/other")), Some(61));
        assert_eq!(mount_id_in(info, Path::new("/tmp/none")), None);
        assert_eq!(unescape_mountinfo("a\\134b\\011c"), "a\\b\tc");
    }
}

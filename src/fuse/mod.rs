//! Thin FUSE adapter: turns fuser callbacks into calls on the filesystem core, answered from tokio.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

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

/// A live mount. Dropping it does not unmount; call [`MountSession::wait`].
pub struct MountSession {
    _private: (),
}

/// Can unmount the filesystem from another thread (signal handler thread).
#[derive(Clone)]
pub struct Unmounter {
    mountpoint: PathBuf,
}

impl Unmounter {
    /// Unmount; the serving loop in [`MountSession::wait`] then returns.
    pub fn unmount(&self) -> io::Result<()> {
        let _ = &self.mountpoint;
        Err(io::Error::other("not yet implemented"))
    }
}

/// Mount `fs` at `opts.mountpoint`; returns once the mount is live.
pub fn mount(
    fs: Arc<crate::fs::Filesystem>,
    runtime: tokio::runtime::Handle,
    opts: &MountOptions,
) -> io::Result<MountSession> {
    let _ = (fs, runtime, opts);
    Err(io::Error::other("not yet implemented"))
}

impl MountSession {
    pub fn unmounter(&self) -> Unmounter {
        Unmounter {
            mountpoint: PathBuf::new(),
        }
    }
    /// Block until the filesystem is unmounted.
    pub fn wait(self) -> io::Result<()> {
        Ok(())
    }
}

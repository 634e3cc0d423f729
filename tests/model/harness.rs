//! The harness: a filesystem core on the in-process S3 server, path resolution as the kernel
//! does it, and the checks that compare what the core answers and what the bucket holds with
//! the reference model.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use bucketfs::config::FsConfig;
use bucketfs::fs::{Attr, Caller, FileKind, Filesystem, ROOT_INO};
use bucketfs::s3::profile::{profile, Profile, Provider};
use bucketfs::s3::S3Client;
use bucketfs_test_server::{Fault, FaultKind, TestServer};

use super::ops::{Op, FAULT_OPS, P};
use super::reference::{Kind, Model, NodeId, ROOT};

/// The part size of the model's core (and the server's smallest part): small, so that a few
/// writes cross parts and multipart uploads, in-place patches and multipart copies all run.
pub const PART: u64 = 64 * 1024;
/// CopyObject above this many bytes is a multipart copy.
const COPY_LIMIT: u64 = 128 * 1024;

/// Who does everything: pid 0, so no close is taken for a child's or a killed process's.
pub const CALLER: Caller = Caller {
    uid: 1000,
    gid: 1000,
    pid: 0,
};

/// A failed check: what differed, for the proptest report.
pub type Check<T = ()> = Result<T, String>;

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}
pub(crate) use ensure;

/// How the core caches.
#[derive(Debug, Clone, Copy)]
pub enum Caching {
    /// Attribute, listing and negative TTLs of zero: every lookup asks the bucket, so changes
    /// made by another client show at once.
    Coherent,
    /// The default TTLs: the core answers from its caches, which only its own changes update.
    Cached,
}

pub struct Harness {
    pub srv: TestServer,
    /// The staging area (and upload journal), kept across remounts.
    _cache: tempfile::TempDir,
    cfg: FsConfig,
    pub fs: Arc<Filesystem>,
    pub model: Model,
    /// Operations that were not run against the core (see `skip`), by name.
    pub skipped: Vec<&'static str>,
}

fn client(srv: &TestServer) -> S3Client {
    let small: &'static Profile = Box::leak(Box::new(Profile {
        min_part_size: PART,
        max_copy_object_size: COPY_LIMIT,
        ..profile(Provider::Other).clone()
    }));
    crate::core_fs::client_with(srv, |cfg| cfg.profile = small)
}

impl Harness {
    pub async fn new(caching: Caching) -> Harness {
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
        let srv = TestServer::start().await;
        srv.set_min_part_size(PART);
        let cache = tempfile::tempdir().expect("staging dir");
        let (ttl, negative) = match caching {
            Caching::Coherent => (Duration::ZERO, Duration::ZERO),
            Caching::Cached => (Duration::from_secs(60), Duration::from_secs(5)),
        };
        let cfg = FsConfig {
            metadata_ttl: ttl,
            negative_ttl: negative,
            part_size: PART,
            max_memory: 32 * 1024 * 1024,
            cache_dir: Some(cache.path().to_path_buf()),
            file_mode: 0o644,
            dir_mode: 0o755,
            ..FsConfig::default()
        };
        let fs = Filesystem::new(cfg.clone(), client(&srv));
        fs.recover_uploads().await;
        Harness {
            model: Model::new(cfg.file_mode as u32, cfg.dir_mode as u32),
            srv,
            _cache: cache,
            cfg,
            fs,
            skipped: Vec::new(),
        }
    }

    /// An operation the harness does not send to the core in this state (says which).
    pub fn skip(&mut self, what: &'static str) -> Check {
        self.skipped.push(what);
        Ok(())
    }

    /// Shut the core down and start a new one on the same bucket and staging area.
    pub async fn remount_core(&mut self) -> Check {
        let report = self.fs.shutdown().await;
        ensure!(
            report.failed.is_empty(),
            "shutdown could not finish: {:?}",
            report.failed
        );
        self.fs = Filesystem::new(self.cfg.clone(), client(&self.srv));
        self.fs.recover_uploads().await;
        self.model.remounted();
        Ok(())
    }

    /// The path of a node, for messages.
    pub fn path(&self, id: NodeId) -> String {
        if self.model.linked(id) {
            format!("/{}", self.model.key(id))
        } else {
            format!("<unlinked node {id}>")
        }
    }

    /// Note that `ino` is what the core calls node `id`: the same node keeps its number while
    /// it exists (defect 7 of issue 17), and two nodes never share one.
    pub fn note_ino(&mut self, id: NodeId, ino: u64, reference: bool) -> Check {
        if let Some(had) = self.model.node(id).ino {
            ensure!(
                had == ino,
                "inode number of {} changed from {had} to {ino} while it existed",
                self.path(id)
            );
        } else {
            if let Some(other) = self.model.node_with_ino(ino) {
                ensure!(
                    other == id,
                    "{} got inode number {ino}, which is {}'s",
                    self.path(id),
                    self.path(other)
                );
            }
            self.model.node_mut(id).ino = Some(ino);
        }
        if reference {
            self.model.node_mut(id).lookups += 1;
        }
        Ok(())
    }

    /// Compare attributes the core gave for node `id` with the model.
    pub fn check_attr(&mut self, id: NodeId, attr: &Attr, what: &str) -> Check {
        let node = self.model.node(id);
        let path = self.path(id);
        let want = match node.kind {
            Kind::File => FileKind::File,
            Kind::Dir => FileKind::Directory,
            Kind::Symlink => FileKind::Symlink,
        };
        ensure!(
            attr.kind == want,
            "{what} {path}: kind {:?}, model {:?}",
            attr.kind,
            node.kind
        );
        if node.kind != Kind::Dir {
            ensure!(
                attr.size == node.content.len() as u64,
                "{what} {path}: size {}, model {}",
                attr.size,
                node.content.len()
            );
        }
        if node.kind != Kind::Symlink {
            ensure!(
                u32::from(attr.perm) == node.mode,
                "{what} {path}: mode {:o}, model {:o}",
                attr.perm,
                node.mode
            );
        }
        if let (Some(secs), Kind::File) = (node.mtime, node.kind) {
            let got = attr
                .mtime
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            ensure!(got == secs, "{what} {path}: mtime {got}, model {secs}");
        }
        Ok(())
    }

    /// Look the parent directory of `p` up as the kernel would: its node and inode number, or
    /// the errno a path through it gets.
    pub async fn parent(&mut self, p: P) -> Check<Result<(NodeId, u64), i32>> {
        self.dir_at(p.dir).await
    }

    /// The directory `dir` of [`P`] (0: the root), checked against the model.
    pub async fn dir_at(&mut self, dir: u8) -> Check<Result<(NodeId, u64), i32>> {
        let Some(name) = super::ops::dir_name(dir) else {
            return Ok(Ok((ROOT, ROOT_INO)));
        };
        match self.lookup(ROOT, ROOT_INO, name).await? {
            None => Ok(Err(libc::ENOENT)),
            Some((id, ino)) => match self.model.node(id).kind {
                Kind::Dir => Ok(Ok((id, ino))),
                _ => Ok(Err(libc::ENOTDIR)),
            },
        }
    }

    /// lookup(`name` in `dir`), checked against the model: the node and its inode number.
    pub async fn lookup(
        &mut self,
        dir: NodeId,
        dir_ino: u64,
        name: &str,
    ) -> Check<Option<(NodeId, u64)>> {
        let want = self.model.child(dir, name);
        let got = self.fs.lookup(dir_ino, name).await;
        let where_ = format!("lookup of {name} in {}", self.path(dir));
        match (want, got) {
            (None, Err(e)) => {
                ensure!(
                    e.errno == libc::ENOENT,
                    "{where_}: {e:?}, model: no such file"
                );
                Ok(None)
            }
            (None, Ok(attr)) => Err(format!(
                "{where_}: found a {:?} of {} bytes, model: no such file",
                attr.kind, attr.size
            )),
            (Some(id), Err(e)) => Err(format!(
                "{where_}: {e:?}, model: a {:?}",
                self.model.node(id).kind
            )),
            (Some(id), Ok(attr)) => {
                self.check_attr(id, &attr, "lookup")?;
                self.note_ino(id, attr.ino, true)?;
                Ok(Some((id, attr.ino)))
            }
        }
    }

    /// The parent of `p` and what is at `p`: `Err(errno)` when the parent cannot be reached.
    pub async fn resolve(&mut self, p: P) -> Check<Result<Resolved, i32>> {
        let (dir, dir_ino) = match self.parent(p).await? {
            Ok(d) => d,
            Err(e) => return Ok(Err(e)),
        };
        let child = self.lookup(dir, dir_ino, p.name()).await?;
        Ok(Ok(Resolved {
            dir,
            dir_ino,
            child,
        }))
    }

    /// The bucket holds exactly the objects the model says, byte for byte.
    pub fn check_bucket(&self) -> Check {
        let keys = self.srv.keys();
        let want: Vec<&String> = self.model.bucket.keys().collect();
        ensure!(
            keys.iter().collect::<Vec<_>>() == want,
            "bucket keys {keys:?}, model {want:?}"
        );
        for (key, body) in &self.model.bucket {
            let got = self.srv.get_object(key);
            ensure!(
                got.as_deref() == Some(&body[..]),
                "bucket object {key}: {} bytes{}, model {} bytes",
                got.as_ref().map_or(0, |b| b.len()),
                if got.is_some() { "" } else { " (missing)" },
                body.len()
            );
        }
        Ok(())
    }

    /// The listing of directory node `dir` (inode `ino`) matches the model.
    pub async fn check_readdir(&mut self, dir: NodeId, ino: u64) -> Check {
        let fh = self
            .fs
            .opendir(ino)
            .await
            .map_err(|e| format!("opendir {}: {e:?}", self.path(dir)))?;
        let mut entries = Vec::new();
        let mut offset = 0;
        loop {
            let page = self
                .fs
                .readdir(ino, fh, offset)
                .await
                .map_err(|e| format!("readdir {}: {e:?}", self.path(dir)))?;
            let Some(last) = page.last() else { break };
            offset = last.next_offset;
            entries.extend(page);
        }
        self.fs.releasedir(fh);
        let mut got: Vec<(String, FileKind, u64)> = entries
            .into_iter()
            .filter(|e| e.name != "." && e.name != "..")
            .map(|e| (e.name, e.kind, e.ino))
            .collect();
        got.sort_by(|a, b| a.0.cmp(&b.0));
        let names: Vec<&str> = got.iter().map(|e| e.0.as_str()).collect();
        let want: Vec<&str> = self
            .model
            .node(dir)
            .children
            .keys()
            .map(String::as_str)
            .collect();
        ensure!(
            names == want,
            "readdir {}: {names:?}, model {want:?}",
            self.path(dir)
        );
        for (name, kind, ino) in got {
            let Some(id) = self.model.child(dir, &name) else {
                continue;
            };
            // a listing shows files as files until they are looked up (SEMANTICS.md)
            let want = match self.model.node(id).kind {
                Kind::Dir => FileKind::Directory,
                _ => FileKind::File,
            };
            let symlink_known =
                self.model.node(id).kind == Kind::Symlink && kind == FileKind::Symlink;
            ensure!(
                kind == want || symlink_known,
                "readdir {}: {name} is a {kind:?}, model {want:?}",
                self.path(dir)
            );
            // entries not looked up carry a placeholder number (top bit set)
            if ino & (1 << 63) == 0 {
                self.note_ino(id, ino, false)?;
            }
        }
        Ok(())
    }

    /// After a remount: every directory the ops can reach lists as the model says, and every
    /// node in it stats as the model says (modes and times come from the bucket now).
    pub async fn check_tree(&mut self) -> Check {
        ensure!(
            self.srv.multipart_uploads().is_empty(),
            "multipart uploads left open: {:?}",
            self.srv.multipart_uploads()
        );
        self.check_readdir(ROOT, ROOT_INO).await?;
        let names: Vec<String> = self.model.node(ROOT).children.keys().cloned().collect();
        for name in names {
            if let Some((id, ino)) = self.lookup(ROOT, ROOT_INO, &name).await? {
                if self.model.node(id).kind == Kind::Dir {
                    self.check_readdir(id, ino).await?;
                    let inner: Vec<String> = self.model.node(id).children.keys().cloned().collect();
                    for n in inner {
                        self.lookup(id, ino, &n).await?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// A path resolved through the core and the model.
pub struct Resolved {
    pub dir: NodeId,
    pub dir_ino: u64,
    /// What is at the path: the node and its inode number.
    pub child: Option<(NodeId, u64)>,
}

/// The expected errno of an operation the core refused, or the check that it succeeded.
pub fn expect_errno<T: std::fmt::Debug>(
    what: &str,
    got: &Result<T, bucketfs::fs::FsError>,
    want: i32,
) -> Check {
    match got {
        Err(e) if e.errno == want => Ok(()),
        other => Err(format!(
            "{what}: {other:?}, model: {}",
            bucketfs::fs::error::errno_name(want)
        )),
    }
}

impl Harness {
    /// The next request of kind `FAULT_OPS[op]` fails once: 500 InternalError, 503 SlowDown,
    /// a connection dropped before the server acts, or one cut after the server made the
    /// change (the answer is lost). The client's retries cover one such fault per kind, so it
    /// must change nothing anyone sees; a second one pending for the same kind is not added.
    pub fn transient_fault(&mut self, op: u8, kind: u8) {
        let op = FAULT_OPS[op as usize % FAULT_OPS.len()];
        if self
            .srv
            .pending_faults()
            .iter()
            .any(|f| f.op.as_deref() == Some(op))
        {
            return;
        }
        let kind = match kind {
            0 => FaultKind::internal_error(),
            1 => FaultKind::slow_down(),
            2 => FaultKind::DropConnection,
            _ => FaultKind::TruncateBody,
        };
        self.srv.add_fault(Fault::new(kind).op(op).times(1));
    }
}

/// Run `ops` against a fresh core and the model; the first difference fails.
pub async fn run(caching: Caching, ops: &[Op]) -> Check<Vec<&'static str>> {
    let mut h = Harness::new(caching).await;
    for (i, op) in ops.iter().enumerate() {
        h.exec(op)
            .await
            .and_then(|()| h.check_bucket())
            .map_err(|e| format!("op {i} {op:?}: {e}"))?;
    }
    // the end of a run is a remount: everything closed, written and read back
    h.exec(&Op::Remount)
        .await
        .and_then(|()| h.check_bucket())
        .map_err(|e| format!("final remount: {e}"))?;
    Ok(std::mem::take(&mut h.skipped))
}

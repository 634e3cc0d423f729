//! The model test's operation sequences (tests/model/ops.rs) driven through a real mount and
//! through a local directory side by side (issue 17's second harness; the differential idea of
//! scripts/soak.py, made reproducible and shrinking): every result (success or errno, bytes
//! read, stat, readdir) must agree, and so must the two trees after every step and after
//! remounts. Outside changes to the bucket and `forget` are left to the core's model test.
//! `PROPTEST_CASES=N` runs more cases.

mod common;
#[allow(dead_code)]
#[path = "model/ops.rs"]
mod ops;

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use common::*;
use ops::{dir_name, pattern, Access, Mix, Op, NAMES, P};
use proptest::test_runner::{Config, TestCaseError, TestRunner};

type Outcome = Result<String, i32>;

fn errno(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(-1)
}

fn rel(p: P) -> String {
    match p.parent() {
        Some(d) => format!("{d}/{}", p.name()),
        None => p.name().to_string(),
    }
}

/// Names, kinds, sizes, permission bits and contents of a tree (symlinks: their targets).
fn tree(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            let name = path
                .strip_prefix(root)
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            if name == ".bucketfs" {
                continue;
            }
            let Ok(md) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            let perm = md.permissions().mode() & 0o7777;
            let what = if md.is_dir() {
                stack.push(path.clone());
                format!("dir {perm:o}")
            } else if md.file_type().is_symlink() {
                format!("link {:?}", std::fs::read_link(&path).ok())
            } else {
                let data = std::fs::read(&path).unwrap_or_default();
                format!("file {perm:o} {} {}", data.len(), sha256(&data))
            };
            out.insert(name, what);
        }
    }
    out
}

/// Both sides of one open file.
struct Pair {
    mount: File,
    local: File,
}

struct Sides {
    roots: [PathBuf; 2],
    handles: Vec<Pair>,
}

impl Sides {
    fn path(&self, side: usize, p: P) -> PathBuf {
        self.roots[side].join(rel(p))
    }

    fn dir(&self, side: usize, dir: u8) -> PathBuf {
        match dir_name(dir) {
            Some(d) => self.roots[side].join(d),
            None => self.roots[side].clone(),
        }
    }

    /// Run `f` on both sides: the two outcomes.
    fn both(&self, f: impl Fn(usize) -> Outcome) -> (Outcome, Outcome) {
        (f(0), f(1))
    }

    fn handle(&self, h: u8) -> Option<&Pair> {
        if self.handles.is_empty() {
            return None;
        }
        self.handles.get(h as usize % self.handles.len())
    }

    fn open(&mut self, p: P, opts: &OpenOptions) -> (Outcome, Outcome) {
        let m = opts.open(self.path(0, p));
        let l = opts.open(self.path(1, p));
        let out = (
            m.as_ref().map(|_| String::new()).map_err(errno),
            l.as_ref().map(|_| String::new()).map_err(errno),
        );
        if let (Ok(mount), Ok(local)) = (m, l) {
            self.handles.push(Pair { mount, local });
        }
        out
    }

    fn exec(&mut self, op: &Op) -> (Outcome, Outcome) {
        let ok = |r: std::io::Result<()>| r.map(|()| String::new()).map_err(|e| errno(&e));
        match *op {
            Op::Create {
                p,
                access,
                excl,
                trunc,
                mode,
            } => {
                let mut o = OpenOptions::new();
                o.read(access != Access::Write)
                    .write(true)
                    .create(true)
                    .create_new(excl)
                    .truncate(trunc)
                    .mode(u32::from(mode));
                self.open(p, &o)
            }
            Op::Open {
                p,
                access,
                trunc,
                append,
            } => {
                let mut o = OpenOptions::new();
                o.read(access != Access::Write)
                    .write(access.writes() && !append)
                    .append(append)
                    .truncate(trunc);
                self.open(p, &o)
            }
            Op::Write { h, off, len, seed } => {
                let data = pattern(seed, len as usize);
                let Some(pair) = self.handle(h) else {
                    return (Ok(String::new()), Ok(String::new()));
                };
                let w = |f: &File| f.write_all_at(&data, u64::from(off));
                (ok(w(&pair.mount)), ok(w(&pair.local)))
            }
            Op::Read { h, off, len } => {
                let Some(pair) = self.handle(h) else {
                    return (Ok(String::new()), Ok(String::new()));
                };
                let r = |f: &File| {
                    let mut buf = vec![0u8; len as usize];
                    let mut got = 0;
                    while got < buf.len() {
                        match f.read_at(&mut buf[got..], u64::from(off) + got as u64) {
                            Ok(0) => break,
                            Ok(n) => got += n,
                            Err(e) => return Err(errno(&e)),
                        }
                    }
                    Ok(format!("{} {}", got, sha256(&buf[..got])))
                };
                (r(&pair.mount), r(&pair.local))
            }
            Op::Ftruncate { h, size } => {
                let Some(pair) = self.handle(h) else {
                    return (Ok(String::new()), Ok(String::new()));
                };
                let t = |f: &File| ok(f.set_len(u64::from(size)));
                (t(&pair.mount), t(&pair.local))
            }
            Op::Truncate { p, size } => self.both(|s| {
                ok(OpenOptions::new()
                    .write(true)
                    .open(self.path(s, p))
                    .and_then(|f| f.set_len(u64::from(size))))
            }),
            Op::Close { h } => {
                if self.handles.is_empty() {
                    return (Ok(String::new()), Ok(String::new()));
                }
                let pair = self.handles.remove(h as usize % self.handles.len());
                let close = |f: File| {
                    use std::os::fd::IntoRawFd;
                    // SAFETY: the descriptor is owned here and closed once.
                    let rc = unsafe { libc::close(f.into_raw_fd()) };
                    if rc == 0 {
                        Ok(String::new())
                    } else {
                        Err(errno(&std::io::Error::last_os_error()))
                    }
                };
                (close(pair.mount), close(pair.local))
            }
            Op::Fsync { h } => {
                let Some(pair) = self.handle(h) else {
                    return (Ok(String::new()), Ok(String::new()));
                };
                (ok(pair.mount.sync_all()), ok(pair.local.sync_all()))
            }
            Op::Unlink { p } => self.both(|s| ok(std::fs::remove_file(self.path(s, p)))),
            Op::Mkdir { p, mode } => self.both(|s| {
                use std::os::unix::fs::DirBuilderExt;
                ok(std::fs::DirBuilder::new()
                    .mode(u32::from(mode))
                    .create(self.path(s, p)))
            }),
            Op::Rmdir { p } => self.both(|s| ok(std::fs::remove_dir(self.path(s, p)))),
            Op::Rename {
                from,
                to,
                noreplace,
            } => self.both(|s| {
                use std::os::unix::ffi::OsStrExt;
                let c = |p: PathBuf| {
                    std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap_or_default()
                };
                let (a, b) = (c(self.path(s, from)), c(self.path(s, to)));
                let flags = if noreplace { libc::RENAME_NOREPLACE } else { 0 };
                // SAFETY: two valid C strings; renameat2 only reads them.
                let rc = unsafe {
                    libc::renameat2(
                        libc::AT_FDCWD,
                        a.as_ptr(),
                        libc::AT_FDCWD,
                        b.as_ptr(),
                        flags,
                    )
                };
                if rc == 0 {
                    Ok(String::new())
                } else {
                    Err(errno(&std::io::Error::last_os_error()))
                }
            }),
            Op::Chmod { p, mode } => self.both(|s| {
                ok(std::fs::set_permissions(
                    self.path(s, p),
                    std::fs::Permissions::from_mode(u32::from(mode)),
                ))
            }),
            Op::Utimens { p, secs } => self.both(|s| {
                let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::from(secs));
                let r = OpenOptions::new()
                    .read(true)
                    .open(self.path(s, p))
                    .and_then(|f| f.set_times(std::fs::FileTimes::new().set_modified(t)));
                ok(r)?;
                let md = std::fs::metadata(self.path(s, p)).map_err(|e| errno(&e))?;
                Ok(format!("{:?}", md.modified().ok()))
            }),
            Op::Symlink { p, target } => self.both(|s| {
                ok(std::os::unix::fs::symlink(
                    NAMES[target as usize],
                    self.path(s, p),
                ))
            }),
            Op::Readlink { p } => self.both(|s| {
                std::fs::read_link(self.path(s, p))
                    .map(|t| t.display().to_string())
                    .map_err(|e| errno(&e))
            }),
            Op::Readdir { dir } => self.both(|s| {
                let mut names: Vec<String> = std::fs::read_dir(self.dir(s, dir))
                    .map_err(|e| errno(&e))?
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n != ".bucketfs")
                    .collect();
                names.sort();
                Ok(names.join(","))
            }),
            Op::Stat { p } => self.both(|s| {
                let md = std::fs::symlink_metadata(self.path(s, p)).map_err(|e| errno(&e))?;
                let perm = md.permissions().mode() & 0o7777;
                Ok(if md.is_dir() {
                    format!("dir {perm:o}")
                } else if md.file_type().is_symlink() {
                    "link".to_string()
                } else {
                    format!("file {perm:o} {}", md.len())
                })
            }),
            // the kernel forgets on its own; outside changes are the core model's
            Op::Forget { .. }
            | Op::OutsidePut { .. }
            | Op::OutsideDelete { .. }
            | Op::Transient { .. } => (Ok(String::new()), Ok(String::new())),
            Op::Remount => (Ok(String::new()), Ok(String::new())),
        }
    }
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12)
}

#[test]
fn a_mount_and_a_local_directory_agree() {
    if !fuse_available() {
        return;
    }
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(
        &ops::ops(
            Mix {
                outside: false,
                faults: false,
            },
            30,
        ),
        |ops| {
            let srv = server();
            let mut m = Mount::new(&srv, &[]);
            let local = tempfile::tempdir().expect("local dir");
            let mut sides = Sides {
                roots: [m.path().to_path_buf(), local.path().to_path_buf()],
                handles: Vec::new(),
            };
            for (i, op) in ops.iter().enumerate() {
                if let Op::Remount = op {
                    sides.handles.clear();
                    m = m.umount_and_mount_again(&srv, &[]).0;
                    sides.roots[0] = m.path().to_path_buf();
                }
                let (got, want) = sides.exec(op);
                if got != want {
                    return Err(TestCaseError::fail(format!(
                        "op {i} {op:?}: mount {got:?}, local directory {want:?}"
                    )));
                }
                let (tm, tl) = (tree(&sides.roots[0]), tree(&sides.roots[1]));
                if tm != tl {
                    let diff: Vec<_> = tm
                        .iter()
                        .filter(|(k, v)| tl.get(*k) != Some(v))
                        .chain(tl.iter().filter(|(k, v)| tm.get(*k) != Some(v)))
                        .collect();
                    return Err(TestCaseError::fail(format!(
                        "after op {i} {op:?} the trees differ: {diff:?}"
                    )));
                }
            }
            Ok(())
        },
    );
    if let Err(e) = result {
        panic!("{e}");
    }
}

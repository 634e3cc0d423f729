//! The operations the model test runs, and the proptest strategies that generate them.
//!
//! Paths come from a tiny namespace (three parent directories, four names, the parent names
//! among them) so that operations collide: a file and a directory of the same name, renames onto
//! existing names, unlinks of open files. Open handles are named by their index among the
//! handles open at that point (modulo their count), so a sequence stays meaningful while
//! proptest shrinks it.

use proptest::prelude::*;

/// Names of the entries; the first two are also the parents of `P::dir` 1 and 2.
pub const NAMES: [&str; 4] = ["a", "b", "c.txt", "d"];

/// Symlink targets.
pub const TARGETS: [&str; 3] = ["c.txt", "../a/b", "nowhere/at/all"];

/// A path: `dir` 0 is the root, 1 and 2 the directories `a` and `b` in it; `name` indexes
/// [`NAMES`].
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct P {
    pub dir: u8,
    pub name: u8,
}

impl std::fmt::Debug for P {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.dir {
            0 => write!(f, "/{}", NAMES[self.name as usize]),
            d => write!(
                f,
                "/{}/{}",
                NAMES[d as usize - 1],
                NAMES[self.name as usize]
            ),
        }
    }
}

impl P {
    pub fn name(&self) -> &'static str {
        NAMES[self.name as usize]
    }
    /// The parent directory's name in the root, or None for the root itself.
    pub fn parent(&self) -> Option<&'static str> {
        dir_name(self.dir)
    }
}

/// The root-level name of parent `dir` (0: the root).
pub fn dir_name(dir: u8) -> Option<&'static str> {
    match dir {
        0 => None,
        d => Some(NAMES[d as usize - 1]),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
    ReadWrite,
}

impl Access {
    pub fn flags(self) -> i32 {
        match self {
            Access::Read => libc::O_RDONLY,
            Access::Write => libc::O_WRONLY,
            Access::ReadWrite => libc::O_RDWR,
        }
    }
    pub fn writes(self) -> bool {
        self != Access::Read
    }
}

/// Bytes a write puts: a pattern that depends on the position, so misplaced bytes show.
pub fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i * 31 + seed as usize * 7) % 251) as u8)
        .collect()
}

#[derive(Debug, Clone)]
pub enum Op {
    /// open(O_CREAT) as the kernel does it: a lookup first, then create or open.
    Create {
        p: P,
        access: Access,
        excl: bool,
        trunc: bool,
        mode: u16,
    },
    Open {
        p: P,
        access: Access,
        trunc: bool,
        append: bool,
    },
    Write {
        h: u8,
        off: u32,
        len: u32,
        seed: u8,
    },
    Read {
        h: u8,
        off: u32,
        len: u32,
    },
    Ftruncate {
        h: u8,
        size: u32,
    },
    Truncate {
        p: P,
        size: u32,
    },
    /// close(2): flush, then release.
    Close {
        h: u8,
    },
    Fsync {
        h: u8,
    },
    Unlink {
        p: P,
    },
    Mkdir {
        p: P,
        mode: u16,
    },
    Rmdir {
        p: P,
    },
    Rename {
        from: P,
        to: P,
        noreplace: bool,
    },
    Chmod {
        p: P,
        mode: u16,
    },
    Utimens {
        p: P,
        secs: u32,
    },
    Symlink {
        p: P,
        target: u8,
    },
    Readlink {
        p: P,
    },
    Readdir {
        dir: u8,
    },
    /// stat: lookup and getattr.
    Stat {
        p: P,
    },
    /// The kernel drops its references to a node (no open files).
    Forget {
        p: P,
    },
    /// Close every open file, shut the core down, start a new one on the same bucket.
    Remount,
    /// Another client puts an object at the path's key (`len` bytes).
    OutsidePut {
        p: P,
        len: u32,
        seed: u8,
    },
    /// Another client deletes the object at the path's key (`marker`: the `dir/` marker).
    OutsideDelete {
        p: P,
        marker: bool,
    },
    /// The next request of kind `FAULT_OPS[op]` meets a transient fault (`FAULT_KINDS[kind]`):
    /// retries cover it, so nobody may see it. Never more than one pending per kind.
    Transient {
        op: u8,
        kind: u8,
    },
}

/// The requests a transient fault may hit.
pub const FAULT_OPS: [&str; 11] = [
    "PutObject",
    "CreateMultipartUpload",
    "UploadPart",
    "CompleteMultipartUpload",
    "UploadPartCopy",
    "CopyObject",
    "GetObject",
    "HeadObject",
    "ListObjectsV2",
    "DeleteObject",
    "AbortMultipartUpload",
];
/// How many kinds of transient fault there are (see `harness::transient_fault`).
pub const FAULT_KINDS: u8 = 4;

/// Which kind of run: `outside` adds changes by another client (needs a core whose caches
/// expire at once).
#[derive(Debug, Clone, Copy)]
pub struct Mix {
    pub outside: bool,
    /// Transient S3 faults (500, 503, a dropped connection, an answer lost after the change
    /// was made) come and go.
    pub faults: bool,
}

fn path() -> impl Strategy<Value = P> {
    (0u8..3, 0u8..4).prop_map(|(dir, name)| P { dir, name })
}

fn access() -> impl Strategy<Value = Access> {
    prop_oneof![
        Just(Access::Read),
        Just(Access::Write),
        Just(Access::ReadWrite)
    ]
}

fn write_access() -> impl Strategy<Value = Access> {
    prop_oneof![Just(Access::Write), Just(Access::ReadWrite)]
}

/// Mostly small, sometimes across the 64 KiB part size of the model's core.
fn length() -> impl Strategy<Value = u32> {
    prop_oneof![
        6 => 0u32..200,
        3 => 200u32..5_000,
        1 => 60_000u32..140_000,
    ]
}

fn offset() -> impl Strategy<Value = u32> {
    prop_oneof![
        6 => 0u32..300,
        3 => 300u32..10_000,
        1 => 60_000u32..200_000,
    ]
}

fn mode() -> impl Strategy<Value = u16> {
    prop_oneof![Just(0o644u16), Just(0o600), Just(0o755), Just(0o640)]
}

pub fn op(mix: Mix) -> BoxedStrategy<Op> {
    let base = prop_oneof![
        5 => (path(), write_access(), any::<bool>(), any::<bool>(), mode()).prop_map(
            |(p, access, excl, trunc, mode)| Op::Create { p, access, excl: excl && trunc, trunc, mode }
        ),
        5 => (path(), access(), any::<bool>(), any::<bool>()).prop_map(|(p, access, t, a)| {
            // O_TRUNC and O_APPEND sometimes, never both
            Op::Open { p, access, trunc: t && !a && access.writes(), append: a && access.writes() }
        }),
        9 => (any::<u8>(), offset(), length(), any::<u8>())
            .prop_map(|(h, off, len, seed)| Op::Write { h, off, len, seed }),
        5 => (any::<u8>(), offset(), length()).prop_map(|(h, off, len)| Op::Read { h, off, len }),
        2 => (any::<u8>(), offset()).prop_map(|(h, size)| Op::Ftruncate { h, size }),
        2 => (path(), offset()).prop_map(|(p, size)| Op::Truncate { p, size }),
        6 => any::<u8>().prop_map(|h| Op::Close { h }),
        2 => any::<u8>().prop_map(|h| Op::Fsync { h }),
        3 => path().prop_map(|p| Op::Unlink { p }),
        4 => (path(), mode()).prop_map(|(p, mode)| Op::Mkdir { p, mode }),
        2 => path().prop_map(|p| Op::Rmdir { p }),
        4 => (path(), path(), any::<u8>())
            .prop_map(|(from, to, n)| Op::Rename { from, to, noreplace: n % 5 == 0 }),
        2 => (path(), mode()).prop_map(|(p, mode)| Op::Chmod { p, mode }),
        1 => (path(), 1_000_000u32..2_000_000_000).prop_map(|(p, secs)| Op::Utimens { p, secs }),
        1 => (path(), 0u8..3).prop_map(|(p, target)| Op::Symlink { p, target }),
        1 => path().prop_map(|p| Op::Readlink { p }),
        2 => (0u8..3).prop_map(|dir| Op::Readdir { dir }),
        4 => path().prop_map(|p| Op::Stat { p }),
        1 => path().prop_map(|p| Op::Forget { p }),
        1 => Just(Op::Remount),
    ];
    let base = if mix.faults {
        prop_oneof![
            8 => base,
            1 => (0..FAULT_OPS.len() as u8, 0..FAULT_KINDS).prop_map(|(op, kind)| Op::Transient { op, kind }),
        ]
        .boxed()
    } else {
        base.boxed()
    };
    if !mix.outside {
        return base;
    }
    prop_oneof![
        12 => base,
        1 => (path(), length(), any::<u8>()).prop_map(|(p, len, seed)| Op::OutsidePut { p, len, seed }),
        1 => (path(), any::<bool>()).prop_map(|(p, marker)| Op::OutsideDelete { p, marker }),
    ]
    .boxed()
}

/// A sequence of operations; shrinks by dropping operations and simplifying each.
pub fn ops(mix: Mix, max_len: usize) -> impl Strategy<Value = Vec<Op>> {
    proptest::collection::vec(op(mix), 1..max_len)
}

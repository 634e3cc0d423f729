//! The reference model: the tree a user of the mount should see, the open files with what they
//! stage, and the objects the bucket should hold.
//!
//! What it promises is docs/SEMANTICS.md's, not full POSIX: a file's bytes reach the bucket
//! whole at a close or fsync (never partially), writers of one file share what they stage, a
//! reader opened while nobody writes reads the version it opened (after that version is
//! replaced, renamed or removed it reads that version or fails, never mixes two), and an
//! unlinked open file stays readable and writable but is never uploaded.

use std::collections::BTreeMap;

use super::harness::PART;

pub type NodeId = usize;
pub type GroupId = usize;

pub const ROOT: NodeId = 0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
}

#[derive(Debug, Clone)]
pub struct Node {
    pub kind: Kind,
    /// A file's bytes as the user sees them (what its writers staged), a symlink's target.
    pub content: Vec<u8>,
    /// Permission bits.
    pub mode: u32,
    /// Seconds of an mtime set by utimens and not changed since (None: not checked).
    pub mtime: Option<u64>,
    /// Directories: the `dir/` marker object exists.
    pub marker: bool,
    pub children: BTreeMap<String, NodeId>,
    /// (parent, name); None once unlinked (and for the root).
    pub parent: Option<(NodeId, String)>,
    /// The object of this node is in the bucket (false for a file not uploaded yet).
    pub in_bucket: bool,
    /// Bumped whenever the object behind the node changes, moves or goes: a reader opened
    /// before may then fail instead of reading.
    pub version: u64,
    /// The writers of this file, while any is open.
    pub group: Option<GroupId>,
    /// The inode number the core gave this node (None: not seen since the last remount or
    /// forget).
    pub ino: Option<u64>,
    /// Kernel references the harness holds on `ino` (for forget).
    pub lookups: u64,
    /// chmod/utimens not yet written to the bucket (written 1 s later, or at fsync, commit,
    /// rename or remount).
    pub meta_pending: bool,
}

impl Node {
    fn new(kind: Kind, mode: u32) -> Node {
        Node {
            kind,
            content: Vec::new(),
            mode,
            mtime: None,
            marker: false,
            children: BTreeMap::new(),
            parent: None,
            in_bucket: false,
            version: 0,
            group: None,
            ino: None,
            lookups: 0,
            meta_pending: false,
        }
    }
}

/// The writers of one file, sharing what they stage.
#[derive(Debug, Clone)]
pub struct Group {
    pub node: NodeId,
    /// Open write handles.
    pub writers: usize,
    /// Something to upload at the next commit (created, truncated, written, renamed).
    pub pending: bool,
    /// The file was unlinked (or replaced by a rename): never uploaded.
    pub discarded: bool,
    /// The bytes once the last writer closed (a reader of the group still reads them).
    pub ended: Option<Vec<u8>>,
    /// The node's version then.
    pub ended_version: u64,
    /// The writers change a large object in the bucket part by part (it was larger than a
    /// part when opened, or a multipart upload of theirs completed): the parts they did not
    /// touch are read from the bucket.
    pub patch: bool,
}

#[derive(Debug, Clone)]
pub enum HandleKind {
    Write {
        group: GroupId,
        access: super::ops::Access,
        append: bool,
    },
    /// A read-only open of a file being written: reads what the writers staged.
    Peek { group: GroupId },
    /// A read-only open of a closed file: the version it opened.
    Read {
        node: NodeId,
        snapshot: Vec<u8>,
        version: u64,
    },
}

#[derive(Debug, Clone)]
pub struct Handle {
    pub kind: HandleKind,
    /// The core's file handle.
    pub fh: u64,
    /// The inode number it was opened on.
    pub ino: u64,
}

/// The whole model.
#[derive(Debug, Clone)]
pub struct Model {
    pub nodes: Vec<Node>,
    pub groups: Vec<Group>,
    pub handles: Vec<Handle>,
    /// What the bucket must hold: key → body (`dir/` markers are empty).
    pub bucket: BTreeMap<String, Vec<u8>>,
    /// Permission bits of objects without `x-amz-meta-mode`.
    pub default_file_mode: u32,
    pub default_dir_mode: u32,
}

impl Model {
    pub fn new(default_file_mode: u32, default_dir_mode: u32) -> Model {
        let mut root = Node::new(Kind::Dir, default_dir_mode);
        root.marker = true;
        Model {
            nodes: vec![root],
            groups: Vec::new(),
            handles: Vec::new(),
            bucket: BTreeMap::new(),
            default_file_mode,
            default_dir_mode,
        }
    }

    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id]
    }

    pub fn node_mut(&mut self, id: NodeId) -> &mut Node {
        &mut self.nodes[id]
    }

    /// The child `name` of directory `dir`.
    pub fn child(&self, dir: NodeId, name: &str) -> Option<NodeId> {
        self.nodes[dir].children.get(name).copied()
    }

    /// The directory at root-level name `parent` (None: the root), or the errno of reaching it.
    pub fn dir(&self, parent: Option<&str>) -> Result<NodeId, i32> {
        match parent {
            None => Ok(ROOT),
            Some(name) => match self.child(ROOT, name) {
                None => Err(libc::ENOENT),
                Some(id) if self.nodes[id].kind == Kind::Dir => Ok(id),
                Some(_) => Err(libc::ENOTDIR),
            },
        }
    }

    /// The key of a linked node (`dir/` for directories, "" for the root).
    pub fn key(&self, id: NodeId) -> String {
        let mut parts = Vec::new();
        let mut cur = id;
        while let Some((parent, name)) = &self.nodes[cur].parent {
            parts.push(name.clone());
            cur = *parent;
        }
        assert_eq!(cur, ROOT, "key of an unlinked node");
        parts.reverse();
        let mut key = parts.join("/");
        if self.nodes[id].kind == Kind::Dir && id != ROOT {
            key.push('/');
        }
        key
    }

    pub fn linked(&self, id: NodeId) -> bool {
        id == ROOT || self.nodes[id].parent.is_some()
    }

    /// `id` is `ancestor` or lies under it.
    pub fn is_under(&self, mut id: NodeId, ancestor: NodeId) -> bool {
        loop {
            if id == ancestor {
                return true;
            }
            match &self.nodes[id].parent {
                Some((p, _)) => id = *p,
                None => return false,
            }
        }
    }

    /// A new node linked as `name` in `dir`.
    pub fn add(&mut self, dir: NodeId, name: &str, kind: Kind, mode: u32) -> NodeId {
        let id = self.nodes.len();
        let mut node = Node::new(kind, mode);
        node.parent = Some((dir, name.to_string()));
        self.nodes.push(node);
        let old = self.nodes[dir].children.insert(name.to_string(), id);
        assert!(old.is_none(), "add over an existing node");
        id
    }

    /// Take `id` out of the tree (unlink, rmdir, replaced by a rename). Its writers keep their
    /// bytes but never upload. The bucket is not touched here.
    pub fn detach(&mut self, id: NodeId) {
        if let Some((parent, name)) = self.nodes[id].parent.take() {
            self.nodes[parent].children.remove(&name);
            self.vanish_if_implicit(parent);
        }
        let node = &mut self.nodes[id];
        node.version += 1;
        node.ino = None;
        node.meta_pending = false;
        node.in_bucket = false;
        if let Some(g) = node.group {
            self.groups[g].discarded = true;
        }
    }

    /// A directory that is only a key prefix (no marker) exists while something is under it.
    pub fn vanish_if_implicit(&mut self, dir: NodeId) {
        if dir != ROOT && !self.nodes[dir].marker && self.nodes[dir].children.is_empty() {
            self.detach(dir);
        }
    }

    /// Every node under `id` (itself included), depth first.
    pub fn subtree(&self, id: NodeId) -> Vec<NodeId> {
        let mut out = vec![id];
        let mut i = 0;
        while i < out.len() {
            out.extend(self.nodes[out[i]].children.values().copied());
            i += 1;
        }
        out
    }

    /// Open a writer group on `node` (or join the one open).
    pub fn join_group(&mut self, node: NodeId, trunc: bool, created: bool) -> GroupId {
        let g = match self.nodes[node].group {
            Some(g) => g,
            None => {
                self.groups.push(Group {
                    node,
                    writers: 0,
                    pending: created,
                    discarded: false,
                    ended: None,
                    ended_version: 0,
                    patch: !trunc && !created && self.nodes[node].content.len() as u64 > PART,
                });
                let g = self.groups.len() - 1;
                self.nodes[node].group = Some(g);
                g
            }
        };
        self.groups[g].writers += 1;
        if trunc {
            self.nodes[node].content.clear();
            self.nodes[node].mtime = None;
            self.groups[g].pending = true;
        }
        g
    }

    /// Upload what the group staged, if it has something to upload (close of the last writer,
    /// fsync).
    pub fn commit(&mut self, g: GroupId) {
        let group = &self.groups[g];
        if group.discarded || !group.pending {
            return;
        }
        let node = group.node;
        let key = self.key(node);
        let body = self.nodes[node].content.clone();
        let multipart = self.groups[g].patch || body.len() as u64 >= PART;
        self.put(&key, body);
        let n = &mut self.nodes[node];
        n.in_bucket = true;
        n.version += 1;
        // a multipart upload's metadata was fixed when it began: attribute changes made while
        // it was written are written after it, a moment later (as any attribute change)
        n.meta_pending = n.meta_pending && multipart;
        if n.content.len() as u64 >= PART {
            self.groups[g].patch = true;
        }
        self.groups[g].pending = false;
    }

    /// The last writer of `g` closed.
    pub fn end_group(&mut self, g: GroupId) {
        let node = self.groups[g].node;
        self.groups[g].ended = Some(self.nodes[node].content.clone());
        self.groups[g].ended_version = self.nodes[node].version;
        if self.nodes[node].group == Some(g) {
            self.nodes[node].group = None;
        }
    }

    /// The bytes a read of `g`'s staged data sees.
    pub fn group_bytes(&self, g: GroupId) -> &[u8] {
        match &self.groups[g].ended {
            Some(b) => b,
            None => &self.nodes[self.groups[g].node].content,
        }
    }

    pub fn put(&mut self, key: &str, body: Vec<u8>) {
        self.bucket.insert(key.to_string(), body);
    }

    pub fn delete(&mut self, key: &str) {
        self.bucket.remove(key);
    }

    /// Move every key under `from` (a `dir/` prefix) to `to`.
    pub fn move_prefix(&mut self, from: &str, to: &str) {
        let moved: Vec<String> = self
            .bucket
            .keys()
            .filter(|k| k.starts_with(from))
            .cloned()
            .collect();
        for k in moved {
            if let Some(body) = self.bucket.remove(&k) {
                self.bucket
                    .insert(format!("{to}{}", &k[from.len()..]), body);
            }
        }
    }

    /// Whether any open handle refers to `node` (or to a node under it).
    pub fn open_under(&self, node: NodeId) -> bool {
        self.handles.iter().any(|h| {
            let n = match &h.kind {
                HandleKind::Write { group, .. } | HandleKind::Peek { group } => {
                    self.groups[*group].node
                }
                HandleKind::Read { node, .. } => *node,
            };
            self.linked(n) && self.is_under(n, node)
        }) || self
            .groups
            .iter()
            .any(|g| g.ended.is_none() && self.linked(g.node) && self.is_under(g.node, node))
    }

    /// The node whose recorded inode number is `ino`, if any.
    pub fn node_with_ino(&self, ino: u64) -> Option<NodeId> {
        self.nodes.iter().position(|n| n.ino == Some(ino))
    }

    /// Forget every inode number and handle (a new core).
    pub fn remounted(&mut self) {
        assert!(self.handles.is_empty());
        for n in &mut self.nodes {
            n.ino = None;
            n.lookups = 0;
            n.meta_pending = false;
            n.group = None;
        }
    }
}

//! The inode table: stable inode numbers for (parent, name) pairs, their keys and cached attributes.

// a fast hasher with a random seed per map: names come from the bucket
use foldhash::{HashMap, HashSet};
use std::time::Instant;

use super::attr::{Attr, FileKind};

pub const ROOT_INO: u64 = 1;

/// What a directory listing said about one child, kept so lookups need no request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListedChild {
    /// `etag` and `modified` as the listing gave them (for `--stat-from-listing`; none for
    /// entries this mount wrote).
    File {
        size: u64,
        etag: Option<String>,
        modified: Option<std::time::SystemTime>,
    },
    /// `old_object`: what the listing showed of an older form of directory object standing
    /// for it (`name_$folder$`, or an empty `name` beside the prefix), removed with it.
    Directory {
        old_object: super::old_dirs::OldDirObject,
    },
}

impl ListedChild {
    /// A directory as this mount makes them (a `dir/` marker, or a prefix).
    pub const DIR: ListedChild = ListedChild::Directory {
        old_object: super::old_dirs::OldDirObject::Absent,
    };

    /// A file this mount knows the size of, and nothing else from a listing.
    pub fn file(size: u64) -> ListedChild {
        ListedChild::File {
            size,
            etag: None,
            modified: None,
        }
    }
}

/// A complete listing of a directory, trusted until `expires`: its entries by name (what
/// lookups ask) and in order (what readdir serves), each made from the other when first
/// needed. A listing read through with no lookup during it (`ls -f`, `find` or `du` of a
/// directory of files) keeps only the order: the map by name is built at the first lookup.
#[derive(Debug, Clone)]
pub struct DirSnapshot {
    children: std::sync::OnceLock<HashMap<String, ListedChild>>,
    pub expires: Instant,
    /// The same entries in order, for readdir; made when first needed, dropped when the
    /// children change.
    pub items: Option<std::sync::Arc<Vec<super::dir_listing::DirItem>>>,
}

impl DirSnapshot {
    /// A listing of `children`.
    pub fn new(children: HashMap<String, ListedChild>, expires: Instant) -> Self {
        DirSnapshot {
            children: children.into(),
            expires,
            items: None,
        }
    }

    /// A listing of `items` (a complete listing's entries, shared, not copied).
    pub fn from_items(
        items: std::sync::Arc<Vec<super::dir_listing::DirItem>>,
        expires: Instant,
    ) -> Self {
        DirSnapshot {
            children: std::sync::OnceLock::new(),
            expires,
            items: Some(items),
        }
    }

    /// The entries by name (built from the order at the first call).
    pub fn children(&self) -> &HashMap<String, ListedChild> {
        self.children.get_or_init(|| {
            let items = self.items.as_deref().map_or(&[][..], |i| &i[..]);
            items
                .iter()
                .filter_map(|i| Some((i.name.clone(), i.listed.clone()?)))
                .collect()
        })
    }

    /// `name` is now `child` (or gone): the order is made again when next needed.
    pub fn set(&mut self, name: &str, child: Option<ListedChild>) {
        self.children();
        self.items = None;
        if let Some(c) = self.children.get_mut() {
            match child {
                Some(child) => c.insert(name.to_string(), child),
                None => c.remove(name),
            };
        }
    }

    /// Entries (what the bound on cached listings counts).
    pub fn entries(&self) -> usize {
        match (self.children.get(), &self.items) {
            (Some(c), _) => c.len(),
            (None, Some(i)) => i.len(),
            (None, None) => 0,
        }
    }

    /// Whether the map by name was built (tests).
    pub fn has_name_map(&self) -> bool {
        self.children.get().is_some()
    }
}

/// What a listing still under way has shown lookups so far, until it completes.
#[derive(Debug, Clone)]
pub struct PartialListing {
    /// Trusted until then (pushed on as pages arrive).
    pub until: Instant,
    /// When this listing started: tells one listing of the directory from the next.
    pub started: Instant,
    pub children: HashMap<String, ListedChild>,
    /// The same names in listing (key) order, with whether each is a directory: what
    /// stat-ahead walks while the listing goes on (`ls -l` stats each entry as it reads it).
    pub order: Vec<(String, bool)>,
    /// Names created, removed or renamed here since the listing started: what `children`
    /// says of them is this mount's, whatever a page fetched before the change says.
    pub changed_here: std::collections::HashSet<String>,
    /// A lookup consulted this listing: from then on each page is shown to lookups as it
    /// comes (until then only the first, see `Filesystem::publish_partial`).
    pub asked: std::cell::Cell<bool>,
}

impl PartialListing {
    pub fn new(until: Instant) -> Self {
        PartialListing {
            until,
            started: Instant::now(),
            children: HashMap::default(),
            order: Vec::new(),
            changed_here: Default::default(),
            asked: Default::default(),
        }
    }

    /// What a page says of `name`, unless `name` changed here since the listing started.
    pub fn listed(&mut self, name: &str, child: Option<ListedChild>) {
        if !self.changed_here.contains(name) {
            self.set(name, child);
        }
    }

    /// `name` was created (`Some`), removed or renamed away (`None`) here.
    pub fn changed(&mut self, name: &str, child: Option<ListedChild>) {
        self.changed_here.insert(name.to_string());
        self.set(name, child);
    }

    fn set(&mut self, name: &str, child: Option<ListedChild>) {
        match child {
            Some(c) => self.children.insert(name.to_string(), c),
            None => self.children.remove(name),
        };
    }

    /// Where `name` (a directory when `dir`) is in [`order`](Self::order): names are in the
    /// order of their keys, a directory's key ending in `/`.
    pub fn position(&self, name: &str, dir: bool) -> Option<usize> {
        self.order
            .binary_search_by(|(n, d)| cmp_as_keys(n, *d, name, dir))
            .ok()
    }
}

/// Compares two names as their keys compare (a directory's key ends in `/`).
fn cmp_as_keys(a: &str, a_dir: bool, b: &str, b_dir: bool) -> std::cmp::Ordering {
    let a = a.bytes().chain(a_dir.then_some(b'/'));
    let b = b.bytes().chain(b_dir.then_some(b'/'));
    a.cmp(b)
}

#[derive(Debug, Clone)]
pub struct Inode {
    pub ino: u64,
    pub parent: u64,
    pub name: String,
    /// Full object key: `prefix/a/b.txt` for files, `prefix/a/` for directories, the mount
    /// prefix for the root.
    pub key: String,
    pub attr: Attr,
    /// Attributes are trusted until then; after it, getattr asks S3 again.
    pub attr_expires: Instant,
    /// The version's ETag; set through [`Inode::new_version`] when this mount makes one.
    pub etag: Option<String>,
    /// When this mount last put a new version of the object behind it (a close, truncate,
    /// attribute copy or rename): an answer to a request made before then (a HEAD or listing
    /// still on its way) is older than what the node shows, and does not replace it.
    pub changed_here: Option<Instant>,
    /// Directories: a `dir/` marker object exists.
    pub has_marker: bool,
    /// Kernel references (lookup count); the inode goes when it and `open_handles` reach 0.
    pub lookups: u64,
    pub open_handles: u32,
    /// Exists only here so far (created, upload not complete yet). Read-only outside this
    /// file: set with [`InodeTable::set_local_only`], which keeps the table's index of them.
    pub local_only: bool,
    /// Being written through a handle: attributes come from the writer, never from S3. Set
    /// with [`InodeTable::set_writing`].
    pub writing: bool,
    /// Directories: the last complete listing.
    pub snapshot: Option<DirSnapshot>,
    /// Directories: what a listing still under way has shown so far, until it completes (or
    /// the instant stored): lookups of those names need no probe (`ls -l` stats each entry
    /// as it reads them).
    pub partial_listing: Option<PartialListing>,
    /// ETag of the bytes the kernel may still hold in its page cache.
    pub page_cache_etag: Option<String>,
    /// The object's metadata as last seen (kept on rewrites and metadata changes).
    pub meta: super::object_meta::StoredMeta,
    /// The attributes changed here and not written yet (with `meta_pending`).
    pub meta_changed: super::object_meta::Changed,
    /// Directories: an older form of directory object that stands for it (s3fs's `dir` with
    /// a directory content type, or `dir_$folder$`): removed with the directory.
    pub old_dir_object: super::old_dirs::OldDirObject,
    /// mode/owner/times were changed here and are not in the object's metadata yet (see
    /// `metadata_write.rs`): the local attributes win until they are.
    pub meta_pending: bool,
    /// Counts attribute changes, so a metadata write knows whether a newer one came meanwhile.
    pub meta_gen: u64,
    /// The attributes came from a listing (`--stat-from-listing`): size, time and ETag are
    /// the object's, mode, owner and the other metadata are not known yet.
    pub partial_meta: bool,
}

impl Inode {
    /// A node nobody refers to yet, with nothing cached beyond its attributes.
    pub fn new(
        ino: u64,
        parent: u64,
        name: &str,
        key: String,
        attr: Attr,
        expires: Instant,
    ) -> Inode {
        Inode {
            ino,
            parent,
            name: name.to_string(),
            key,
            attr,
            attr_expires: expires,
            etag: None,
            changed_here: None,
            has_marker: false,
            lookups: 0,
            open_handles: 0,
            local_only: false,
            writing: false,
            snapshot: None,
            partial_listing: None,
            page_cache_etag: None,
            meta: Default::default(),
            meta_changed: Default::default(),
            old_dir_object: Default::default(),
            meta_pending: false,
            meta_gen: 0,
            partial_meta: false,
        }
    }

    pub fn kind(&self) -> FileKind {
        self.attr.kind
    }

    /// This mount put a new version (`etag`) of the object behind it.
    pub fn new_version(&mut self, etag: Option<String>) {
        self.etag = etag;
        self.changed_here = Some(Instant::now());
    }

    /// This mount put a new version after `asked`: an answer to a request made then is older.
    pub fn changed_since(&self, asked: Instant) -> bool {
        self.changed_here.is_some_and(|at| at >= asked)
    }
    /// Directories: what the listing says of `name` at `now`: `Some(None)` when a fresh
    /// complete listing lacks it, `Some(Some(..))` when a fresh listing (or the part of one
    /// under way) has it, `None` when no listing can tell.
    pub fn listed_child(&self, name: &str, now: Instant) -> Option<Option<&ListedChild>> {
        match &self.snapshot {
            Some(s) if now < s.expires => Some(s.children().get(name)),
            // a listing under way: what it has shown (a name it has not reached yet is
            // probed as usual)
            _ => match &self.partial_listing {
                Some(p) if now < p.until => {
                    p.asked.set(true);
                    p.children.get(name).map(Some)
                }
                _ => None,
            },
        }
    }

    pub fn attr_fresh(&self, now: Instant) -> bool {
        self.writing || self.local_only || self.meta_pending || now < self.attr_expires
    }
}

/// Numbers of forgotten inodes remembered by (parent, name), at most.
const REMEMBERED_NUMBERS: usize = 65_536;

/// All inodes the kernel knows of, by number and by (parent, name).
#[derive(Debug)]
pub struct InodeTable {
    inodes: HashMap<u64, Inode>,
    by_name: HashMap<(u64, String), u64>,
    next_ino: u64,
    /// The numbers of inodes the kernel forgot, by (parent, name) and kind: a file that still
    /// exists gets its number back at its next lookup, so `stat` shows one inode number while
    /// the file exists (tar, `rsync -H`, `find -inum` and `git status` compare them), however
    /// often the kernel drops and looks it up again.
    forgotten: lru::LruCache<(u64, String), (u64, FileKind)>,
    /// The inodes with `local_only` or `writing` set (kept by `set_local_only` and
    /// `set_writing`): what readdir and a missing directory's lookup look through, instead of
    /// every inode.
    pending: HashSet<u64>,
    /// Entries of all cached listings together, and the directories holding one, oldest
    /// first: a new listing drops the oldest others past the bound (see `install_listing`).
    listed_entries: usize,
    listed_order: std::collections::VecDeque<u64>,
    /// Nodes looked at by the walks that must not grow with the table (tests count them).
    #[cfg(test)]
    visits: std::cell::Cell<usize>,
}

impl InodeTable {
    pub fn new(root: Inode) -> InodeTable {
        let mut inodes = HashMap::default();
        inodes.insert(ROOT_INO, root);
        let remembered =
            std::num::NonZeroUsize::new(REMEMBERED_NUMBERS).unwrap_or(std::num::NonZeroUsize::MIN);
        InodeTable {
            inodes,
            by_name: HashMap::default(),
            next_ino: ROOT_INO + 1,
            forgotten: lru::LruCache::new(remembered),
            pending: HashSet::default(),
            listed_entries: 0,
            listed_order: Default::default(),
            #[cfg(test)]
            visits: Default::default(),
        }
    }

    pub fn get(&self, ino: u64) -> Option<&Inode> {
        self.inodes.get(&ino)
    }

    pub fn get_mut(&mut self, ino: u64) -> Option<&mut Inode> {
        self.inodes.get_mut(&ino)
    }

    pub fn child(&self, parent: u64, name: &str) -> Option<&Inode> {
        let ino = self.by_name.get(&(parent, name.to_string()))?;
        self.inodes.get(ino)
    }

    /// As [`child`](Self::child), the (parent, name) pair built by the caller: a walk over
    /// many names (readdir) reuses one instead of allocating a name per lookup.
    pub fn child_by_key(&self, key: &(u64, String)) -> Option<&Inode> {
        let ino = self.by_name.get(key)?;
        self.inodes.get(ino)
    }

    pub fn child_ino(&self, parent: u64, name: &str) -> Option<u64> {
        self.by_name.get(&(parent, name.to_string())).copied()
    }

    /// Keep `snap` as the listing of directory `ino`, dropping the oldest listings of other
    /// directories while all of them together would hold more than `total` entries: the
    /// memory of cached listings is bounded whatever the number of directories walked.
    pub fn install_listing(&mut self, ino: u64, snap: DirSnapshot, total: usize) {
        let len = snap.entries();
        self.drop_listing(ino);
        while self.listed_entries + len > total {
            let Some(old) = self.listed_order.pop_front() else {
                break;
            };
            self.drop_listing(old);
        }
        if let Some(n) = self.inodes.get_mut(&ino) {
            n.snapshot = Some(snap);
            self.listed_entries += len;
            self.listed_order.push_back(ino);
        }
    }

    /// Forget the cached listing of `ino`, if it has one.
    pub fn drop_listing(&mut self, ino: u64) {
        if let Some(s) = self.inodes.get_mut(&ino).and_then(|n| n.snapshot.take()) {
            self.listed_entries = self.listed_entries.saturating_sub(s.entries());
            self.listed_order.retain(|i| *i != ino);
        }
    }

    /// Entries of all cached listings together.
    pub fn listed_entries(&self) -> usize {
        self.listed_entries
    }

    /// Mark `ino` as existing here only so far (created, not uploaded yet), or not any more.
    pub fn set_local_only(&mut self, ino: u64, on: bool) {
        if let Some(n) = self.inodes.get_mut(&ino) {
            n.local_only = on;
        }
        self.repend(ino);
    }

    /// Mark `ino` as open for writing, or not any more.
    pub fn set_writing(&mut self, ino: u64, on: bool) {
        if let Some(n) = self.inodes.get_mut(&ino) {
            n.writing = on;
        }
        self.repend(ino);
    }

    fn repend(&mut self, ino: u64) {
        match self.inodes.get(&ino) {
            Some(n) if n.local_only || n.writing => self.pending.insert(ino),
            _ => self.pending.remove(&ino),
        };
    }

    /// The pending inodes that still have their names.
    fn pending_linked(&self) -> impl Iterator<Item = &Inode> {
        self.pending
            .iter()
            .filter_map(|ino| {
                self.visit();
                self.inodes.get(ino)
            })
            .filter(|n| (n.local_only || n.writing) && self.linked(n))
    }

    #[cfg(test)]
    fn visit(&self) {
        self.visits.set(self.visits.get() + 1);
    }

    #[cfg(not(test))]
    fn visit(&self) {}

    /// Whether `n` still has its name (not unlinked or replaced while open).
    fn linked(&self, n: &Inode) -> bool {
        self.by_name.get(&(n.parent, n.name.clone())) == Some(&n.ino)
    }

    /// Children of `parent` the bucket may not show yet, for readdir: files being created or
    /// written (a file renamed while open has no object under its new name until its upload),
    /// and directories holding such files.
    pub fn local_children(&self, parent: u64) -> Vec<(String, Attr)> {
        // each pending file, or the ancestor of it that is a child of `parent`
        let mut found: HashMap<u64, &Inode> = HashMap::default();
        for n in self.pending_linked() {
            let mut cur = n;
            for _ in 0..4096 {
                if cur.parent == parent {
                    if cur.ino != ROOT_INO && self.linked(cur) {
                        found.insert(cur.ino, cur);
                    }
                    break;
                }
                if cur.ino == ROOT_INO {
                    break;
                }
                self.visit();
                match self.inodes.get(&cur.parent) {
                    Some(p) => cur = p,
                    None => break,
                }
            }
        }
        found
            .into_values()
            .filter(|i| i.local_only || i.writing || i.kind() == FileKind::Directory)
            .map(|i| (i.name.clone(), i.attr))
            .collect()
    }

    /// Insert or refresh the child `name` of `parent`. An existing inode of the same kind keeps
    /// its number; a kind change (file replaced by directory) gets a new number.
    /// Returns the inode number; `attr.ino` is overwritten with it.
    #[allow(clippy::too_many_arguments)]
    pub fn upsert_child(
        &mut self,
        parent: u64,
        name: &str,
        key: String,
        mut attr: Attr,
        etag: Option<String>,
        has_marker: bool,
        expires: Instant,
    ) -> u64 {
        let map_key = (parent, name.to_string());
        if let Some(&ino) = self.by_name.get(&map_key) {
            if let Some(node) = self.inodes.get_mut(&ino) {
                if node.attr.kind == attr.kind {
                    if node.writing || node.local_only || node.meta_pending {
                        // the writer's view wins until its upload is complete, and
                        // attributes set here until they are stored
                        return ino;
                    }
                    attr.ino = ino;
                    node.attr = attr;
                    node.key = key;
                    node.etag = etag;
                    node.has_marker = has_marker;
                    node.attr_expires = expires;
                    return ino;
                }
            }
            self.by_name.remove(&map_key);
        }
        let ino = match self.forgotten.pop(&map_key) {
            // the same name and kind as a node the kernel forgot: the same number
            Some((ino, kind)) if kind == attr.kind && !self.inodes.contains_key(&ino) => ino,
            _ => {
                self.next_ino += 1;
                self.next_ino - 1
            }
        };
        attr.ino = ino;
        let mut node = Inode::new(ino, parent, name, key, attr, expires);
        node.etag = etag;
        node.has_marker = has_marker;
        self.inodes.insert(ino, node);
        self.by_name.insert(map_key, ino);
        ino
    }

    /// The child `name` of `parent` when this mount put a new version of it after `asked`: an
    /// answer to a request made then does not replace it. Its lookup is counted, as
    /// `upsert_child` and `inc_lookup` would; its attributes.
    pub fn changed_child_since(&mut self, parent: u64, name: &str, asked: Instant) -> Option<Attr> {
        let ino = self
            .child(parent, name)
            .filter(|n| n.changed_since(asked))?
            .ino;
        self.inc_lookup(ino);
        self.get(ino).map(|n| n.attr)
    }

    pub fn inc_lookup(&mut self, ino: u64) {
        if let Some(n) = self.inodes.get_mut(&ino) {
            n.lookups += 1;
        }
    }

    /// Give back a reference taken internally, without removing the inode.
    pub fn unref(&mut self, ino: u64) {
        if let Some(n) = self.inodes.get_mut(&ino) {
            n.lookups = n.lookups.saturating_sub(1);
        }
    }

    /// The kernel dropped `n` references; the inode goes when nothing refers to it.
    pub fn forget(&mut self, ino: u64, n: u64) {
        if ino == ROOT_INO {
            return;
        }
        if let Some(node) = self.inodes.get_mut(&ino) {
            node.lookups = node.lookups.saturating_sub(n);
        }
        self.settle(ino);
    }

    /// Drop `ino` if nothing holds it any more: the kernel forgot it, no handle is open, it
    /// has an object, and no attribute change waits to be written (the metadata writer calls
    /// this once it has written one).
    /// Whether a file under `prefix` (a directory's key with its slash) exists only here so
    /// far (created, or renamed while open for writing, and not uploaded yet): the directory
    /// exists for it, although the bucket has nothing under the prefix yet. A scan of the table, for the rare lookup the bucket
    /// answers "missing".
    pub fn holds_local_under(&self, prefix: &str) -> bool {
        self.pending_linked().any(|n| n.key.starts_with(prefix))
    }

    pub fn settle(&mut self, ino: u64) {
        let idle = self.inodes.get(&ino).is_some_and(|node| {
            node.lookups == 0 && node.open_handles == 0 && !node.local_only && !node.meta_pending
        });
        if ino == ROOT_INO || !idle {
            return;
        }
        self.drop_listing(ino);
        if let Some(node) = self.inodes.remove(&ino) {
            self.pending.remove(&ino);
            let key = (node.parent, node.name);
            if self.by_name.get(&key) == Some(&ino) {
                self.by_name.remove(&key);
                self.forgotten.put(key, (ino, node.attr.kind));
            }
        }
    }

    /// Detach `name` from `parent` (unlink/rmdir); the inode lives on until forgotten.
    pub fn detach(&mut self, parent: u64, name: &str) -> Option<u64> {
        self.forgotten.pop(&(parent, name.to_string()));
        let ino = self.by_name.remove(&(parent, name.to_string()))?;
        if let Some(node) = self.inodes.get_mut(&ino) {
            node.local_only = false;
            // its object is gone or replaced: attribute changes not written yet have no home
            node.meta_pending = false;
            node.meta_changed = Default::default();
            // still open somewhere: fstat shows it has no name left
            node.attr.nlink = 0;
            if node.lookups == 0 && node.open_handles == 0 {
                self.drop_listing(ino);
                self.inodes.remove(&ino);
            }
        }
        self.repend(ino);
        Some(ino)
    }

    /// Move the node `ino` to (new_parent, new_name) with key `new_key`; directory
    /// descendants get their keys rewritten. Any node already at the target is detached.
    pub fn relink(&mut self, ino: u64, new_parent: u64, new_name: &str, new_key: String) {
        let old = match self.inodes.get(&ino) {
            Some(n) => (n.parent, n.name.clone(), n.key.clone()),
            None => return,
        };
        if self.by_name.get(&(old.0, old.1.clone())) == Some(&ino) {
            self.by_name.remove(&(old.0, old.1));
        }
        self.detach(new_parent, new_name);
        self.by_name.insert((new_parent, new_name.to_string()), ino);
        let old_key = old.2;
        if let Some(node) = self.inodes.get_mut(&ino) {
            node.parent = new_parent;
            node.name = new_name.to_string();
            node.key = new_key.clone();
        }
        // a file's rename touches its node only (rsync renames every file it writes); a
        // directory's rewrites the keys below it, which a rename of the directory costs anyway
        if old_key.ends_with('/') {
            #[cfg(test)]
            self.visits.set(self.visits.get() + self.inodes.len());
            for node in self.inodes.values_mut() {
                if node.ino != ino && node.key.starts_with(&old_key) {
                    node.key = format!("{}{}", new_key, &node.key[old_key.len()..]);
                }
            }
        }
    }

    pub fn len(&self) -> usize {
        self.inodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inodes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FsConfig;
    use std::time::{Duration, UNIX_EPOCH};

    fn table() -> InodeTable {
        let cfg = FsConfig::default();
        let now = Instant::now();
        let attr = Attr::new(ROOT_INO, FileKind::Directory, 0, &cfg, UNIX_EPOCH);
        let mut root = Inode::new(ROOT_INO, ROOT_INO, "", String::new(), attr, now);
        root.lookups = 1;
        InodeTable::new(root)
    }

    fn file_attr() -> Attr {
        Attr::new(0, FileKind::File, 3, &FsConfig::default(), UNIX_EPOCH)
    }

    #[test]
    fn numbers_are_stable_until_forgotten() {
        let mut t = table();
        let exp = Instant::now() + Duration::from_secs(5);
        let a = t.upsert_child(ROOT_INO, "a", "a".into(), file_attr(), None, false, exp);
        t.inc_lookup(a);
        let again = t.upsert_child(ROOT_INO, "a", "a".into(), file_attr(), None, false, exp);
        assert_eq!(a, again);
        assert_eq!(t.get(a).map(|n| n.attr.ino), Some(a));
        t.forget(a, 1);
        assert!(t.get(a).is_none());
        // looked up again after the kernel forgot it: the same number
        let b = t.upsert_child(ROOT_INO, "a", "a".into(), file_attr(), None, false, exp);
        assert_eq!(a, b);
        // once the name is gone, a new file there is a new node
        t.detach(ROOT_INO, "a");
        let c = t.upsert_child(ROOT_INO, "a", "a".into(), file_attr(), None, false, exp);
        assert_ne!(a, c);
    }

    #[test]
    fn kind_change_gets_a_new_number() {
        let mut t = table();
        let exp = Instant::now();
        let a = t.upsert_child(ROOT_INO, "a", "a".into(), file_attr(), None, false, exp);
        t.inc_lookup(a);
        let dir = Attr::new(0, FileKind::Directory, 0, &FsConfig::default(), UNIX_EPOCH);
        let d = t.upsert_child(ROOT_INO, "a", "a/".into(), dir, None, false, exp);
        assert_ne!(a, d);
        assert_eq!(t.child_ino(ROOT_INO, "a"), Some(d));
        // the old one is still there for the kernel until it forgets it
        assert!(t.get(a).is_some());
    }

    #[test]
    fn file_renames_and_local_listings_do_not_walk_the_whole_table() {
        let mut t = table();
        let exp = Instant::now() + Duration::from_secs(60);
        let dir = Attr::new(0, FileKind::Directory, 0, &FsConfig::default(), UNIX_EPOCH);
        let d = t.upsert_child(ROOT_INO, "d", "d/".into(), dir, None, false, exp);
        t.inc_lookup(d);
        // 10,000 closed files the kernel still holds (an rsync's worth)
        for i in 0..10_000 {
            let name = format!("f{i}");
            let ino = t.upsert_child(d, &name, format!("d/{name}"), file_attr(), None, false, exp);
            t.inc_lookup(ino);
        }
        // one file being written, two levels down
        let sub = t.upsert_child(d, "sub", "d/sub/".into(), dir, None, false, exp);
        t.inc_lookup(sub);
        let w = t.upsert_child(sub, "w", "d/sub/w".into(), file_attr(), None, false, exp);
        t.inc_lookup(w);
        t.set_writing(w, true);
        t.visits.set(0);
        let names: Vec<String> = t.local_children(d).into_iter().map(|c| c.0).collect();
        assert_eq!(
            names,
            ["sub"],
            "the directory holding the file being written"
        );
        assert!(t.holds_local_under("d/sub/"));
        assert!(!t.holds_local_under("d/other/"));
        // each file renamed (rsync's temporary name to its own)
        let f = t.child_ino(d, "f5").expect("f5");
        t.relink(f, d, "g5", "d/g5".into());
        assert_eq!(t.get(f).map(|n| n.key.as_str()), Some("d/g5"));
        assert!(t.visits.get() < 20, "{} nodes visited", t.visits.get());
        // done writing: the index forgets it
        t.set_writing(w, false);
        assert!(t.local_children(d).is_empty());
        assert!(!t.holds_local_under("d/sub/"));
    }

    #[test]
    fn cached_listings_together_stay_within_their_bound() {
        let mut t = table();
        let exp = Instant::now() + Duration::from_secs(60);
        let dir = Attr::new(0, FileKind::Directory, 0, &FsConfig::default(), UNIX_EPOCH);
        let listing = |n: usize| {
            let children = (0..n)
                .map(|i| (format!("f{i}"), ListedChild::file(1)))
                .collect();
            DirSnapshot::new(children, exp)
        };
        let mut dirs = Vec::new();
        for d in 0..3 {
            let ino = t.upsert_child(
                ROOT_INO,
                &format!("d{d}"),
                format!("d{d}/"),
                dir,
                None,
                false,
                exp,
            );
            t.inc_lookup(ino);
            dirs.push(ino);
        }
        t.install_listing(dirs[0], listing(100), 250);
        t.install_listing(dirs[1], listing(100), 250);
        assert_eq!(t.listed_entries(), 200);
        // a third does not fit: the oldest goes
        t.install_listing(dirs[2], listing(100), 250);
        assert_eq!(t.listed_entries(), 200);
        assert!(t.get(dirs[0]).is_some_and(|n| n.snapshot.is_none()));
        assert!(t.get(dirs[1]).is_some_and(|n| n.snapshot.is_some()));
        // listed again: replaces its own, drops the next oldest
        t.install_listing(dirs[0], listing(120), 250);
        assert_eq!(t.listed_entries(), 220);
        assert!(t.get(dirs[1]).is_some_and(|n| n.snapshot.is_none()));
        // a directory the kernel forgets takes its listing along
        t.forget(dirs[2], 1);
        assert_eq!(t.listed_entries(), 120);
    }

    #[test]
    fn relink_rewrites_descendant_keys() {
        let mut t = table();
        let exp = Instant::now();
        let dir = Attr::new(0, FileKind::Directory, 0, &FsConfig::default(), UNIX_EPOCH);
        let d = t.upsert_child(ROOT_INO, "d", "d/".into(), dir, None, false, exp);
        t.inc_lookup(d);
        let f = t.upsert_child(d, "f", "d/f".into(), file_attr(), None, false, exp);
        t.inc_lookup(f);
        t.relink(d, ROOT_INO, "e", "e/".into());
        assert_eq!(t.get(f).map(|n| n.key.as_str()), Some("e/f"));
        assert_eq!(t.child_ino(ROOT_INO, "e"), Some(d));
        assert_eq!(t.child_ino(ROOT_INO, "d"), None);
    }
}

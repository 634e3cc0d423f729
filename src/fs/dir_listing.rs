//! Directory listings: paged ListObjectsV2 turned into directory entries, with stable offsets.
//!
//! A key `a` and keys under `a/` may both exist; the directory wins and the file is shadowed.
//! Since `a` sorts before `a.txt` and both before `a/`, a file whose directory twin could still
//! come on a later page is held back until the listing has passed `a/`.

use std::collections::BTreeMap;
use std::sync::Arc;

// a fast hasher with a random seed per map: keys come from the bucket
use foldhash::{HashMap, HashSet};

use super::attr::FileKind;
use super::inode::ListedChild;
use super::old_dirs::{OldDirObject, FOLDER_SUFFIX};
use super::zero_parts::is_zeros_object;
use crate::s3::{ListPage, ListRequest, S3Client, S3Error};

/// One entry of a directory as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirItem {
    pub name: String,
    pub kind: FileKind,
    /// What the listing said; `None` for entries that exist only locally.
    pub listed: Option<ListedChild>,
}

/// Longest file name (bytes), as on Linux filesystems (`statfs` says so too).
pub const NAME_MAX: usize = 255;

/// Keys warned about (left out of listings) are remembered up to this many, to warn once each.
const WARNED_KEYS: usize = 100_000;

/// Keys left out of listings (invalid names, shadowed files), each logged once.
#[derive(Default)]
pub(crate) struct SkippedKeys(parking_lot::Mutex<HashSet<String>>);

impl SkippedKeys {
    /// Warn once about a key that cannot be shown.
    pub(crate) fn warn(&self, key: &str, reason: &str) {
        let mut warned = self.0.lock();
        if warned.len() < WARNED_KEYS && warned.insert(key.to_string()) {
            tracing::warn!(key = %key.escape_debug(), "key left out of the listing: {reason}");
        }
    }
}

/// Why a name cannot be a file name, or `None` if it can.
pub fn invalid_name_reason(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("empty path segment (double slash in key)")
    } else if name == "." || name == ".." {
        Some("'.' or '..' path segment")
    } else if name.len() > NAME_MAX {
        Some("path segment longer than 255 bytes")
    } else if name.contains('\0') {
        Some("NUL byte in key")
    } else {
        None
    }
}

/// What the listing tells its caller about keys it had to leave out.
pub trait ListingWarnings: Sync {
    /// A key that cannot be shown (bad name, not UTF-8, shadowed by a directory).
    fn skipped(&self, key: &str, reason: &str);
}

/// A directory listing in progress or complete.
#[derive(Debug)]
pub struct DirStream {
    prefix: String,
    token: Option<String>,
    done: bool,
    /// Shared with the directory's cached listing when served from it (copied only if a
    /// local entry is added).
    items: Arc<Vec<DirItem>>,
    /// Names emitted, with their place in `items` (a directory replacing a file finds it);
    /// built when first needed for a listing served from the cache.
    emitted: Option<HashMap<String, usize>>,
    deferred: BTreeMap<String, DirItem>,
    dirs_seen: HashSet<String>,
    /// The next page, requested while the reader goes through this one (a reader that stops
    /// early costs one page more; a walk of N pages waits for one request, not N).
    ahead: Option<tokio::task::JoinHandle<Result<ListPage, S3Error>>>,
    /// Places in `items` of files a directory replaced since `take_replaced` was last asked.
    replaced: Vec<usize>,
}

impl Drop for DirStream {
    fn drop(&mut self) {
        if let Some(h) = self.ahead.take() {
            h.abort();
        }
    }
}

impl DirStream {
    /// A listing of the directory whose key prefix is `prefix` ("" or ending in `/`).
    pub fn new(prefix: &str) -> DirStream {
        DirStream {
            prefix: prefix.to_string(),
            token: None,
            done: false,
            items: Arc::default(),
            emitted: Some(HashMap::default()),
            deferred: BTreeMap::new(),
            dirs_seen: HashSet::default(),
            ahead: None,
            replaced: Vec::new(),
        }
    }

    /// A complete listing from a cached snapshot (no request needed).
    pub fn from_snapshot(prefix: &str, children: &HashMap<String, ListedChild>) -> DirStream {
        DirStream::from_items(prefix, Arc::new(sorted_items(children)))
    }

    /// A complete listing of `items` (shared, not copied).
    pub fn from_items(prefix: &str, items: Arc<Vec<DirItem>>) -> DirStream {
        let mut s = DirStream::new(prefix);
        s.items = items;
        s.emitted = None;
        s.done = true;
        s
    }

    /// Places in `items` whose file a directory replaced since the last call.
    pub fn take_replaced(&mut self) -> Vec<usize> {
        std::mem::take(&mut self.replaced)
    }

    /// The entries, shared (for the directory's cached listing).
    pub fn shared_items(&self) -> Arc<Vec<DirItem>> {
        self.items.clone()
    }

    fn emitted(&mut self) -> &mut HashMap<String, usize> {
        let items = &self.items;
        self.emitted.get_or_insert_with(|| {
            items
                .iter()
                .enumerate()
                .map(|(i, item)| (item.name.clone(), i))
                .collect()
        })
    }

    pub fn items(&self) -> &[DirItem] {
        &self.items
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Add entries that exist only locally (files being written), after the listing.
    pub fn add_local(&mut self, name: &str, kind: FileKind) {
        if !self.emitted().contains_key(name) {
            self.emit(DirItem {
                name: name.to_string(),
                kind,
                listed: None,
            });
        }
    }

    /// Everything listed, as a snapshot for lookups.
    pub fn snapshot(&self) -> HashMap<String, ListedChild> {
        self.items
            .iter()
            .filter_map(|i| i.listed.clone().map(|l| (i.name.clone(), l)))
            .collect()
    }

    fn emit(&mut self, item: DirItem) {
        let at = self.items.len();
        if let std::collections::hash_map::Entry::Vacant(e) =
            self.emitted().entry(item.name.clone())
        {
            e.insert(at);
            Arc::make_mut(&mut self.items).push(item);
        }
    }

    /// Fetch and absorb the next page. Does nothing once the listing is complete.
    pub async fn fetch_next_page(
        &mut self,
        client: &S3Client,
        warn: &dyn ListingWarnings,
    ) -> Result<(), S3Error> {
        if self.done {
            return Ok(());
        }
        let page = match self.ahead.take() {
            Some(h) => h
                .await
                .map_err(|e| S3Error::InvalidResponse(format!("listing request lost: {e}")))?,
            None => client.list_objects_v2(&self.next_request()).await,
        }?;
        self.absorb(page, warn);
        if !self.done {
            let (client, req) = (client.clone(), self.next_request());
            self.ahead = Some(tokio::spawn(
                async move { client.list_objects_v2(&req).await },
            ));
        }
        Ok(())
    }

    fn next_request(&self) -> ListRequest {
        ListRequest {
            prefix: self.prefix.clone(),
            delimiter: Some("/".to_string()),
            continuation_token: self.token.clone(),
            start_after: None,
            max_keys: None,
        }
    }

    /// Merge one page into the entries (separate from the request so it can be unit-tested).
    pub fn absorb(&mut self, page: ListPage, warn: &dyn ListingWarnings) {
        for raw in &page.skipped_keys {
            warn.skipped(
                &String::from_utf8_lossy(raw),
                "key is not valid UTF-8 once URL-decoded",
            );
        }
        let truncated = page.next_continuation_token.is_some();
        // The largest key this page reached: later pages only hold keys after it.
        let last_key = page
            .objects
            .last()
            .map(|o| o.key.as_str())
            .into_iter()
            .chain(page.common_prefixes.last().map(String::as_str))
            .max()
            .unwrap_or("")
            .to_string();

        let mut page_items: Vec<(String, DirItem)> = Vec::new();
        // sizes of this page's files: an empty object shadowed by a directory of its name is
        // an older form of directory object (s3fs's `dir`), not worth a warning
        let mut sizes: HashMap<String, u64> = HashMap::default();
        let mut empty_twins: HashSet<String> = HashSet::default();
        for cp in &page.common_prefixes {
            let Some(rest) = cp.strip_prefix(self.prefix.as_str()) else {
                continue;
            };
            let name = rest.strip_suffix('/').unwrap_or(rest);
            if let Some(reason) = invalid_name_reason(name) {
                warn.skipped(cp, reason);
                continue;
            }
            page_items.push((
                cp.clone(),
                DirItem {
                    name: name.to_string(),
                    kind: FileKind::Directory,
                    listed: Some(ListedChild::DIR),
                },
            ));
        }
        for obj in &page.objects {
            let Some(name) = obj.key.strip_prefix(self.prefix.as_str()) else {
                continue;
            };
            if name.is_empty() {
                continue; // the directory's own marker
            }
            if is_zeros_object(name) {
                continue; // a mount's zeros object, there while an upload lasts
            }
            if let Some(reason) = invalid_name_reason(name) {
                warn.skipped(&obj.key, reason);
                continue;
            }
            // `name_$folder$`: the directory `name`, in an older form
            if let Some(dir) = name.strip_suffix(FOLDER_SUFFIX).filter(|d| !d.is_empty()) {
                page_items.push((
                    obj.key.clone(),
                    DirItem {
                        name: dir.to_string(),
                        kind: FileKind::Directory,
                        listed: Some(ListedChild::Directory {
                            old_object: OldDirObject::At(obj.key.clone()),
                        }),
                    },
                ));
                continue;
            }
            page_items.push((
                obj.key.clone(),
                DirItem {
                    name: name.to_string(),
                    kind: FileKind::File,
                    listed: Some(ListedChild::File {
                        size: obj.size,
                        etag: obj.etag.clone(),
                        modified: obj.last_modified,
                    }),
                },
            ));
            sizes.insert(name.to_string(), obj.size);
        }
        page_items.sort_by(|a, b| a.0.cmp(&b.0));
        // Directories first: `a` sorts before `a/`, and the directory must win.
        for (_, item) in &page_items {
            if item.kind == FileKind::Directory {
                self.dirs_seen.insert(item.name.clone());
            }
        }

        for (key, item) in page_items {
            match item.kind {
                FileKind::Directory => {
                    let mut item = item;
                    let shadowed = self.deferred.remove(&item.name);
                    let pos = self.emitted().get(&item.name).copied();
                    let shadowed = shadowed.or_else(|| {
                        pos.map(|p| self.items[p].clone())
                            .filter(|i| i.kind != FileKind::Directory)
                    });
                    if empty_twins.remove(&item.name) {
                        item.note_old_object(OldDirObject::Unknown);
                    }
                    if let Some(file) = &shadowed {
                        if is_empty_file(file) {
                            item.note_old_object(OldDirObject::Unknown);
                        } else {
                            warn.skipped(
                                &format!("{}{}", self.prefix, item.name),
                                "shadowed by a directory of the same name",
                            );
                        }
                    }
                    match pos {
                        // the same directory again (its prefix and its `_$folder$`)
                        Some(p) if self.items[p].kind == FileKind::Directory => {
                            if let Some(ListedChild::Directory { old_object }) = item.listed {
                                Arc::make_mut(&mut self.items)[p].note_old_object(old_object);
                            }
                        }
                        // a file of this name went out earlier: the directory replaces it
                        Some(p) => {
                            Arc::make_mut(&mut self.items)[p] = item;
                            self.replaced.push(p);
                        }
                        None => self.emit(item),
                    }
                }
                _ => {
                    if self.dirs_seen.contains(&item.name) {
                        if sizes.get(&item.name) == Some(&0) {
                            // an empty object beside a directory: maybe its older form
                            match self.emitted().get(&item.name).copied() {
                                Some(p) => Arc::make_mut(&mut self.items)[p]
                                    .note_old_object(OldDirObject::Unknown),
                                // its directory comes next (`a` sorts before `a/`)
                                None => {
                                    empty_twins.insert(item.name.clone());
                                }
                            }
                        } else {
                            warn.skipped(&key, "shadowed by a directory of the same name");
                        }
                        continue;
                    }
                    let twin = format!("{key}/");
                    if truncated && twin.as_str() > last_key.as_str() {
                        self.deferred.insert(item.name.clone(), item);
                    } else {
                        self.emit(item);
                    }
                }
            }
        }
        // Deferred files that the listing has now passed can no longer be shadowed.
        let passed: Vec<String> = self
            .deferred
            .keys()
            .filter(|name| !truncated || format!("{}{}/", self.prefix, name) <= last_key)
            .cloned()
            .collect();
        for name in passed {
            if let Some(item) = self.deferred.remove(&name) {
                self.emit(item);
            }
        }
        self.token = page.next_continuation_token;
        if self.token.is_none() {
            self.done = true;
        }
    }
}

impl DirItem {
    /// A directory entry learns of an older directory object standing for it (a known key
    /// wins over a maybe).
    fn note_old_object(&mut self, found: OldDirObject) {
        if let Some(ListedChild::Directory { old_object }) = &mut self.listed {
            if !matches!(old_object, OldDirObject::At(_)) && found != OldDirObject::Absent {
                *old_object = found;
            }
        }
    }
}

fn is_empty_file(item: &DirItem) -> bool {
    matches!(item.listed, Some(ListedChild::File { size: 0, .. }))
}

/// The entries of a cached listing, in name order.
pub fn sorted_items(children: &HashMap<String, ListedChild>) -> Vec<DirItem> {
    let mut names: Vec<&String> = children.keys().collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let listed = children[name].clone();
            let kind = match listed {
                ListedChild::Directory { .. } => FileKind::Directory,
                ListedChild::File { .. } => FileKind::File,
            };
            DirItem {
                name: name.clone(),
                kind,
                listed: Some(listed),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s3::ListedObject;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<(String, String)>>);
    impl ListingWarnings for Recorder {
        fn skipped(&self, key: &str, reason: &str) {
            self.0
                .lock()
                .unwrap()
                .push((key.to_string(), reason.to_string()));
        }
    }

    fn obj(key: &str) -> ListedObject {
        ListedObject {
            key: key.to_string(),
            size: 1,
            etag: None,
            last_modified: None,
            storage_class: None,
        }
    }

    fn page(objs: &[&str], prefixes: &[&str], more: bool) -> ListPage {
        ListPage {
            objects: objs.iter().map(|k| obj(k)).collect(),
            common_prefixes: prefixes.iter().map(|p| p.to_string()).collect(),
            next_continuation_token: more.then(|| "t".to_string()),
            skipped_keys: vec![],
        }
    }

    fn names(s: &DirStream) -> Vec<String> {
        s.items().iter().map(|i| i.name.clone()).collect()
    }

    fn old_object_of(s: &DirStream, name: &str) -> Option<OldDirObject> {
        s.items()
            .iter()
            .find(|i| i.name == name)
            .and_then(|i| match &i.listed {
                Some(ListedChild::Directory { old_object }) => Some(old_object.clone()),
                _ => None,
            })
    }

    #[test]
    fn folder_objects_and_empty_twins_mark_their_directory() {
        let w = Recorder::default();
        let mut s = DirStream::new("p/");
        let mut first = page(
            &["p/bare", "p/f_$folder$", "p/full"],
            &["p/bare/", "p/full/"],
            true,
        );
        first.objects[0].size = 0;
        s.absorb(first, &w);
        // `x_$folder$` on a later page than `x/`
        s.absorb(page(&["p/full_$folder$"], &[], false), &w);
        assert_eq!(names(&s), ["bare", "f", "full"]);
        assert!(s.items().iter().all(|i| i.kind == FileKind::Directory));
        assert_eq!(old_object_of(&s, "bare"), Some(OldDirObject::Unknown));
        assert_eq!(
            old_object_of(&s, "f"),
            Some(OldDirObject::At("p/f_$folder$".into()))
        );
        assert_eq!(
            old_object_of(&s, "full"),
            Some(OldDirObject::At("p/full_$folder$".into()))
        );
        // the non-empty `p/full` is shadowed (warned), the empty `p/bare` is not
        let warned = w.0.lock().unwrap().clone();
        assert_eq!(warned.len(), 1, "{warned:?}");
        assert!(warned[0].0.ends_with("p/full"), "{warned:?}");
    }

    #[test]
    fn directory_wins_over_file_across_pages() {
        let w = Recorder::default();
        let mut s = DirStream::new("p/");
        s.absorb(page(&["p/a", "p/a.txt"], &[], true), &w);
        // both are held back: `p/a/` or `p/a.txt/` could still come
        assert!(names(&s).is_empty());
        s.absorb(page(&["p/b"], &["p/a/"], false), &w);
        assert_eq!(names(&s), vec!["a", "b", "a.txt"]);
        assert_eq!(s.items()[0].kind, FileKind::Directory);
        assert_eq!(w.0.lock().unwrap().len(), 1);
        assert!(s.is_done());
    }

    #[test]
    fn directory_wins_within_one_page() {
        let w = Recorder::default();
        let mut s = DirStream::new("");
        s.absorb(page(&["a", "a.txt"], &["a/"], false), &w);
        assert_eq!(names(&s), vec!["a.txt", "a"]);
        assert_eq!(s.items()[1].kind, FileKind::Directory);
        assert_eq!(w.0.lock().unwrap().len(), 1);
    }

    #[test]
    fn deferred_file_is_released_when_passed() {
        let w = Recorder::default();
        let mut s = DirStream::new("");
        s.absorb(page(&["a"], &[], true), &w);
        assert!(names(&s).is_empty());
        s.absorb(page(&["b"], &[], true), &w);
        assert_eq!(names(&s), vec!["a"]);
        s.absorb(page(&[], &[], false), &w);
        assert_eq!(names(&s), vec!["a", "b"]);
        assert!(w.0.lock().unwrap().is_empty());
    }

    #[test]
    fn bad_names_are_skipped_with_a_warning() {
        let w = Recorder::default();
        let mut s = DirStream::new("d/");
        let long = format!("d/{}", "x".repeat(256));
        s.absorb(
            page(
                &["d/", "d/ok", "d/.", "d/..", long.as_str()],
                &["d//", "d/../"],
                false,
            ),
            &w,
        );
        assert_eq!(names(&s), vec!["ok"]);
        assert_eq!(w.0.lock().unwrap().len(), 5);
    }

    #[test]
    fn zeros_objects_are_left_out_without_a_warning() {
        let w = Recorder::default();
        let mut s = DirStream::new("p/");
        s.absorb(
            page(&["p/.bucketfs-zeros-0123456789abcdef", "p/f"], &[], false),
            &w,
        );
        assert_eq!(names(&s), vec!["f"]);
        assert!(w.0.lock().unwrap().is_empty());
    }

    #[test]
    fn snapshot_round_trip_and_local_entries() {
        let w = Recorder::default();
        let mut s = DirStream::new("");
        s.absorb(page(&["f"], &["d/"], false), &w);
        s.add_local("new", FileKind::File);
        s.add_local("f", FileKind::File);
        assert_eq!(names(&s), vec!["d", "f", "new"]);
        let snap = s.snapshot();
        assert_eq!(snap.len(), 2);
        let again = DirStream::from_snapshot("", &snap);
        assert_eq!(names(&again), vec!["d", "f"]);
    }
}

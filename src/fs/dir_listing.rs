//! Directory listings: paged ListObjectsV2 turned into directory entries, with stable offsets.
//!
//! A key `a` and keys under `a/` may both exist; the directory wins and the file is shadowed.
//! Since `a` sorts before `a.txt` and both before `a/`, a file whose directory twin could still
//! come on a later page is held back until the listing has passed `a/`.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::sync::Arc;

// a fast hasher with a random seed per map: keys come from the bucket
use foldhash::{HashMap, HashSet};

use super::attr::FileKind;
use super::inode::ListedChild;
use super::old_dirs::{OldDirObject, FOLDER_SUFFIX};
use super::zero_parts::is_zeros_object;
use crate::s3::xml::{parse_list_objects_v2, parse_list_objects_v2_names, peek_continuation_token};
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
    /// built when a name is first looked for (a directory listed, a local entry added): a
    /// listing of files only needs none, its keys being distinct.
    emitted: Option<NameIndex>,
    deferred: BTreeMap<String, DirItem>,
    dirs_seen: HashSet<String>,
    /// The pages after this one, fetched and parsed by a task while the reader goes through
    /// this one (see [`PageFeed`]).
    ahead: Option<PageFeed>,
    /// Places (in the whole listing) of files a directory replaced since `take_replaced` was last asked.
    replaced: Vec<usize>,
    /// Entries past this many keep no ETag: a listing that long is neither cached nor shown
    /// to lookups (the listing cache's bound), so only readdir reads them.
    details_for: usize,
    /// Place in the whole listing of `items[0]`: the entries before it were dropped behind the
    /// reader ([`DirStream::forget_before`]).
    base: usize,
    /// A listing longer than this many entries keeps only this many behind its reader, plus
    /// `keep_behind` (`usize::MAX`: all of them).
    window: usize,
    keep_behind: usize,
}

/// Entries a windowed listing keeps just behind its reader: the kernel asks again from the
/// middle of the last reply when the caller's buffer took only part of it (a reply of 1 MiB
/// holds at most 32,768 entries).
pub const KEEP_BEHIND: usize = 32_768;

/// Pages parsed ahead that a listing's reader has not taken yet, at first; the reader's k-th
/// page lets k wait, up to [`MAX_PAGES_AHEAD`].
const PAGES_AHEAD: usize = 2;

/// Pages parsed ahead at most: a reader that takes a directory in batches (fts, under `find`,
/// `du`, `chmod -R`, keeps up to 100,000 entries, then sorts and prints them before it reads
/// on) leaves the walk going meanwhile (~50 ms of pages on the test server), at ~50 KB a page.
const MAX_PAGES_AHEAD: usize = 32;

/// How many parsed pages may wait for a reader that has taken `taken` pages: as many as it
/// took (a reader that stops early wastes no more than it read), from [`PAGES_AHEAD`] up to
/// [`MAX_PAGES_AHEAD`].
fn pages_ahead(taken: usize) -> usize {
    taken.clamp(PAGES_AHEAD, MAX_PAGES_AHEAD)
}

/// A task walking a listing's pages ahead of its reader: it asks for page k+1 as soon as page
/// k's continuation token is read ([`peek_continuation_token`]), then parses page k while the
/// server makes k+1, so the server's time, the parsing and the reader's work overlap. At most
/// [`pages_ahead`] parsed pages wait (a reader that stops early costs that many pages more,
/// and one in flight; a walk of N pages waits for about one request, not N). Stopped when
/// dropped.
#[derive(Debug)]
struct PageFeed {
    pages: tokio::sync::mpsc::Receiver<Result<ListPage, S3Error>>,
    /// Pages the reader has taken, and its call to the task when it takes one.
    taken: Arc<Taken>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Debug, Default)]
struct Taken {
    pages: std::sync::atomic::AtomicUsize,
    one_more: tokio::sync::Notify,
}

impl Taken {
    fn count(&self) -> usize {
        self.pages.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Until fewer than [`pages_ahead`] of the `given` pages wait for the reader.
    async fn room(&self, given: usize) {
        while given - self.count().min(given) >= pages_ahead(self.count()) {
            // a page taken after the check leaves its permit: not missed
            self.one_more.notified().await;
        }
    }
}

impl Drop for PageFeed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl PageFeed {
    async fn recv(&mut self) -> Option<Result<ListPage, S3Error>> {
        let page = self.pages.recv().await;
        self.taken
            .pages
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        self.taken.one_more.notify_one();
        page
    }
}

/// A request in flight, cancelled if dropped unawaited.
struct InFlight(tokio::task::JoinHandle<Result<bytes::Bytes, S3Error>>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl InFlight {
    fn send(client: &S3Client, req: &ListRequest) -> InFlight {
        let (client, req) = (client.clone(), req.clone());
        InFlight(tokio::spawn(async move {
            client.list_objects_v2_body(&req).await
        }))
    }

    async fn body(mut self) -> Result<bytes::Bytes, S3Error> {
        (&mut self.0)
            .await
            .map_err(|e| S3Error::InvalidResponse(format!("listing request lost: {e}")))?
    }
}

impl PageFeed {
    /// Without `details`, pages are parsed without their ETags and times.
    fn start(client: &S3Client, first: ListRequest, details: bool) -> PageFeed {
        let (tx, pages) = tokio::sync::mpsc::channel(MAX_PAGES_AHEAD);
        let taken = Arc::new(Taken::default());
        let reader = taken.clone();
        let client = client.clone();
        let task = tokio::spawn(async move {
            let mut req = first;
            let mut given = 0usize;
            let mut next = Some(InFlight::send(&client, &req));
            while let Some(flight) = next.take() {
                let body = match flight.body().await {
                    Ok(b) => b,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                let peeked = peek_continuation_token(&body);
                if let Some(token) = &peeked {
                    req.continuation_token = Some(token.clone());
                    next = Some(InFlight::send(&client, &req));
                    // a task spawned here waits in this worker's next-task slot, which no
                    // other worker takes: without a yield the request would go out only
                    // once this page is parsed, and the parse would not overlap the server
                    tokio::task::yield_now().await;
                }
                let page = match details {
                    true => parse_list_objects_v2(&body),
                    false => parse_list_objects_v2_names(&body),
                };
                match &page {
                    // the guess was wrong: ask for the page the listing names
                    Ok(p) if p.next_continuation_token != peeked => {
                        next = p.next_continuation_token.as_ref().map(|token| {
                            req.continuation_token = Some(token.clone());
                            InFlight::send(&client, &req)
                        });
                    }
                    Ok(_) => {}
                    Err(_) => next = None,
                }
                reader.room(given).await;
                if tx.send(page).await.is_err() {
                    return; // the reader is gone
                }
                given += 1;
            }
        });
        PageFeed { pages, taken, task }
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
            emitted: None,
            deferred: BTreeMap::new(),
            dirs_seen: HashSet::default(),
            ahead: None,
            replaced: Vec::new(),
            details_for: usize::MAX,
            base: 0,
            window: usize::MAX,
            keep_behind: KEEP_BEHIND,
        }
    }

    /// Once the listing has more than `n` entries, keep at most `n` plus `keep_behind` behind
    /// the reader: a directory of any size costs an open handle bounded memory. A seek back
    /// before the entries kept lists again from the start ([`DirStream::restart`]).
    pub fn windowed(mut self, n: usize, keep_behind: usize) -> DirStream {
        self.window = n.max(1);
        self.keep_behind = keep_behind;
        self
    }

    /// The same listing from its first page again, keeping its settings (a seek back past the
    /// entries a windowed listing kept).
    pub fn restart(&mut self) {
        let fresh = DirStream::new(&self.prefix)
            .details_for(self.details_for)
            .windowed(self.window, self.keep_behind);
        *self = fresh;
    }

    /// Place in the whole listing of the first entry still held.
    pub fn base(&self) -> usize {
        self.base
    }

    /// Entries emitted so far, including those a windowed listing dropped.
    pub fn count(&self) -> usize {
        self.base + self.items.len()
    }

    /// The reader has gone past entry `index`: a windowed listing longer than its window drops
    /// what lies more than `keep_behind` entries behind, in batches of at least a window
    /// (the name index drops their places, reading no name). Names
    /// dropped are no longer matched: a directory listed after its file twin had been dropped
    /// (`name_$folder$` far after `name`) shows as a second entry of that name.
    pub fn forget_before(&mut self, index: usize) {
        if self.window == usize::MAX || self.count() <= self.window {
            return;
        }
        let drop = index
            .saturating_sub(self.keep_behind)
            .saturating_sub(self.base)
            .min(self.items.len());
        if drop < self.window {
            return;
        }
        Arc::make_mut(&mut self.items).drain(..drop);
        self.base += drop;
        if let Some(index) = &mut self.emitted {
            index.forget_before(self.base);
        }
        // a file can only be shadowed by a directory of the same page or a later one
        self.dirs_seen.clear();
    }

    /// Keep the listing's details (ETags, times) of the first `n` entries only: the rest of a
    /// directory too large for the listing cache cost the handle that much less memory.
    pub fn details_for(mut self, n: usize) -> DirStream {
        self.details_for = n;
        self
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

    /// Places (in the whole listing) whose file a directory replaced since the last call.
    pub fn take_replaced(&mut self) -> Vec<usize> {
        std::mem::take(&mut self.replaced)
    }

    /// The entries, shared (for the directory's cached listing).
    pub fn shared_items(&self) -> Arc<Vec<DirItem>> {
        self.items.clone()
    }

    /// The place in `items` of the entry named `name`, if one was emitted.
    fn position(&mut self, name: &str) -> Option<usize> {
        let (items, base) = (&self.items, self.base);
        self.emitted
            .get_or_insert_with(|| NameIndex::build(items, base))
            .find(items, base, name)
    }

    pub fn items(&self) -> &[DirItem] {
        &self.items
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Add entries that exist only locally (files being written), after the listing.
    pub fn add_local(&mut self, name: &str, kind: FileKind) {
        if self.position(name).is_none() {
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

    fn emit(&mut self, mut item: DirItem) {
        if self.count() >= self.details_for {
            if let Some(ListedChild::File { etag, modified, .. }) = &mut item.listed {
                *etag = None;
                *modified = None;
            }
        }
        let (items, base) = (&self.items, self.base);
        // no index yet: nothing was looked for, so this is a file of the listing, whose name
        // no entry has (a key is listed once); a directory or a local entry looked first
        let fresh = match &mut self.emitted {
            Some(index) => index.insert(items, base, &item.name, base + items.len()),
            None => true,
        };
        if fresh {
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
        if self.ahead.is_none() {
            // a listing that keeps no details from here on parses none
            let details = self.count() < self.details_for;
            self.ahead = Some(PageFeed::start(client, self.next_request(), details));
        }
        let Some(feed) = self.ahead.as_mut() else {
            return Ok(());
        };
        let page = match feed.recv().await {
            Some(page) => page,
            None => Err(S3Error::InvalidResponse("listing walk stopped".into())),
        };
        let page = match page {
            Ok(page) => page,
            Err(e) => {
                // asked again from this page by the next call
                self.ahead = None;
                return Err(e);
            }
        };
        self.absorb(page, warn);
        if self.done {
            self.ahead = None;
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

        let prefix_len = self.prefix.len();
        // This page's entries in key order, each with what its key has after the name (a
        // prefix's `/`, `_$folder$`): keys are the prefix, the name and that suffix. A name
        // reuses its key's allocation.
        let mut page_items: Vec<(&'static str, DirItem)> =
            Vec::with_capacity(page.objects.len() + page.common_prefixes.len());
        for cp in page.common_prefixes {
            let Some(rest) = cp.strip_prefix(self.prefix.as_str()) else {
                continue;
            };
            let (name_len, suffix) = match rest.strip_suffix('/') {
                Some(name) => (name.len(), "/"),
                None => (rest.len(), ""),
            };
            if let Some(reason) = invalid_name_reason(&rest[..name_len]) {
                warn.skipped(&cp, reason);
                continue;
            }
            let mut name = cp;
            name.truncate(prefix_len + name_len);
            name.drain(..prefix_len);
            page_items.push((
                suffix,
                DirItem {
                    name,
                    kind: FileKind::Directory,
                    listed: Some(ListedChild::DIR),
                },
            ));
        }
        for obj in page.objects {
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
                    FOLDER_SUFFIX,
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
            let mut name = obj.key;
            name.drain(..prefix_len);
            page_items.push((
                "",
                DirItem {
                    name,
                    kind: FileKind::File,
                    listed: Some(ListedChild::File {
                        size: obj.size,
                        etag: obj.etag,
                        modified: obj.last_modified,
                    }),
                },
            ));
        }
        // the objects and the prefixes each come sorted: two runs, merged in linear time
        page_items.sort_by(|a, b| cmp_joined(&a.1.name, a.0, &b.1.name, b.0));
        // Directories first: `a` sorts before `a/`, and the directory must win.
        for (_, item) in &page_items {
            if item.kind == FileKind::Directory {
                self.dirs_seen.insert(item.name.clone());
            }
        }
        // an empty object shadowed by a directory of its name is an older form of directory
        // object (s3fs's `dir`), not worth a warning
        let mut empty_twins: HashSet<String> = HashSet::default();

        for (_, item) in page_items {
            match item.kind {
                FileKind::Directory => {
                    let mut item = item;
                    let shadowed = self.deferred.remove(&item.name);
                    let pos = self.position(&item.name);
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
                            self.replaced.push(self.base + p);
                        }
                        None => self.emit(item),
                    }
                }
                _ => {
                    if self.dirs_seen.contains(&item.name) {
                        if is_empty_file(&item) {
                            // an empty object beside a directory: maybe its older form
                            match self.position(&item.name) {
                                Some(p) => Arc::make_mut(&mut self.items)[p]
                                    .note_old_object(OldDirObject::Unknown),
                                // its directory comes next (`a` sorts before `a/`)
                                None => {
                                    empty_twins.insert(item.name.clone());
                                }
                            }
                        } else {
                            warn.skipped(
                                &format!("{}{}", self.prefix, item.name),
                                "shadowed by a directory of the same name",
                            );
                        }
                        continue;
                    }
                    // `name/` could still come on a later page
                    if truncated && twin_after(&self.prefix, &item.name, &last_key) {
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
            .filter(|name| !truncated || !twin_after(&self.prefix, name, &last_key))
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

/// Order of the keys `a` + `a_suffix` and `b` + `b_suffix` (names of one directory and what
/// their keys have after them), without building them.
fn cmp_joined(a: &str, a_suffix: &str, b: &str, b_suffix: &str) -> Ordering {
    let n = a.len().min(b.len());
    match a.as_bytes()[..n].cmp(&b.as_bytes()[..n]) {
        Ordering::Equal => {}
        o => return o,
    }
    let a_rest = a.as_bytes()[n..].iter().chain(a_suffix.as_bytes());
    let b_rest = b.as_bytes()[n..].iter().chain(b_suffix.as_bytes());
    a_rest.cmp(b_rest)
}

/// Whether the key `prefix` + `name` + `/` (a directory twin of the file `name`) sorts after
/// `last`, without building it.
fn twin_after(prefix: &str, name: &str, last: &str) -> bool {
    let mut rest = last.as_bytes();
    for part in [prefix.as_bytes(), name.as_bytes(), b"/"] {
        let n = part.len().min(rest.len());
        match part[..n].cmp(&rest[..n]) {
            Ordering::Less => return false,
            Ordering::Greater => return true,
            Ordering::Equal => {}
        }
        if n < part.len() {
            return true; // `last` is a proper prefix of the twin
        }
        rest = &rest[n..];
    }
    false // equal, or a prefix of `last`
}

/// Places in a listing's entries by name: a table of positions (in the whole listing) hashed
/// by the name they point at, the names themselves staying in the entries (a set of copies
/// cost a name's allocation and ~60 bytes per entry). Each position keeps 32 bits of its
/// name's hash: the table grows, and drops the positions a windowed listing left behind,
/// without reading a name again, and a probe compares names only when those bits match.
#[derive(Default)]
struct NameIndex {
    /// (place in the whole listing, the name's hash)
    table: hashbrown::HashTable<(u32, u32)>,
    hasher: foldhash::fast::RandomState,
}

impl std::fmt::Debug for NameIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NameIndex({} names)", self.table.len())
    }
}

/// The table's hash of a position whose name hashed to `h` (both halves from the 32 bits
/// kept: the table takes its bucket from the low bits and its tag from the top ones).
fn spread(h: u32) -> u64 {
    (u64::from(h) << 32) | u64::from(h)
}

impl NameIndex {
    /// The index of `items`, the first of them at `base` in the whole listing.
    fn build(items: &[DirItem], base: usize) -> NameIndex {
        let mut index = NameIndex::default();
        index.table.reserve(items.len(), |&(_, h)| spread(h));
        for (at, item) in items.iter().enumerate() {
            index.insert(items, base, &item.name, base + at);
        }
        index
    }

    fn hash(&self, name: &str) -> u32 {
        let h = self.hasher.hash_one(name);
        (h ^ (h >> 32)) as u32
    }

    /// The place in `items` (the first of them at `base`) of the entry named `name`.
    fn find(&self, items: &[DirItem], base: usize, name: &str) -> Option<usize> {
        let h = self.hash(name);
        self.table
            .find(spread(h), |&(at, hash)| {
                hash == h && items[at as usize - base].name == name
            })
            .map(|&(at, _)| at as usize - base)
    }

    /// Record `at` (in the whole listing) as the place of `name` (`items[at - base]` may not
    /// exist yet); false if the name has a place already.
    fn insert(&mut self, items: &[DirItem], base: usize, name: &str, at: usize) -> bool {
        let h = self.hash(name);
        match self.table.entry(
            spread(h),
            |&(i, hash)| hash == h && items[i as usize - base].name == name,
            |&(_, hash)| spread(hash),
        ) {
            hashbrown::hash_table::Entry::Occupied(_) => false,
            hashbrown::hash_table::Entry::Vacant(v) => {
                v.insert((at as u32, h));
                true
            }
        }
    }

    /// Forget the places before `base` (entries dropped behind a windowed listing's reader).
    fn forget_before(&mut self, base: usize) {
        self.table.retain(|&mut (at, _)| at as usize >= base);
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
    fn an_entry_stays_small() {
        // what an open handle holds per entry of a big directory (docs/PERFORMANCE.md): the
        // entry, its name's and ETag's heap blocks, ~1.1 x 5 bytes of name index
        let size = std::mem::size_of::<DirItem>();
        println!("DirItem: {size} bytes");
        assert!(size <= 80, "DirItem grew to {size} bytes");
    }

    #[test]
    fn entries_past_the_cache_bound_keep_no_etag() {
        let mut listed = page(&["p/a", "p/b", "p/c"], &["p/d/"], false);
        for o in &mut listed.objects {
            o.etag = Some("\"e\"".to_string());
        }
        let mut s = DirStream::new("p/").details_for(2);
        s.absorb(listed.clone(), &Recorder::default());
        let etags: Vec<Option<&str>> = s
            .items()
            .iter()
            .map(|i| match &i.listed {
                Some(ListedChild::File { etag, .. }) => etag.as_deref(),
                _ => Some("dir"),
            })
            .collect();
        assert_eq!(etags, [Some("\"e\""), Some("\"e\""), None, Some("dir")]);
        // a stream that keeps them all (the default)
        let mut s = DirStream::new("p/");
        s.absorb(listed, &Recorder::default());
        assert!(s.items().iter().all(|i| matches!(
            &i.listed,
            Some(ListedChild::File { etag: Some(_), .. } | ListedChild::Directory { .. })
        )));
    }

    #[test]
    fn a_windowed_listing_keeps_a_bounded_tail_behind_its_reader() {
        let keys: Vec<String> = (0..50).map(|i| format!("p/f{i:03}")).collect();
        let page_of = |from: usize, more: bool| {
            let ks: Vec<&str> = keys[from..from + 10].iter().map(String::as_str).collect();
            page(&ks, &[], more)
        };
        let mut s = DirStream::new("p/").windowed(8, 4);
        let w = Recorder::default();
        s.absorb(page_of(0, true), &w);
        // (the last file of a page waits for the next one, in case `name/` follows)
        // not longer than its window yet, or not far enough: nothing dropped
        s.forget_before(9);
        assert_eq!((s.base(), s.items().len()), (0, 9));
        s.absorb(page_of(10, true), &w);
        s.forget_before(11);
        assert_eq!(s.base(), 0, "a batch is at least a window");
        // 12 behind the reader at 16, 4 of them kept
        s.forget_before(16);
        assert_eq!((s.base(), s.count()), (12, 19));
        let held = names(&s);
        assert!(!held.contains(&"f000".to_string()) && held.contains(&"f015".to_string()));
        // the names kept are still matched (the index dropped only the places left behind)
        s.add_local("f015", FileKind::File);
        assert_eq!(s.count(), 19, "f015 once");
        // read to the end: at most window + keep_behind + a page held
        for from in [20, 30, 40] {
            s.absorb(page_of(from, from < 40), &w);
            s.forget_before(s.count());
            assert!(s.items().len() <= 8 + 4 + 10, "{} held", s.items().len());
        }
        assert!(s.is_done());
        assert_eq!(s.count(), 50);
        assert!(names(&s).contains(&"f049".to_string()));
        // a listing that is not windowed keeps everything
        let mut all = DirStream::new("p/");
        all.absorb(page_of(0, true), &w);
        all.absorb(page_of(10, false), &w);
        all.forget_before(20);
        assert_eq!((all.base(), all.items().len()), (0, 20));
        // a restart starts over with the same settings
        s.restart();
        assert_eq!((s.base(), s.count(), s.is_done()), (0, 0, false));
        s.absorb(page_of(0, true), &w);
        s.absorb(page_of(10, true), &w);
        s.forget_before(16);
        assert_eq!(s.base(), 12);
    }

    #[test]
    fn the_name_index_follows_a_window_across_drops() {
        // every entry held is found at its place, none dropped is, and the index holds
        // exactly the entries held: after each page and each drop
        let keys: Vec<String> = (0..3_000).map(|i| format!("p/f{i:05}")).collect();
        let mut s = DirStream::new("p/").windowed(500, 200);
        let w = Recorder::default();
        // every name emitted, in order (a page's last file comes out after the next page's)
        let mut emitted: Vec<String> = Vec::new();
        for from in (0..3_000).step_by(250) {
            let ks: Vec<&str> = keys[from..from + 250].iter().map(String::as_str).collect();
            s.absorb(page(&ks, &[], from + 250 < 3_000), &w);
            let new = emitted.len() - s.base();
            emitted.extend(names(&s).into_iter().skip(new));
            s.forget_before(s.count());
            let held = names(&s);
            for (i, name) in held.iter().enumerate() {
                assert_eq!(s.position(name), Some(i), "{name} at {}", s.base() + i);
            }
            for gone in &emitted[..s.base()] {
                assert_eq!(s.position(gone), None, "{gone} was dropped");
            }
            let indexed = s.emitted.as_ref().map_or(0, |ix| ix.table.len());
            assert_eq!(indexed, held.len());
        }
        assert!(s.base() > 0, "the window dropped entries");
        // a listing of files only built its index when first asked (here, by the loop above);
        // one that is never asked builds none
        let mut files = DirStream::new("p/");
        let ks: Vec<&str> = keys[..300].iter().map(String::as_str).collect();
        files.absorb(page(&ks, &[], false), &w);
        assert!(files.emitted.is_none());
        assert_eq!(files.position("f00299"), Some(299));
        files.absorb(page(&[], &["p/f00299/"], false), &w);
        assert_eq!(files.count(), 300, "the directory replaced its file twin");
        assert_eq!(files.items()[299].kind, FileKind::Directory);
        assert_eq!(s.count(), 3_000);
        // a name dropped can be emitted again (the documented second entry); one held cannot
        let last = names(&s).pop().expect("held");
        s.add_local(&last, FileKind::File);
        assert_eq!(s.count(), 3_000);
        s.add_local("f00000", FileKind::File);
        assert_eq!(s.count(), 3_001);
        // a listing served from the cache indexes its entries when first asked
        let mut cached = DirStream::from_items("p/", s.shared_items());
        assert_eq!(cached.position("f00000"), Some(cached.items().len() - 1));
    }

    #[test]
    fn keys_compare_as_built_without_building_them() {
        let names = ["", "a", "a.txt", "a/", "a0", "ab", "b", "é", "a_$folder$"];
        let suffixes = ["", "/", FOLDER_SUFFIX];
        for a in names {
            for b in names {
                for sa in suffixes {
                    for sb in suffixes {
                        let want = format!("{a}{sa}").cmp(&format!("{b}{sb}"));
                        assert_eq!(cmp_joined(a, sa, b, sb), want, "{a}{sa} vs {b}{sb}");
                    }
                }
                for prefix in ["", "p/", "a"] {
                    let want = format!("{prefix}{a}/").as_str() > b;
                    assert_eq!(twin_after(prefix, a, b), want, "{prefix}{a}/ vs {b}");
                }
            }
        }
    }

    #[test]
    fn name_index_finds_each_name_and_refuses_a_second() {
        let w = Recorder::default();
        let mut s = DirStream::new("");
        let keys: Vec<String> = (0..5_000).map(|i| format!("k{i:05}")).collect();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        s.absorb(page(&keys, &[], false), &w);
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(s.position(k), Some(i));
        }
        assert_eq!(s.position("k05000"), None);
        s.add_local("k00042", FileKind::File);
        s.add_local("k05000", FileKind::File);
        assert_eq!(s.items().len(), 5_001);
        // a listing served from the cache builds its index when first needed
        let mut again = DirStream::from_items("", s.shared_items());
        assert_eq!(again.position("k04999"), Some(4_999));
        again.add_local("k00001", FileKind::File);
        assert_eq!(again.items().len(), 5_001);
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

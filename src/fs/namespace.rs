//! Names and attributes: lookup, getattr, readdir, mkdir, rmdir, unlink, symlink, setattr.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use super::attr::{Attr, FileKind};
use super::dir_listing::{invalid_name_reason, DirStream, ListingWarnings, NAME_MAX};
use super::error::{FsError, FsResult};
use super::file_io::Handle;
use super::inode::{DirSnapshot, ListedChild, PartialListing, ROOT_INO};
use super::object_meta::{Changed, StoredMeta};
use super::old_dirs::{is_old_dir_object, OldDirObject, FOLDER_SUFFIX};
use super::small_bodies::fetch_file_meta;
use super::{Caller, DirEntryOut, Filesystem, SetAttr};
use crate::s3::{ListRequest, ObjectMeta};

struct FsWarnings<'a>(&'a Filesystem);
impl ListingWarnings for FsWarnings<'_> {
    fn skipped(&self, key: &str, reason: &str) {
        self.0.skipped.warn(key, reason);
    }
}

/// What a lookup found in S3.
enum Found {
    /// A file; `from_listing`: as its directory's listing describes it (`--stat-from-listing`),
    /// its other metadata not fetched.
    File {
        meta: ObjectMeta,
        from_listing: bool,
    },
    Dir {
        marker: Option<ObjectMeta>,
        /// An older form of directory object standing for it.
        old: OldDirObject,
    },
    /// An object `dir` (no slash) that says it is a directory: s3fs's older form (Content-Type
    /// `application/x-directory`, or `S_IFDIR` in its mode), empty, and no `dir/` marker: the
    /// directory's attributes are the object's.
    OldDirObject {
        meta: ObjectMeta,
    },
    Missing,
}

impl Found {
    /// What HEAD of `key` (a name without slash) found: a file, or an older directory object.
    fn object(meta: ObjectMeta) -> Found {
        if is_old_dir_object(&meta) {
            Found::OldDirObject { meta }
        } else {
            Found::File {
                meta,
                from_listing: false,
            }
        }
    }
}

/// S3 keys are at most 1024 bytes (UTF-8), prefix included.
pub(crate) const MAX_KEY_BYTES: usize = 1024;

/// ENAMETOOLONG for a key S3 would refuse (instead of the EIO its KeyTooLong error maps to).
pub(crate) fn check_key(key: &str) -> FsResult<()> {
    if key.len() > MAX_KEY_BYTES {
        return Err(FsError::new(
            libc::ENAMETOOLONG,
            "path longer than S3's 1024-byte key limit",
        ));
    }
    Ok(())
}

/// A name given by the kernel: too long is ENAMETOOLONG, otherwise impossible is EINVAL (the
/// rule is `invalid_name_reason`'s, which listings use to leave such keys out).
pub(crate) fn check_name(name: &str) -> FsResult<()> {
    match invalid_name_reason(name) {
        None => Ok(()),
        Some(reason) if name.len() > NAME_MAX => Err(FsError::new(libc::ENAMETOOLONG, reason)),
        Some(reason) => Err(FsError::new(libc::EINVAL, reason)),
    }
}

impl Filesystem {
    /// Key prefix of directory `ino` ("" or ending in `/`), or ENOTDIR/ENOENT.
    pub(crate) fn dir_key(&self, ino: u64) -> FsResult<String> {
        let t = self.inodes.lock();
        let n = t.get(ino).ok_or_else(FsError::not_found)?;
        if n.kind() != FileKind::Directory {
            return Err(FsError::new(libc::ENOTDIR, "not a directory"));
        }
        Ok(n.key.clone())
    }

    fn remember_missing(&self, parent: u64, name: &str) {
        self.inodes.remember_missing(parent, name);
    }

    pub(crate) fn forget_missing(&self, parent: u64, name: &str) {
        self.inodes.forget_missing(parent, name);
    }

    /// Record a child in its parent's snapshot (after create/mkdir) or remove it (unlink).
    pub(crate) fn update_snapshot(&self, parent: u64, name: &str, child: Option<ListedChild>) {
        self.touch_dir(parent);
        self.stat_ahead_forget(parent, name);
        let mut t = self.inodes.lock();
        if let Some(p) = t.get_mut(parent) {
            if let Some(pl) = &mut p.partial_listing {
                // (`order` keeps the name: stat-ahead skips names its children lack)
                pl.changed(name, child.clone());
            }
            if let Some(s) = &mut p.snapshot {
                s.set(name, child);
            }
        }
    }

    /// A directory's entries changed: its mtime and ctime become now (kept in memory; a
    /// directory's times are stored only when set explicitly).
    pub(crate) fn touch_dir(&self, dir: u64) {
        let now = SystemTime::now();
        if let Some(n) = self.inodes.lock().get_mut(dir) {
            n.attr.mtime = now;
            n.attr.ctime = now;
        }
    }

    /// Find `name` in directory `parent`. Costs nothing when the inode's attributes or the
    /// parent's listing are fresh; otherwise HEAD `key` and LIST `key/` at once.
    /// [`lookup`](Self::lookup) answered from memory, without waiting on anything but the
    /// inode lock: `Some` when the name is known with fresh attributes (or is a control
    /// file), `None` when the answer needs the async path. The FUSE adapter answers these on
    /// its own thread: `ls -l` and `find` of a cached tree then skip a hop through the runtime
    /// per entry.
    pub fn lookup_now(&self, parent: u64, name: &str) -> Option<Attr> {
        if let Some(attr) = self.control_lookup(parent, name) {
            return Some(attr);
        }
        let mut t = self.inodes.lock();
        let fresh = t
            .child(parent, name)
            .filter(|c| c.attr_fresh(Instant::now()))
            .map(|c| c.attr);
        let Some(attr) = fresh else {
            drop(t);
            return self.lookup_listed_now(parent, name);
        };
        t.inc_lookup(attr.ino);
        drop(t);
        self.counters.lookup_hit();
        Some(attr)
    }

    pub async fn lookup(&self, parent: u64, name: &str) -> FsResult<Attr> {
        if let Some(attr) = self.lookup_now(parent, name) {
            return Ok(attr);
        }
        check_name(name)?;
        if self.leftovers.hiding() {
            self.wait_for_hidden_change(parent, name).await?;
        }
        let now = Instant::now();
        // what is fetched from here on was asked for now (or, fetched ahead, then)
        let mut asked = now;
        let (parent_key, listed) = {
            let t = self.inodes.lock();
            let p = t.get(parent).ok_or_else(FsError::not_found)?;
            if p.kind() != FileKind::Directory {
                return Err(FsError::new(libc::ENOTDIR, "not a directory"));
            }
            let listed = p.listed_child(name, now).map(|c| c.cloned());
            (p.key.clone(), listed)
        };
        if listed.is_none() && self.inodes.known_missing(parent, name, now) {
            self.counters.lookup_hit();
            return Err(FsError::not_found());
        }
        let key = format!("{parent_key}{name}");
        check_key(&key)?;
        if matches!(listed, Some(None)) {
            self.counters.lookup_hit();
        } else {
            self.counters.lookup_miss();
        }
        // a listed entry needs only its HEAD; a walk through the listing fetches them ahead
        let from_listing = self.config.stat_from_listing;
        let ahead = match listed {
            Some(Some(ListedChild::File { size, .. })) if from_listing && size > 0 => None,
            Some(Some(_)) => self.stat_ahead(parent, name).map(|(head, at)| {
                asked = at;
                head
            }),
            _ => None,
        };
        let found = match listed {
            Some(None) => Found::Missing,
            Some(Some(ListedChild::Directory { old_object })) => {
                let marker = async {
                    match ahead_result(ahead).await {
                        Some(marker) => Ok(marker),
                        None => self.head_marker(&key).await,
                    }
                };
                if old_object == OldDirObject::Unknown {
                    // an empty object of its name was listed: its HEAD goes with the marker's
                    let (marker, bare) = tokio::join!(marker, self.client.head_object(&key));
                    let bare = match bare {
                        Ok(m) if is_old_dir_object(&m) => Some(m),
                        Ok(_) => None,
                        Err(e) if e.is_not_found() => None,
                        Err(e) => return Err(FsError::from_s3(&e, &key)),
                    };
                    match (marker?, bare) {
                        (None, Some(meta)) => Found::OldDirObject { meta },
                        (marker, bare) => Found::Dir {
                            marker,
                            old: match bare {
                                Some(_) => OldDirObject::At(key.clone()),
                                None => OldDirObject::Absent,
                            },
                        },
                    }
                } else {
                    Found::Dir {
                        marker: marker.await?,
                        old: old_object,
                    }
                }
            }
            // (an empty object may be an older form of directory object: it gets its HEAD)
            Some(Some(ListedChild::File {
                size,
                etag,
                modified,
            })) if from_listing && size > 0 => Found::File {
                meta: meta_from_listing(size, etag, modified),
                from_listing: true,
            },
            Some(Some(ListedChild::File { size, .. })) => match ahead_result(ahead).await {
                Some(Some(meta)) => Found::object(meta),
                Some(None) => Found::Missing,
                None => match fetch_file_meta(&self.client, &self.small_bodies, &key, Some(size))
                    .await
                {
                    Ok(meta) => Found::object(meta),
                    Err(e) if e.is_not_found() => Found::Missing,
                    Err(e) => return Err(FsError::from_s3(&e, &key)),
                },
            },
            None => {
                self.relist_if_due(parent);
                self.probe(&key).await?
            }
        };
        // nothing in the bucket, but a file being created in it keeps the directory
        let found = match found {
            Found::Missing if self.inodes.lock().holds_local_under(&format!("{key}/")) => {
                Found::Dir {
                    marker: None,
                    old: OldDirObject::Absent,
                }
            }
            f => f,
        };
        let deadline = self.attr_deadline();
        let attr = match found {
            Found::Missing => {
                self.remember_missing(parent, name);
                return Err(FsError::not_found());
            }
            Found::File { meta, from_listing } => {
                self.settle_file(parent, name, key, &meta, from_listing, asked)
            }
            Found::Dir { marker, old } => {
                let attr = match &marker {
                    Some(m) => Attr::from_meta(0, FileKind::Directory, m, &self.config),
                    None => Attr::new(0, FileKind::Directory, 0, &self.config, SystemTime::now()),
                };
                let mut t = self.inodes.lock();
                if let Some(attr) = t.changed_child_since(parent, name, asked) {
                    return Ok(attr);
                }
                let ino = t.upsert_child(
                    parent,
                    name,
                    format!("{key}/"),
                    attr,
                    None,
                    marker.is_some(),
                    deadline,
                );
                t.inc_lookup(ino);
                if let Some(m) = &marker {
                    remember_meta(t.get_mut(ino), m);
                }
                if let Some(n) = t.get_mut(ino) {
                    n.old_dir_object = old;
                }
                t.get(ino).map(|n| n.attr)
            }
            Found::OldDirObject { meta } => {
                // its attributes are the old object's; a change writes a `dir/` marker
                let attr = Attr::from_meta(0, FileKind::Directory, &meta, &self.config);
                let mut t = self.inodes.lock();
                if let Some(attr) = t.changed_child_since(parent, name, asked) {
                    return Ok(attr);
                }
                let ino =
                    t.upsert_child(parent, name, format!("{key}/"), attr, None, false, deadline);
                t.inc_lookup(ino);
                remember_meta(t.get_mut(ino), &meta);
                if let Some(n) = t.get_mut(ino) {
                    n.old_dir_object = OldDirObject::At(key.clone());
                }
                t.get(ino).map(|n| n.attr)
            }
        };
        attr.ok_or_else(FsError::not_found)
    }

    /// A file `name` of `parent` found with `meta` (from its HEAD or GET, or only from the
    /// listing, asked for at `asked`): its inode made or refreshed, one lookup counted; its
    /// attributes. A node this mount changed since keeps its own.
    fn settle_file(
        &self,
        parent: u64,
        name: &str,
        key: String,
        meta: &ObjectMeta,
        from_listing: bool,
        asked: Instant,
    ) -> Option<Attr> {
        let deadline = self.attr_deadline();
        let attr = Attr::from_meta(0, FileKind::File, meta, &self.config);
        let mut t = self.inodes.lock();
        if let Some(attr) = t.changed_child_since(parent, name, asked) {
            return Some(attr);
        }
        let ino = t.upsert_child(parent, name, key, attr, meta.etag.clone(), false, deadline);
        t.inc_lookup(ino);
        if !from_listing {
            remember_meta(t.get_mut(ino), meta);
        }
        if let Some(n) = t.get_mut(ino) {
            n.partial_meta = from_listing
                // what upsert_child refreshed (a node being written keeps its own view)
                && (n.partial_meta || (n.etag == meta.etag && !n.writing && !n.local_only));
        }
        t.get(ino).map(|n| n.attr)
    }

    /// A listed file whose attributes are at hand — from the listing itself
    /// (`--stat-from-listing`), or fetched ahead by stat-ahead (`ls -l` finds most entries so)
    /// — settled at once, without waiting on anything. `None` when that is not the case.
    /// After a restart, a change in place of `name` that the mount does not show (see
    /// `show_recovered`) is sent by recovery first: its lookup waits for that, rather than
    /// show the file as it was before the change (a walk right after a crash read the old
    /// bytes). What was fetched of the name before it landed is forgotten.
    async fn wait_for_hidden_change(&self, parent: u64, name: &str) -> FsResult<()> {
        let key = format!("{}{name}", self.dir_key(parent)?);
        if self
            .leftovers
            .wait_hidden(&key, self.config.recovery_wait)
            .await
        {
            self.stat_ahead_forget(parent, name);
            self.inodes.lock().drop_listing(parent);
            self.forget_missing(parent, name);
        }
        Ok(())
    }

    fn lookup_listed_now(&self, parent: u64, name: &str) -> Option<Attr> {
        let now = Instant::now();
        let (key, listed) = {
            let t = self.inodes.lock();
            let p = t.get(parent)?;
            let listed = match p.listed_child(name, now)?? {
                ListedChild::File {
                    size,
                    etag,
                    modified,
                } if self.config.stat_from_listing && *size > 0 => {
                    Some(meta_from_listing(*size, etag.clone(), *modified))
                }
                ListedChild::File { .. } => None,
                ListedChild::Directory { .. } => return None,
            };
            (format!("{}{name}", p.key), listed)
        };
        if check_name(name).is_err() || check_key(&key).is_err() || self.leftovers.hides(&key) {
            return None;
        }
        let (meta, from_listing, asked) = match listed {
            // (a listing of the directory after a change made here has it as made here)
            Some(meta) => (meta, true, now),
            // an empty object that is an older form of directory takes the slow way
            None => {
                let (meta, asked) =
                    self.stat_ahead_ready(parent, name, |m| !is_old_dir_object(m))?;
                (meta, false, asked)
            }
        };
        self.counters.lookup_miss();
        self.settle_file(parent, name, key, &meta, from_listing, asked)
    }

    /// HEAD of a directory marker `key/`: its metadata, or None if there is no marker.
    async fn head_marker(&self, key: &str) -> FsResult<Option<ObjectMeta>> {
        let marker = format!("{key}/");
        match self.client.head_object(&marker).await {
            Ok(m) => Ok(Some(m)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(FsError::from_s3(&e, &marker)),
        }
    }

    /// HEAD `key` and LIST `key/` at once: a directory wins over a file of the same name.
    /// The HEAD is one attempt (s3s-fs answers HEAD of a prefix with a 500 that retries would
    /// only repeat): for a directory its answer only says whether an older directory object
    /// stands for it; a file that needs it and did not get it is asked again, with retries.
    async fn probe(&self, key: &str) -> FsResult<Found> {
        let dir_prefix = format!("{key}/");
        let list_req = ListRequest {
            prefix: dir_prefix.clone(),
            delimiter: Some("/".into()),
            max_keys: Some(1),
            ..ListRequest::default()
        };
        let (head, list) = tokio::join!(
            self.client.head_object_once(key),
            self.client.list_objects_v2(&list_req)
        );
        let list = list.map_err(|e| FsError::from_s3(&e, &dir_prefix))?;
        if !list.objects.is_empty() || !list.common_prefixes.is_empty() {
            // (an empty object is an older form of directory object: nothing to warn about)
            if matches!(&head, Ok(m) if m.size > 0) {
                self.skipped
                    .warn(key, "shadowed by a directory of the same name");
            }
            let has_marker = list.objects.first().map(|o| o.key.as_str()) == Some(&dir_prefix);
            let marker = if has_marker {
                self.head_marker(key).await?
            } else {
                None
            };
            // a `dir` object of the older form beside the prefix stands for it too (a HEAD
            // that failed is asked again if the directory is removed)
            let old = match head {
                // without a marker, its attributes are the old object's
                Ok(meta) if is_old_dir_object(&meta) && marker.is_none() => {
                    return Ok(Found::OldDirObject { meta })
                }
                Ok(m) if is_old_dir_object(&m) => OldDirObject::At(key.to_string()),
                Ok(_) => OldDirObject::Absent,
                Err(e) if e.is_not_found() => OldDirObject::Absent,
                Err(_) => OldDirObject::Unknown,
            };
            return Ok(Found::Dir { marker, old });
        }
        let head = match head {
            Err(e) if !e.is_not_found() => self.client.head_object(key).await,
            h => h,
        };
        match head {
            Ok(meta) => Ok(Found::object(meta)),
            Err(e) if e.is_not_found() && self.config.compat_dir => {
                // `-o compat_dir`: the older `dir_$folder$` form is looked for too
                let folder = format!("{key}{FOLDER_SUFFIX}");
                match self.client.head_object(&folder).await {
                    Ok(_) => Ok(Found::Dir {
                        marker: None,
                        old: OldDirObject::At(folder),
                    }),
                    Err(e) if e.is_not_found() => Ok(Found::Missing),
                    Err(e) => Err(FsError::from_s3(&e, &folder)),
                }
            }
            Err(e) if e.is_not_found() => Ok(Found::Missing),
            Err(e) => Err(FsError::from_s3(&e, key)),
        }
    }

    pub fn forget(&self, ino: u64, n: u64) {
        self.inodes.lock().forget(ino, n);
    }

    /// [`getattr`](Self::getattr) answered from memory: `Some` while the attributes are
    /// fresh, `None` when they must be fetched (see [`lookup_now`](Self::lookup_now)).
    pub fn getattr_now(&self, ino: u64) -> Option<Attr> {
        if let Some(attr) = self.control_getattr(ino) {
            return Some(attr);
        }
        let t = self.inodes.lock();
        let n = t.get(ino)?;
        (n.attr_fresh(Instant::now()) || ino == ROOT_INO).then_some(n.attr)
    }

    /// Attributes of `ino`: from cache while fresh, else HEAD (files) or the marker (directories).
    pub async fn getattr(&self, ino: u64) -> FsResult<Attr> {
        if let Some(attr) = self.getattr_now(ino) {
            return Ok(attr);
        }
        let (key, kind, has_marker, size) = {
            let t = self.inodes.lock();
            let n = t.get(ino).ok_or_else(FsError::not_found)?;
            (n.key.clone(), n.kind(), n.has_marker, n.attr.size)
        };
        let deadline = self.attr_deadline();
        let asked = Instant::now();
        let meta = match kind {
            FileKind::Directory if !has_marker => None,
            FileKind::Directory => match self.client.head_object(&key).await {
                Ok(m) => Some(m),
                Err(e) if e.is_not_found() => None,
                Err(e) => return Err(FsError::from_s3(&e, &key)),
            },
            _ => match fetch_file_meta(&self.client, &self.small_bodies, &key, Some(size)).await {
                Ok(m) => Some(m),
                Err(e) => return Err(FsError::from_s3(&e, &key)),
            },
        };
        let mut t = self.inodes.lock();
        let n = t.get_mut(ino).ok_or_else(FsError::not_found)?;
        // (an answer older than a version this mount put since does not replace it)
        if n.writing || n.local_only || n.meta_pending || n.changed_since(asked) {
            return Ok(n.attr);
        }
        if let Some(m) = meta {
            let mut attr = Attr::from_meta(ino, kind, &m, &self.config);
            attr.kind = if kind == FileKind::Directory {
                FileKind::Directory
            } else {
                attr.kind
            };
            if attr.kind != n.attr.kind && n.partial_meta && n.attr.kind == FileKind::File {
                // a symlink (s3fs's metadata says so) taken for a file from a listing
                // (`--stat-from-listing`): the kernel knows it as a file; it stays one, and
                // reads give its target
                attr.kind = FileKind::File;
            } else if attr.kind != n.attr.kind {
                // replaced by another kind of node: the kernel must look it up again
                return Err(FsError::new(libc::ESTALE, "object changed kind"));
            }
            n.attr = attr;
            n.meta = StoredMeta::from_object(&m);
            n.etag = m.etag;
            n.partial_meta = false;
        }
        n.attr_expires = deadline;
        Ok(n.attr)
    }

    /// A file whose attributes came from a listing (`--stat-from-listing`) gets its real
    /// ones (one HEAD) before anything uses them: an open, a change of its attributes or
    /// xattrs (which must keep the metadata other tools wrote).
    pub(crate) async fn full_meta(&self, ino: u64) -> FsResult<()> {
        let partial = {
            let mut t = self.inodes.lock();
            match t.get_mut(ino) {
                Some(n) if n.partial_meta => {
                    n.attr_expires = Instant::now();
                    true
                }
                _ => false,
            }
        };
        if partial {
            self.getattr(ino).await?;
        }
        Ok(())
    }

    /// Open a directory: the listing is read page by page as readdir advances, or served from
    /// a fresh snapshot without any request.
    pub async fn opendir(&self, ino: u64) -> FsResult<u64> {
        let (key, snapshot) = if ino == super::control::CONTROL_DIR_INO {
            let mut children = foldhash::HashMap::default();
            children.insert(super::control::STATS_NAME.to_string(), ListedChild::file(0));
            let items = std::sync::Arc::new(super::dir_listing::sorted_items(&children));
            (String::new(), Some((items, Vec::new())))
        } else {
            let mut t = self.inodes.lock();
            let n = t.get_mut(ino).ok_or_else(FsError::not_found)?;
            if n.kind() != FileKind::Directory {
                return Err(FsError::new(libc::ENOTDIR, "not a directory"));
            }
            // the cached listing's entries are shared, not copied (100,000 names)
            let snap = n
                .snapshot
                .as_mut()
                .filter(|s| Instant::now() < s.expires)
                .map(|s| match &s.items {
                    Some(items) => items.clone(),
                    None => {
                        let items = super::dir_listing::sorted_items(s.children());
                        s.items.insert(std::sync::Arc::new(items)).clone()
                    }
                });
            let key = n.key.clone();
            // with the files pending now, under the same lock: a file that lands before the
            // first readdir leaves the pending set, and this copy of the listing predates it
            let snap = snap.map(|items| (items, t.local_children(ino)));
            (key, snap)
        };
        let cached = snapshot.is_some();
        let stream = match snapshot {
            Some((items, locals)) => {
                self.counters.readdir_hit();
                let mut stream = DirStream::from_items(&key, items);
                for (name, attr) in locals {
                    stream.add_local(&name, attr.kind);
                }
                stream
            }
            None => {
                self.counters.readdir_miss();
                // ETags serve only --stat-from-listing: without it none is kept (nor copied
                // for lookups)
                let details = match self.config.stat_from_listing {
                    true => self.config.listing_cache_entries,
                    false => 0,
                };
                DirStream::new(&key).details_for(details).windowed(
                    self.config.listing_cache_entries,
                    self.config.readdir_keep_behind,
                )
            }
        };
        let fh = self.handles.next_fh();
        self.handles.insert(
            fh,
            Handle::Dir(Arc::new(tokio::sync::Mutex::new(DirState {
                stream,
                // a cached listing is complete (and is not cached again)
                locals_added: cached,
                published: 0,
            }))),
        );
        Ok(fh)
    }

    /// Entries from `offset` on: `.` and `..` first, then the listing, fetching pages as needed.
    /// Offsets are indices into the handle's entries, so they stay valid across pages.
    pub async fn readdir(&self, ino: u64, fh: u64, offset: u64) -> FsResult<Vec<DirEntryOut>> {
        let mut out = Vec::new();
        self.readdir_into(ino, fh, offset, |next_offset, ino, kind, name| {
            out.push(DirEntryOut {
                next_offset,
                ino,
                kind,
                name: name.to_string(),
            });
            false
        })
        .await?;
        Ok(out)
    }

    /// As [`readdir`](Self::readdir), handing each entry (offset of the next one, inode,
    /// kind, name) to `add` until it says it is full (returns true): a reply buffer takes a
    /// hundred-odd entries, and nothing is built for the rest of a page of 1,000.
    pub async fn readdir_into(
        &self,
        ino: u64,
        fh: u64,
        offset: u64,
        mut add: impl FnMut(u64, u64, FileKind, &str) -> bool,
    ) -> FsResult<()> {
        let state = match self.handles.get(fh) {
            Some(Handle::Dir(d)) => d,
            _ => return Err(FsError::new(libc::EBADF, "not an open directory")),
        };
        let mut st = state.lock().await;
        if offset == 0 && add(1, ino, FileKind::Directory, ".") {
            return Ok(());
        }
        if offset <= 1 {
            let parent = self
                .inodes
                .lock()
                .get(ino)
                .map(|n| n.parent)
                .unwrap_or(ROOT_INO);
            if add(2, parent, FileKind::Directory, "..") {
                return Ok(());
            }
        }
        let index = offset.saturating_sub(2) as usize;
        if index < st.stream.base() {
            // a seek back before what a long listing kept: list it again from the start
            st.stream.restart();
            st.published = 0;
            st.locals_added = false;
        }
        if st.published == 0 && st.stream.count() == 0 && !st.stream.is_done() {
            // the listing starts: from now on, names changed here are this mount's, whatever
            // the pages (fetched before or after the change) say
            // (a listing another reader has under way is shared; one left expired by a reader
            // that stopped early is not trusted again)
            let now = Instant::now();
            if let Some(n) = self.inodes.lock().get_mut(ino) {
                if n.partial_listing.as_ref().is_none_or(|p| now >= p.until) {
                    n.partial_listing = Some(PartialListing::new(now + self.config.metadata_ttl));
                }
            }
        }
        while index >= st.stream.count() && !st.stream.is_done() {
            let warn = FsWarnings(self);
            if let Err(e) = st.stream.fetch_next_page(&self.client, &warn).await {
                return Err(FsError::from_s3(&e, &self.dir_key(ino).unwrap_or_default()));
            }
            if !st.stream.is_done() {
                self.publish_partial(ino, &mut st, false);
            }
        }
        if st.stream.is_done() && !st.locals_added {
            st.locals_added = true;
            let kept = st.stream.count() <= self.config.listing_cache_entries;
            self.relist.listed(ino, st.stream.count(), kept);
            let expires = Instant::now() + self.config.metadata_ttl;
            // a listing no lookup asked about while it came, and with no name changed here
            // meanwhile, becomes the cached listing as its entries are (the map by name is
            // built at the first lookup); else what lookups were shown, completed
            let mut t = self.inodes.lock();
            let untouched = t
                .get(ino)
                .and_then(|n| n.partial_listing.as_ref())
                .is_none_or(|p| !p.asked.get() && p.changed_here.is_empty());
            if untouched {
                if let Some(n) = t.get_mut(ino) {
                    n.partial_listing = None;
                }
                if kept {
                    let snap = DirSnapshot::from_items(st.stream.shared_items(), expires);
                    t.install_listing(ino, snap, self.config.listing_cache_total);
                }
            } else {
                drop(t);
                self.publish_partial(ino, &mut st, true);
                t = self.inodes.lock();
                let pl = t.get_mut(ino).and_then(|n| n.partial_listing.take());
                // names changed here while the pages came: the entries readdir shows are
                // made again from `children`, which has them right
                let changed = pl.as_ref().is_some_and(|p| !p.changed_here.is_empty());
                // and a file that landed here meanwhile (no longer pending) is shown, whatever
                // a page fetched before it landed says
                for (name, child) in pl.iter().flat_map(|p| {
                    p.changed_here
                        .iter()
                        .filter_map(|n| Some((n, p.children.get(n)?)))
                }) {
                    let kind = match child {
                        ListedChild::Directory { .. } => FileKind::Directory,
                        _ => FileKind::File,
                    };
                    st.stream.add_local(name, kind);
                }
                if kept {
                    let children = pl.map(|pl| pl.children).unwrap_or_default();
                    let mut snap = DirSnapshot::new(children, expires);
                    snap.items = (!changed).then(|| st.stream.shared_items());
                    t.install_listing(ino, snap, self.config.listing_cache_total);
                }
            }
            let locals = t.local_children(ino);
            drop(t);
            for (name, attr) in locals {
                st.stream.add_local(&name, attr.kind);
            }
        }
        let t = self.inodes.lock();
        let mut probe = (ino, String::with_capacity(64));
        let base = st.stream.base();
        let mut reached = index;
        for (i, item) in st.stream.items().iter().enumerate().skip(index - base) {
            let i = base + i;
            reached = i;
            probe.1.clear();
            probe.1.push_str(&item.name);
            let (child_ino, kind) = match t.child_by_key(&probe) {
                // the listing is newer than a node of another kind (a file replaced by a
                // directory elsewhere): the listing's kind; the lookup to come renumbers it
                // (a listing tells directories from files only: a symlink is listed as a file)
                Some(n)
                    if (n.kind() == FileKind::Directory) == (item.kind == FileKind::Directory)
                        || item.listed.is_none() =>
                {
                    (n.ino, n.kind())
                }
                // not looked up yet: a number that cannot clash with real inodes
                _ => (listing_placeholder_ino(ino, i), item.kind),
            };
            if add(i as u64 + 3, child_ino, kind, &item.name) {
                break;
            }
        }
        drop(t);
        st.stream.forget_before(reached);
        Ok(())
    }

    /// Show lookups what the listing under way has emitted since the last call: its first
    /// page, then the rest only once a lookup asked (`ls -l` stats as it reads; `ls -f` and
    /// fts walks read the whole directory first, and copy nothing for lookups), or `all`.
    fn publish_partial(&self, ino: u64, st: &mut DirState, all: bool) {
        let mut t = self.inodes.lock();
        let Some(n) = t.get_mut(ino) else { return };
        let expires = Instant::now() + self.config.metadata_ttl;
        let pl = n
            .partial_listing
            .get_or_insert_with(|| PartialListing::new(expires));
        pl.until = expires;
        if st.published > 0 && !pl.asked.get() && !all {
            return;
        }
        let replaced = st.stream.take_replaced();
        let (items, base) = (st.stream.items(), st.stream.base());
        for pos in replaced.into_iter().filter(|p| *p < st.published) {
            if let Some(i) = pos.checked_sub(base).and_then(|p| items.get(p)) {
                pl.listed(&i.name, None);
            }
        }
        // a directory past the listing cache's bound is not cached, and what lookups are
        // shown stops at the bound too (the rest ask the bucket): memory stays bounded
        let room = self
            .config
            .listing_cache_entries
            .saturating_sub(pl.children.len());
        let from = st.published.saturating_sub(base).min(items.len());
        for (i, l) in items[from..]
            .iter()
            .filter_map(|i| Some((i, i.listed.as_ref()?)))
            .take(room)
        {
            pl.listed(&i.name, Some(l.clone()));
            let dir = matches!(l, ListedChild::Directory { .. });
            pl.order.push((i.name.clone(), dir));
        }
        st.published = base + items.len();
    }

    /// Whether directory `ino`'s cached listing has built its map by name (`None`: no cached
    /// listing). For tests: a listing read through with no lookup builds none.
    pub fn listing_name_map_built(&self, ino: u64) -> Option<bool> {
        let t = self.inodes.lock();
        t.get(ino)?.snapshot.as_ref().map(|s| s.has_name_map())
    }

    pub fn releasedir(&self, fh: u64) {
        self.handles.remove(fh);
    }

    /// mkdir: one PUT of a `name/` marker carrying the directory's mode, owner and times.
    pub async fn mkdir(
        &self,
        parent: u64,
        name: &str,
        mode: u32,
        caller: Caller,
    ) -> FsResult<Attr> {
        let key = format!("{}/", self.key_for_new(parent, name).await?);
        check_key(&key)?;
        let mut attr = Attr::new(0, FileKind::Directory, 0, &self.config, SystemTime::now());
        attr.perm = (mode & 0o7777) as u16;
        attr.uid = caller.uid;
        attr.gid = caller.gid;
        let opts = StoredMeta::default().for_rewrite(&attr, name);
        let meta = match self
            .client
            .put_object(&key, bytes::Bytes::new(), &opts)
            .await
        {
            Ok(meta) => Some(meta),
            // --write-back: the marker follows when the server is back (journaled)
            Err(e) if self.config.write_back && (e.is_unreachable() || e.is_retryable()) => None,
            Err(e) => return Err(FsError::from_s3(&e, &key)),
        };
        self.forget_missing(parent, name);
        self.update_snapshot(parent, name, Some(ListedChild::DIR));
        let mut t = self.inodes.lock();
        let ino = t.upsert_child(
            parent,
            name,
            key.clone(),
            attr,
            meta.as_ref().and_then(|m| m.etag.clone()),
            meta.is_some(),
            self.attr_deadline(),
        );
        t.inc_lookup(ino);
        if let Some(n) = t.get_mut(ino) {
            n.meta.written(&opts);
            // (what a lookup asked before this says does not replace it)
            n.changed_here = Some(Instant::now());
        }
        if meta.is_none() {
            drop(t);
            self.defer_marker(ino, key, &opts);
            t = self.inodes.lock();
        }
        // a new directory is empty: lookups inside it need no request
        let empty = DirSnapshot::new(
            Default::default(),
            Instant::now() + self.config.metadata_ttl,
        );
        t.install_listing(ino, empty, self.config.listing_cache_total);
        t.get(ino).map(|n| n.attr).ok_or_else(FsError::not_found)
    }

    /// The key a new node `name` in `parent` gets, after checking the mount is writable, the
    /// name is valid and nothing of that name exists (EEXIST).
    async fn key_for_new(&self, parent: u64, name: &str) -> FsResult<String> {
        self.check_writable()?;
        check_name(name)?;
        let parent_key = self.dir_key(parent)?;
        if self.exists(parent, name).await? {
            return Err(FsError::new(libc::EEXIST, "file exists"));
        }
        Ok(format!("{parent_key}{name}"))
    }

    /// Whether `name` exists in `parent` (a lookup that takes no kernel reference).
    pub(crate) async fn exists(&self, parent: u64, name: &str) -> FsResult<bool> {
        match self.lookup(parent, name).await {
            Ok(attr) => {
                self.inodes.lock().unref(attr.ino);
                Ok(true)
            }
            Err(e) if e.errno == libc::ENOENT => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The child inode `name` of `parent`, looking it up if needed (no kernel reference kept).
    pub(crate) async fn child_attr(&self, parent: u64, name: &str) -> FsResult<Attr> {
        let attr = self.lookup(parent, name).await?;
        // give the reference back but keep the inode: the caller is about to use it
        self.inodes.lock().unref(attr.ino);
        Ok(attr)
    }

    pub(crate) fn check_writable(&self) -> FsResult<()> {
        if self.config.read_only {
            Err(FsError::new(libc::EROFS, "mounted read-only"))
        } else {
            Ok(())
        }
    }

    /// unlink: DeleteObject. A file still being written is dropped without reaching the bucket.
    pub async fn unlink(&self, parent: u64, name: &str) -> FsResult<()> {
        self.check_writable()?;
        let attr = self.child_attr(parent, name).await?;
        if attr.kind == FileKind::Directory {
            return Err(FsError::new(libc::EISDIR, "is a directory"));
        }
        // a release uploading it ends first (else its object would land after the delete)
        self.settle_release(attr.ino).await;
        // a file an earlier run closed and did not upload is never sent
        self.withdraw_recovered(attr.ino).await?;
        let (key, local_only) = {
            let t = self.inodes.lock();
            let n = t.get(attr.ino).ok_or_else(FsError::not_found)?;
            (n.key.clone(), n.local_only)
        };
        self.discard_writers(attr.ino).await?;
        if !local_only {
            self.client
                .delete_object(&key)
                .await
                .map_err(|e| FsError::from_s3(&e, &key))?;
        }
        self.inodes.lock().detach(parent, name);
        self.update_snapshot(parent, name, None);
        self.remember_missing(parent, name);
        Ok(())
    }

    /// rmdir: ENOTEMPTY if any key lies under the directory, else DeleteObject of its marker.
    pub async fn rmdir(&self, parent: u64, name: &str) -> FsResult<()> {
        self.check_writable()?;
        let attr = self.child_attr(parent, name).await?;
        if attr.kind != FileKind::Directory {
            return Err(FsError::new(libc::ENOTDIR, "not a directory"));
        }
        let (key, has_marker) = {
            let t = self.inodes.lock();
            if !t.local_children(attr.ino).is_empty() {
                return Err(FsError::new(libc::ENOTEMPTY, "directory not empty"));
            }
            t.get(attr.ino)
                .map(|n| (n.key.clone(), n.has_marker))
                .ok_or_else(FsError::not_found)?
        };
        let req = ListRequest {
            prefix: key.clone(),
            max_keys: Some(2),
            ..ListRequest::default()
        };
        let page = self
            .client
            .list_objects_v2(&req)
            .await
            .map_err(|e| FsError::from_s3(&e, &key))?;
        if page.objects.iter().any(|o| o.key != key) || !page.common_prefixes.is_empty() {
            return Err(FsError::new(libc::ENOTEMPTY, "directory not empty"));
        }
        // the marker (asked even when none was seen: another client may have made one), and
        // an older form of directory object that stood for it
        let legacy = self.old_dir_object(attr.ino, &key).await?;
        let marker = (has_marker || legacy.is_none()).then_some(&key);
        for k in marker.into_iter().chain(legacy.as_ref()) {
            self.client
                .delete_object(k)
                .await
                .map_err(|e| FsError::from_s3(&e, k))?;
        }
        self.inodes.lock().detach(parent, name);
        self.update_snapshot(parent, name, None);
        self.remember_missing(parent, name);
        Ok(())
    }

    /// symlink: an object whose body is the target, with S_IFLNK in `x-amz-meta-mode` (as s3fs).
    pub async fn symlink(
        &self,
        parent: u64,
        name: &str,
        target: &str,
        caller: Caller,
    ) -> FsResult<Attr> {
        let mut attr = Attr::new(
            0,
            FileKind::Symlink,
            target.len() as u64,
            &self.config,
            SystemTime::now(),
        );
        attr.uid = caller.uid;
        attr.gid = caller.gid;
        let body = bytes::Bytes::copy_from_slice(target.as_bytes());
        self.create_object(parent, name, attr, body).await
    }

    /// mknod: FIFOs, sockets and device nodes are empty objects whose `x-amz-meta-mode` holds
    /// the type (and `x-amz-meta-rdev` the device number), as s3fs stores them. The kernel
    /// serves FIFOs and sockets itself; devices cannot be opened (the mount is `nodev`).
    /// `mode` has the type bits and the permissions (umask already applied).
    pub async fn mknod(
        &self,
        parent: u64,
        name: &str,
        mode: u32,
        rdev: u32,
        caller: Caller,
    ) -> FsResult<Attr> {
        let kind = match mode & libc::S_IFMT {
            0 => FileKind::File,
            _ => match FileKind::from_type_bits(mode) {
                Some(k) if k == FileKind::File || k.is_special() => k,
                _ => return Err(FsError::new(libc::EINVAL, "mknod of this file type")),
            },
        };
        let mut attr = Attr::new(0, kind, 0, &self.config, SystemTime::now());
        attr.perm = (mode & 0o7777) as u16;
        attr.uid = caller.uid;
        attr.gid = caller.gid;
        if matches!(kind, FileKind::CharDevice | FileKind::BlockDevice) {
            attr.rdev = rdev;
        }
        self.create_object(parent, name, attr, bytes::Bytes::new())
            .await
    }

    /// One PutObject of a new, complete object (symlink, special file) with its attributes in
    /// the metadata; EEXIST if the name is taken.
    async fn create_object(
        &self,
        parent: u64,
        name: &str,
        attr: Attr,
        body: bytes::Bytes,
    ) -> FsResult<Attr> {
        let key = self.key_for_new(parent, name).await?;
        check_key(&key)?;
        let opts = StoredMeta::default().for_rewrite(&attr, name);
        let size = body.len() as u64;
        let meta = self
            .client
            .put_object(&key, body, &opts)
            .await
            .map_err(|e| FsError::from_s3(&e, &key))?;
        self.forget_missing(parent, name);
        self.update_snapshot(parent, name, Some(ListedChild::file(size)));
        let mut t = self.inodes.lock();
        let ino = t.upsert_child(
            parent,
            name,
            key,
            attr,
            meta.etag,
            false,
            self.attr_deadline(),
        );
        t.inc_lookup(ino);
        if let Some(n) = t.get_mut(ino) {
            n.meta.written(&opts);
            // (what a lookup asked before this says does not replace it)
            n.changed_here = Some(Instant::now());
        }
        t.get(ino).map(|n| n.attr).ok_or_else(FsError::not_found)
    }

    /// readlink: the object's body.
    pub async fn readlink(&self, ino: u64) -> FsResult<Vec<u8>> {
        let (key, etag) = {
            let t = self.inodes.lock();
            let n = t.get(ino).ok_or_else(FsError::not_found)?;
            if n.kind() != FileKind::Symlink {
                return Err(FsError::new(libc::EINVAL, "not a symlink"));
            }
            (n.key.clone(), n.etag.clone())
        };
        // the target came with the lookup's GET (small_bodies.rs)
        if let Some(body) = etag.and_then(|e| self.small_bodies.get(&key, &e)) {
            return Ok(body.to_vec());
        }
        let out = self
            .client
            .get_object(&key, None, None)
            .await
            .map_err(|e| FsError::from_s3(&e, &key))?;
        Ok(out.body.to_vec())
    }

    /// setattr: size changes go through the file's upload; mode, owner and times are stored in
    /// the object's metadata (folded into a pending upload, or CopyObject onto itself).
    pub async fn setattr(&self, ino: u64, req: SetAttr, caller: Caller) -> FsResult<Attr> {
        let _ = caller;
        let meta_change = req.mode.is_some()
            || req.uid.is_some()
            || req.gid.is_some()
            || req.atime.is_some()
            || req.mtime.is_some();
        if meta_change || req.size.is_some() {
            self.check_writable()?;
            // a file an earlier run closed goes up before it is changed
            self.land_recovered(ino).await?;
        }
        self.full_meta(ino).await?;
        let mut attr = {
            let t = self.inodes.lock();
            t.get(ino).ok_or_else(FsError::not_found)?.attr
        };
        if let Some(size) = req.size {
            if attr.kind == FileKind::Directory {
                return Err(FsError::new(libc::EISDIR, "is a directory"));
            }
            self.truncate(ino, size, req.fh).await?;
            attr = self.getattr(ino).await?;
        }
        if !meta_change {
            return Ok(attr);
        }
        if let Some(mode) = req.mode {
            attr.perm = (mode & 0o7777) as u16;
        }
        if let Some(uid) = req.uid {
            attr.uid = uid;
        }
        if let Some(gid) = req.gid {
            attr.gid = gid;
        }
        if let Some(t) = req.atime {
            attr.atime = t;
        }
        if let Some(t) = req.mtime {
            attr.mtime = t;
        }
        attr.ctime = SystemTime::now();
        // a change is written a moment later (metadata_write.rs), or carried by the commit of
        // a writer that has the file open. At once: a directory without a marker, whose write
        // creates one (a PUT landing after an rmdir would bring it back, where a late copy of
        // a removed marker just fails). The bucket's root has no object to hold them: they are
        // kept for the life of the mount (as `chmod 755 /mnt/b` expects, and s3fs does)
        let mut changed = Changed::default();
        for (asked, what) in [
            (req.mode.is_some(), Changed::MODE),
            (req.uid.is_some() || req.gid.is_some(), Changed::OWNER),
            (req.atime.is_some(), Changed::ATIME),
            (req.mtime.is_some(), Changed::MTIME),
        ] {
            if asked {
                changed.add(what);
            }
        }
        let (deferred, bucket_root) = {
            let mut t = self.inodes.lock();
            let n = t.get_mut(ino).ok_or_else(FsError::not_found)?;
            n.meta_changed.add(changed);
            let bucket_root = ino == ROOT_INO && n.key.is_empty();
            let deferred = ino != ROOT_INO && (attr.kind != FileKind::Directory || n.has_marker);
            (deferred, bucket_root)
        };
        if !deferred && !bucket_root {
            self.store_metadata(ino, &attr).await?;
        }
        let mut t = self.inodes.lock();
        let n = t.get_mut(ino).ok_or_else(FsError::not_found)?;
        n.attr.perm = attr.perm;
        n.attr.uid = attr.uid;
        n.attr.gid = attr.gid;
        n.attr.atime = attr.atime;
        n.attr.mtime = attr.mtime;
        n.attr.ctime = attr.ctime;
        let attr = n.attr;
        drop(t);
        if deferred {
            self.defer_metadata(ino)?;
        }
        Ok(attr)
    }
}

/// Per-handle state of an open directory.
pub(crate) struct DirState {
    stream: DirStream,
    locals_added: bool,
    /// Entries of `stream` already shown to lookups (`Inode::partial_listing`).
    published: usize,
}

/// An inode number for readdir entries not looked up yet; top bit set so it never equals an
/// allocated number. The kernel does not use it to identify the file.
///
/// Numbers rise with the entry's position in the listing (the directory's bits above, the
/// position below). gnulib's fts (`find`, `chown -R`, `chmod -R`, `rm -rf`, `du`) sorts a
/// directory of more than 10,000 entries by these numbers before it stats them, "disk
/// order" on a local file system: here that order is the listing's, the one stat-ahead
/// fetches in. (A hash of the name sent those walks in random order: one HEAD waited on per
/// entry, 4× the time per file at 100,000 files.)
fn listing_placeholder_ino(parent: u64, position: usize) -> u64 {
    use std::hash::BuildHasher;
    let dir = foldhash::fast::FixedState::with_seed(0).hash_one(parent) & 0x7fff_ffff;
    (1 << 63) | (dir << 32) | (position as u64 & 0xffff_ffff)
}

/// What a listing says of a file, as the metadata `--stat-from-listing` trusts.
fn meta_from_listing(
    size: u64,
    etag: Option<String>,
    modified: Option<std::time::SystemTime>,
) -> ObjectMeta {
    ObjectMeta {
        size,
        etag,
        last_modified: modified,
        content_type: None,
        storage_class: None,
        user_metadata: Default::default(),
        content_headers: Default::default(),
    }
}

/// Keep what HEAD said beyond the attributes: every metadata header and the storage class.
fn remember_meta(node: Option<&mut super::inode::Inode>, meta: &ObjectMeta) {
    if let Some(n) = node {
        if !n.writing && !n.local_only && !n.meta_pending {
            n.meta = StoredMeta::from_object(meta);
        }
    }
}

/// The result of a HEAD fetched ahead, if there was one and it worked (a failed one is
/// simply asked again).
async fn ahead_result(ahead: Option<super::stat_ahead::PendingHead>) -> Option<Option<ObjectMeta>> {
    match ahead?.await {
        Ok(found) => Some(found),
        Err(e) => {
            tracing::debug!("stat-ahead HEAD failed, asking again: {e}");
            None
        }
    }
}

//! rename: CopyObject then DeleteObject for files; for directories every key under the prefix
//! is copied (in parallel) and the sources are deleted only after all copies succeeded.

use futures::stream::{self, StreamExt};

use super::attr::FileKind;
use super::error::{FsError, FsResult};
use super::inode::ListedChild;
use super::namespace::check_name;
use super::Filesystem;

/// Copies in flight at once during a directory rename.
const PARALLEL_COPIES: usize = 16;
const RENAME_NOREPLACE: u32 = 1;
const RENAME_EXCHANGE: u32 = 2;

impl Filesystem {
    pub async fn rename(
        &self,
        parent: u64,
        name: &str,
        new_parent: u64,
        new_name: &str,
        flags: u32,
    ) -> FsResult<()> {
        self.check_writable()?;
        check_name(new_name)?;
        if flags & RENAME_EXCHANGE != 0 {
            return Err(FsError::new(
                libc::EINVAL,
                "RENAME_EXCHANGE is not supported on S3",
            ));
        }
        let src = self.child_attr(parent, name).await?;
        let new_parent_key = self.dir_key(new_parent)?;
        let target = match self.child_attr(new_parent, new_name).await {
            Ok(a) => Some(a),
            Err(e) if e.errno == libc::ENOENT => None,
            Err(e) => return Err(e),
        };
        // a file whose release is uploading it is moved once that upload landed; one its
        // opener closed, once its release came (then a copy replaces the target in one step,
        // instead of the target going first)
        self.settle_release(src.ino).await;
        if src.kind != FileKind::Directory {
            self.wait_for_closed_writer(src.ino).await;
        }
        if let Some(t) = &target {
            self.settle_release(t.ino).await;
        }
        // files an earlier run closed and did not upload go up first (the rename then moves
        // what the bucket holds)
        match src.kind {
            FileKind::Directory => self.land_recovered_under(&self.dir_key(src.ino)?).await?,
            _ => self.land_recovered(src.ino).await?,
        }
        if let Some(t) = target.filter(|t| t.ino != src.ino) {
            self.land_recovered(t.ino).await?;
        }
        if let Some(t) = target {
            if t.ino == src.ino {
                return Ok(());
            }
            if flags & RENAME_NOREPLACE != 0 {
                return Err(FsError::new(libc::EEXIST, "target exists"));
            }
            match (src.kind, t.kind) {
                (FileKind::Directory, FileKind::Directory) => {
                    self.rmdir(new_parent, new_name).await?;
                }
                (FileKind::Directory, _) => {
                    return Err(FsError::new(libc::ENOTDIR, "target is not a directory"))
                }
                (_, FileKind::Directory) => {
                    return Err(FsError::new(libc::EISDIR, "target is a directory"))
                }
                // the file replaced is unlinked: its open descriptors keep their bytes, and
                // nothing of it is uploaded (its upload would land on the name it lost)
                _ => {
                    self.discard_writers(t.ino).await?;
                    // a file being written takes the name without an object until its upload
                    // lands: the replaced object goes now, as an unlink would take it (left
                    // there, it came back if the new file was never uploaded)
                    let writing = self.inodes.lock().get(src.ino).is_some_and(|n| n.writing);
                    if writing {
                        let key = format!("{new_parent_key}{new_name}");
                        self.client
                            .delete_object(&key)
                            .await
                            .map_err(|e| FsError::from_s3(&e, &key))?;
                    }
                }
            }
        }
        if src.kind == FileKind::Directory {
            self.rename_dir(src.ino, parent, name, new_parent, new_name, &new_parent_key)
                .await
        } else {
            self.rename_file(src.ino, parent, name, new_parent, new_name, &new_parent_key)
                .await
        }
    }

    async fn rename_file(
        &self,
        ino: u64,
        parent: u64,
        name: &str,
        new_parent: u64,
        new_name: &str,
        new_parent_key: &str,
    ) -> FsResult<()> {
        let new_key = format!("{new_parent_key}{new_name}");
        let (old_key, etag, attr, writing, local_only, pending) = loop {
            let state = {
                let t = self.inodes.lock();
                let n = t.get(ino).ok_or_else(FsError::not_found)?;
                (
                    n.key.clone(),
                    n.etag.clone(),
                    n.attr,
                    n.writing,
                    n.local_only,
                    n.meta_pending.then_some(n.meta_gen),
                )
            };
            if state.3 {
                // closed and uploaded, its release on the way: moved as a settled file
                if self.wait_for_closed_writer(ino).await {
                    continue;
                }
                // the pending upload lands under the new name; a writer released meanwhile
                // leaves a settled file (or a kept writer) to look at again
                if !self.retarget_writer(ino, new_key.clone()).await? {
                    self.settle_release(ino).await;
                    continue;
                }
            }
            break state;
        };
        let size = attr.size;
        if !writing {
            // its metadata may be replaced by the copy: it must be known (a file seen only in
            // a listing, `--stat-from-listing`, gets one HEAD)
            self.full_meta(ino).await?;
        }
        if writing {
            if !local_only {
                self.client
                    .delete_object(&old_key)
                    .await
                    .map_err(|e| FsError::from_s3(&e, &old_key))?;
            }
        } else {
            // one CopyObject, or above the provider's copy limit a multipart copy
            // (UploadPartCopy in parallel, GET + UploadPart where the server refuses it)
            // Attribute changes not written yet (metadata_write.rs) go with this copy, and
            // so does the content type of the new name (as s3fs does: `mv a.txt a.jpg`); the
            // copy keeps everything else the object had.
            let retype = self
                .inodes
                .lock()
                .get(ino)
                .is_some_and(|n| n.meta.rename_changes_type(attr.kind, new_name));
            let opts = match pending.is_some() || retype {
                true => Some(self.metadata_options(ino, &attr, Some(new_name))?),
                false => None,
            };
            let new_etag = self
                .client
                .copy_object_sized(
                    &old_key,
                    &new_key,
                    size,
                    self.limits.base,
                    opts.as_ref(),
                    etag.as_deref(),
                )
                .await
                .map_err(|e| FsError::from_s3(&e, &old_key))?;
            if let Some(opts) = opts {
                let mut t = self.inodes.lock();
                if let Some(n) = t.get_mut(ino) {
                    n.meta.written(&opts);
                    if pending == Some(n.meta_gen) {
                        n.meta_pending = false;
                        n.meta_changed = Default::default();
                    }
                }
            }
            {
                let mut t = self.inodes.lock();
                if let Some(n) = t.get_mut(ino) {
                    n.page_cache_etag = n.page_cache_etag.take().and(Some(new_etag.clone()));
                    n.new_version(Some(new_etag));
                }
            }
            self.client
                .delete_object(&old_key)
                .await
                .map_err(|e| FsError::from_s3(&e, &old_key))?;
        }
        let listed = {
            let mut t = self.inodes.lock();
            t.relink(ino, new_parent, new_name, new_key);
            mark_renamed(t.get_mut(ino));
            t.get(ino).map(|n| ListedChild::file(n.attr.size))
        };
        self.update_snapshot(parent, name, None);
        if !local_only || !writing {
            self.update_snapshot(new_parent, new_name, listed);
        }
        self.forget_missing(new_parent, new_name);
        Ok(())
    }

    async fn rename_dir(
        &self,
        ino: u64,
        parent: u64,
        name: &str,
        new_parent: u64,
        new_name: &str,
        new_parent_key: &str,
    ) -> FsResult<()> {
        let old_prefix = self.dir_key(ino)?;
        let new_prefix = format!("{new_parent_key}{new_name}/");
        if new_prefix.starts_with(&old_prefix) {
            return Err(FsError::new(
                libc::EINVAL,
                "cannot move a directory into itself",
            ));
        }
        // files being released under it land first; files being written under it follow it
        // (their uploads restart under the new names, from the staging area); without one,
        // parts already sent cannot follow
        self.settle_releases_under(&old_prefix).await;
        let writers = self.writers_under(&old_prefix);
        if !writers.is_empty() && !self.store.spill {
            return Err(FsError::new(
                libc::EBUSY,
                "files under this directory are open for writing (and --cache-dir none keeps \
                 no copy of the parts they sent)",
            ));
        }
        // attribute changes not written yet go first, so the copies carry them
        self.flush_metadata_under(&old_prefix).await?;
        // 1. every key under the old prefix
        let mut copies: Vec<(String, String, u64)> = self
            .client
            .list_all(&old_prefix)
            .await
            .map_err(|e| FsError::from_s3(&e, &old_prefix))?
            .into_iter()
            .map(|o| {
                let dst = format!("{new_prefix}{}", &o.key[old_prefix.len()..]);
                (o.key, dst, o.size)
            })
            .collect();
        // an older form of directory object (`dir`, `dir_$folder$`) becomes the new name's
        // `dir/` marker, unless it has one already, and goes with the sources
        let legacy = self.old_dir_object(ino, &old_prefix).await?;
        if let Some(l) = &legacy {
            if !copies.iter().any(|(k, _, _)| *k == old_prefix) {
                copies.push((l.clone(), new_prefix.clone(), 0));
            } else {
                copies.push((l.clone(), String::new(), 0));
            }
        }
        let keys = copies;
        // journaled: a crash from here on is finished by the next mount (recovery.rs)
        let journal = self.store.journal.clone();
        if let Some(j) = &journal {
            j.move_started(&old_prefix, &new_prefix);
        }
        // 2. copy them all; a failure removes the copies made and stops with the sources
        // untouched. After a failure no copy starts, and the ones under way are waited for
        // (a copy dropped in flight could still land after the removal)
        let failed = std::sync::atomic::AtomicBool::new(false);
        let failed = &failed;
        let copies: Vec<_> = keys
            .iter()
            .filter(|(_, dst, _)| !dst.is_empty())
            .map(|(k, dst, size)| {
                let client = self.client.clone();
                let src = k.clone();
                let size = *size;
                let part_size = self.limits.base;
                let dst = dst.clone();
                async move {
                    if failed.load(std::sync::atomic::Ordering::Acquire) {
                        return Ok(());
                    }
                    let res = client
                        .copy_object_sized(&src, &dst, size, part_size, None, None)
                        .await
                        .map(|_| ())
                        .map_err(|e| FsError::from_s3(&e, &src));
                    if res.is_err() {
                        failed.store(true, std::sync::atomic::Ordering::Release);
                    }
                    res
                }
            })
            .collect();
        let copied: FsResult<()> = stream::iter(copies)
            .buffer_unordered(PARALLEL_COPIES)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect();
        if let Err(e) = copied {
            let made: Vec<String> = keys
                .iter()
                .filter(|(_, dst, _)| !dst.is_empty())
                .map(|(_, dst, _)| dst.clone())
                .collect();
            for batch in made.chunks(1000) {
                if let Err(err) = self.client.delete_objects(batch).await {
                    tracing::warn!(to = %new_prefix, "could not remove the copies of a failed directory rename: {err}");
                    // left journaled: the next mount finishes the rename instead
                    return Err(e);
                }
            }
            if let Some(j) = &journal {
                j.move_done(&old_prefix, &new_prefix);
            }
            return Err(e);
        }
        // 3. files open for writing follow (before their old objects go: a file changed in
        // place takes in the parts it still reads from its object)
        let mut keys: Vec<String> = keys.into_iter().map(|(k, _, _)| k).collect();
        for &w in &writers {
            let key = self.inodes.lock().get(w).map(|n| n.key.clone());
            if let Some(key) = key {
                let new_key = format!("{new_prefix}{}", &key[old_prefix.len()..]);
                if self.retarget_writer(w, new_key.clone()).await? {
                    continue;
                }
                // closed since the listing: its upload may have landed after it, under the
                // old name, and is moved like the rest
                self.settle_release(w).await;
                let uploaded = self
                    .inodes
                    .lock()
                    .get(w)
                    .map(|n| (n.local_only, n.attr.size));
                if let Some((false, size)) = uploaded.filter(|_| !keys.contains(&key)) {
                    self.client
                        .copy_object_sized(&key, &new_key, size, self.limits.base, None, None)
                        .await
                        .map_err(|e| FsError::from_s3(&e, &key))?;
                    keys.push(key);
                }
            }
        }
        // 4. only then delete the sources
        for batch in keys.chunks(1000) {
            let failed = self
                .client
                .delete_objects(batch)
                .await
                .map_err(|e| FsError::from_s3(&e, &old_prefix))?;
            if let Some((key, err)) = failed.first() {
                return Err(FsError::from_s3(err, key));
            }
        }
        if let Some(j) = &journal {
            j.move_done(&old_prefix, &new_prefix);
        }
        {
            let mut t = self.inodes.lock();
            t.relink(ino, new_parent, new_name, new_prefix);
            mark_renamed(t.get_mut(ino));
            if let Some(n) = t.get_mut(ino).filter(|_| legacy.is_some()) {
                n.old_dir_object = Default::default();
                n.has_marker = true;
            }
        }
        self.update_snapshot(parent, name, None);
        self.update_snapshot(new_parent, new_name, Some(ListedChild::DIR));
        self.forget_missing(new_parent, new_name);
        Ok(())
    }
}

/// A renamed node's ctime becomes now, as on Linux local filesystems. Kept in memory only: the
/// copy keeps every header of the object (a REPLACE to store it could drop Content-Encoding and
/// the like), so after `--metadata-ttl` the stored ctime shows again. (A rename that carries
/// pending attribute changes replaces the metadata anyway, as chmod does.)
fn mark_renamed(node: Option<&mut super::inode::Inode>) {
    if let Some(n) = node {
        n.attr.ctime = std::time::SystemTime::now();
    }
}

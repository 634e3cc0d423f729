//! Each operation run against the core and the model at once: what the core must answer,
//! and how the model (the tree, the open files, the bucket) changes.

use std::time::{Duration, UNIX_EPOCH};

use bucketfs::fs::{Filesystem, SetAttr};

use super::harness::{ensure, expect_errno, Check, Harness, Resolved, CALLER};
use super::ops::{pattern, Access, Op, P, TARGETS};
use super::reference::{Handle, HandleKind, Kind, NodeId};

impl Harness {
    pub async fn exec(&mut self, op: &Op) -> Check {
        match *op {
            Op::Create {
                p,
                access,
                excl,
                trunc,
                mode,
            } => self.create(p, access, excl, trunc, mode).await,
            Op::Open {
                p,
                access,
                trunc,
                append,
            } => {
                let r = match self.resolve(p).await? {
                    Ok(r) => r,
                    Err(_) => return Ok(()),
                };
                let Some((id, ino)) = r.child else {
                    return Ok(());
                };
                self.open_node(id, ino, access, trunc, append).await
            }
            Op::Write { h, off, len, seed } => self.write(h, off, len, seed).await,
            Op::Read { h, off, len } => self.read(h, off, len).await,
            Op::Ftruncate { h, size } => self.ftruncate(h, size).await,
            Op::Truncate { p, size } => self.truncate(p, size).await,
            Op::Close { h } => match self.handle_index(h) {
                Some(i) => self.close(i).await,
                None => Ok(()),
            },
            Op::Fsync { h } => self.fsync(h).await,
            Op::Unlink { p } => self.unlink(p).await,
            Op::Mkdir { p, mode } => self.mkdir(p, mode).await,
            Op::Rmdir { p } => self.rmdir(p).await,
            Op::Rename {
                from,
                to,
                noreplace,
            } => self.rename(from, to, noreplace).await,
            Op::Chmod { p, mode } => self.set_meta(p, Some(mode), None).await,
            Op::Utimens { p, secs } => self.set_meta(p, None, Some(secs)).await,
            Op::Symlink { p, target } => self.symlink(p, TARGETS[target as usize]).await,
            Op::Readlink { p } => self.readlink(p).await,
            Op::Readdir { dir } => match self.dir_at(dir).await? {
                Ok((id, ino)) => self.check_readdir(id, ino).await,
                Err(_) => Ok(()),
            },
            Op::Stat { p } => self.stat(p).await,
            Op::Forget { p } => self.forget(p).await,
            Op::Remount => self.remount().await,
            Op::OutsidePut { p, len, seed } => self.outside_put(p, len, seed).await,
            Op::OutsideDelete { p, marker } => self.outside_delete(p, marker).await,
            Op::Transient { op, kind } => {
                self.transient_fault(op, kind);
                Ok(())
            }
        }
    }

    fn handle_index(&self, h: u8) -> Option<usize> {
        let n = self.model.handles.len();
        (n > 0).then(|| h as usize % n)
    }

    /// open(O_CREAT) as the kernel does it: lookup, then create or open.
    async fn create(&mut self, p: P, access: Access, excl: bool, trunc: bool, mode: u16) -> Check {
        let r = match self.resolve(p).await? {
            Ok(r) => r,
            Err(_) => return Ok(()),
        };
        if let Some((id, ino)) = r.child {
            // the kernel answers these itself
            if excl || self.model.node(id).kind != Kind::File {
                return Ok(());
            }
            return self.open_node(id, ino, access, trunc, false).await;
        }
        let got = self
            .fs
            .create(r.dir_ino, p.name(), u32::from(mode), access.flags(), CALLER)
            .await;
        let (attr, opened) = got.map_err(|e| format!("create: {e:?}"))?;
        let id = self.model.add(r.dir, p.name(), Kind::File, u32::from(mode));
        let group = self.model.join_group(id, false, true);
        self.check_attr(id, &attr, "create")?;
        self.note_ino(id, attr.ino, true)?;
        self.model.handles.push(Handle {
            kind: HandleKind::Write {
                group,
                access,
                append: false,
            },
            fh: opened.fh,
            ino: attr.ino,
        });
        Ok(())
    }

    async fn open_node(
        &mut self,
        id: NodeId,
        ino: u64,
        access: Access,
        trunc: bool,
        append: bool,
    ) -> Check {
        let mut flags = access.flags();
        if trunc {
            flags |= libc::O_TRUNC;
        }
        if append {
            flags |= libc::O_APPEND;
        }
        match self.model.node(id).kind {
            Kind::Dir if access.writes() => {
                let got = self.fs.open(ino, flags, CALLER).await;
                return expect_errno("open of a directory for writing", &got, libc::EISDIR);
            }
            // opendir, or following a symlink: not this operation
            Kind::Dir | Kind::Symlink => return Ok(()),
            Kind::File => {}
        }
        let group = self.model.node(id).group;
        let opened = self
            .fs
            .open(ino, flags, CALLER)
            .await
            .map_err(|e| format!("open {} {access:?}: {e:?}", self.path(id)))?;
        let kind = if access.writes() {
            let group = self.model.join_group(id, trunc, false);
            HandleKind::Write {
                group,
                access,
                append,
            }
        } else if let Some(group) = group {
            HandleKind::Peek { group }
        } else {
            let node = self.model.node(id);
            HandleKind::Read {
                node: id,
                snapshot: node.content.clone(),
                version: node.version,
            }
        };
        self.model.handles.push(Handle {
            kind,
            fh: opened.fh,
            ino,
        });
        Ok(())
    }

    async fn write(&mut self, h: u8, off: u32, len: u32, seed: u8) -> Check {
        let Some(i) = self.handle_index(h) else {
            return Ok(());
        };
        if len == 0 {
            // the kernel sends no empty writes
            return Ok(());
        }
        let handle = self.model.handles[i].clone();
        let data = pattern(seed, len as usize);
        let HandleKind::Write { group, append, .. } = handle.kind else {
            let got = write_as_the_adapter(&self.fs, handle.fh, u64::from(off), &data).await;
            return expect_errno("write through a read-only handle", &got, libc::EBADF);
        };
        let node = self.model.groups[group].node;
        // O_APPEND: the kernel writes at the size it knows
        let off = if append {
            self.model.node(node).content.len()
        } else {
            off as usize
        };
        let got = write_as_the_adapter(&self.fs, handle.fh, off as u64, &data).await;
        ensure!(
            matches!(got, Ok(n) if n == len),
            "write of {len} at {off}: {got:?}"
        );
        let n = self.model.node_mut(node);
        if n.content.len() < off + data.len() {
            n.content.resize(off + data.len(), 0);
        }
        n.content[off..off + data.len()].copy_from_slice(&data);
        n.mtime = None;
        self.model.groups[group].pending = true;
        Ok(())
    }

    async fn read(&mut self, h: u8, off: u32, len: u32) -> Check {
        let Some(i) = self.handle_index(h) else {
            return Ok(());
        };
        if len == 0 {
            return Ok(());
        }
        let handle = self.model.handles[i].clone();
        let slice = |b: &[u8]| {
            let start = (off as usize).min(b.len());
            let end = (off as usize + len as usize).min(b.len());
            b[start..end].to_vec()
        };
        let got = match &handle.kind {
            HandleKind::Write {
                access: Access::Write,
                ..
            } => return Ok(()), // EBADF from the kernel
            _ => self.fs.read(handle.fh, u64::from(off), len).await,
        };
        let got = got.map(|b| b.to_vec());
        match handle.kind {
            HandleKind::Write { group, .. } | HandleKind::Peek { group } => {
                let g = &self.model.groups[group];
                let want = slice(self.model.group_bytes(group));
                if g.ended.is_some() && g.ended_version != self.model.node(g.node).version {
                    // the file was written again since this reader's writers closed: what
                    // they wrote, or ESTALE
                    return self.stale_read_ok(&got, &want, "read of a closed writer's data");
                }
                ensure!(
                    got.as_ref().ok() == Some(&want),
                    "read {len} at {off} through a writer's data: {} , model {} bytes",
                    describe(&got),
                    want.len()
                );
            }
            HandleKind::Read {
                node,
                ref snapshot,
                version,
            } => {
                let want = slice(snapshot);
                let n = self.model.node(node);
                if n.version != version || !self.model.linked(node) {
                    return self.stale_read_ok(&got, &want, "read of a replaced version");
                }
                ensure!(
                    got.as_ref().ok() == Some(&want),
                    "read {len} at {off} of {}: {}, model {} bytes",
                    self.path(node),
                    describe(&got),
                    want.len()
                );
            }
        }
        Ok(())
    }

    /// A reader of a version that was replaced, renamed or removed since it opened reads that
    /// version or fails (SEMANTICS.md: ESTALE; ENOENT once the object is gone); it never
    /// reads bytes of another version.
    fn stale_read_ok(
        &self,
        got: &Result<Vec<u8>, bucketfs::fs::FsError>,
        want: &[u8],
        what: &str,
    ) -> Check {
        match got {
            Ok(b) if b == want => Ok(()),
            Err(e) if e.errno == libc::ESTALE || e.errno == libc::ENOENT => Ok(()),
            other => Err(format!(
                "{what}: {}, model: {} bytes of the old version or ESTALE",
                describe(other),
                want.len()
            )),
        }
    }

    async fn ftruncate(&mut self, h: u8, size: u32) -> Check {
        let Some(i) = self.handle_index(h) else {
            return Ok(());
        };
        let handle = self.model.handles[i].clone();
        let HandleKind::Write { group, .. } = handle.kind else {
            return Ok(()); // EINVAL from the kernel
        };
        let req = SetAttr {
            size: Some(u64::from(size)),
            fh: Some(handle.fh),
            ..SetAttr::default()
        };
        let got = self.fs.setattr(handle.ino, req, CALLER).await;
        let attr = got.map_err(|e| format!("ftruncate to {size}: {e:?}"))?;
        ensure!(
            attr.size == u64::from(size),
            "ftruncate to {size}: size {}",
            attr.size
        );
        let node = self.model.groups[group].node;
        let n = self.model.node_mut(node);
        n.content.resize(size as usize, 0);
        n.mtime = None;
        self.model.groups[group].pending = true;
        Ok(())
    }

    async fn truncate(&mut self, p: P, size: u32) -> Check {
        let Ok(Resolved {
            child: Some((id, ino)),
            ..
        }) = self.resolve(p).await?
        else {
            return Ok(());
        };
        let req = SetAttr {
            size: Some(u64::from(size)),
            ..SetAttr::default()
        };
        match self.model.node(id).kind {
            Kind::Dir => {
                let got = self.fs.setattr(ino, req, CALLER).await;
                return expect_errno("truncate of a directory", &got, libc::EISDIR);
            }
            Kind::Symlink => return Ok(()), // follows the link
            Kind::File => {}
        }
        let got = self.fs.setattr(ino, req, CALLER).await;
        let attr = got.map_err(|e| format!("truncate {} to {size}: {e:?}", self.path(id)))?;
        ensure!(
            attr.size == u64::from(size),
            "truncate to {size}: size {}",
            attr.size
        );
        let changed = self.model.node(id).content.len() != size as usize;
        let n = self.model.node_mut(id);
        n.content.resize(size as usize, 0);
        match n.group {
            Some(g) => {
                n.mtime = None;
                self.model.groups[g].pending = true;
            }
            None if changed => {
                n.mtime = None;
                n.version += 1;
                let key = self.model.key(id);
                let body = self.model.node(id).content.clone();
                self.model.put(&key, body);
            }
            None => {}
        }
        Ok(())
    }

    /// close(2): flush, then release; the last writer's close uploads.
    pub async fn close(&mut self, i: usize) -> Check {
        let handle = self.model.handles.remove(i);
        let flushed = self.fs.flush(handle.fh, CALLER.pid).await;
        let released = self.fs.release(handle.fh).await;
        ensure!(
            flushed.is_ok() && released.is_ok(),
            "close: flush {flushed:?}, release {released:?}"
        );
        if let HandleKind::Write { group, .. } = handle.kind {
            let g = &mut self.model.groups[group];
            g.writers -= 1;
            if g.writers == 0 {
                self.model.commit(group);
                self.model.end_group(group);
            }
        }
        Ok(())
    }

    async fn fsync(&mut self, h: u8) -> Check {
        let Some(i) = self.handle_index(h) else {
            return Ok(());
        };
        let handle = self.model.handles[i].clone();
        let got = self.fs.fsync(handle.fh).await;
        got.map_err(|e| format!("fsync: {e:?}"))?;
        match handle.kind {
            HandleKind::Write { group, .. } => self.model.commit(group),
            HandleKind::Read { node, .. } => self.model.node_mut(node).meta_pending = false,
            HandleKind::Peek { .. } => {}
        }
        Ok(())
    }

    async fn unlink(&mut self, p: P) -> Check {
        let r = match self.resolve(p).await? {
            Ok(r) => r,
            Err(_) => return Ok(()),
        };
        let got = self.fs.unlink(r.dir_ino, p.name()).await;
        let Some((id, _)) = r.child else {
            return expect_errno("unlink of nothing", &got, libc::ENOENT);
        };
        if self.model.node(id).kind == Kind::Dir {
            return expect_errno("unlink of a directory", &got, libc::EISDIR);
        }
        got.map_err(|e| format!("unlink {}: {e:?}", self.path(id)))?;
        if self.model.node(id).in_bucket {
            let key = self.model.key(id);
            self.model.delete(&key);
        }
        self.model.detach(id);
        Ok(())
    }

    async fn mkdir(&mut self, p: P, mode: u16) -> Check {
        let r = match self.resolve(p).await? {
            Ok(r) => r,
            Err(_) => return Ok(()),
        };
        let got = self
            .fs
            .mkdir(r.dir_ino, p.name(), u32::from(mode), CALLER)
            .await;
        if r.child.is_some() {
            return expect_errno("mkdir over an existing name", &got, libc::EEXIST);
        }
        let attr = got.map_err(|e| format!("mkdir: {e:?}"))?;
        let id = self.model.add(r.dir, p.name(), Kind::Dir, u32::from(mode));
        self.model.node_mut(id).marker = true;
        let key = self.model.key(id);
        self.model.put(&key, Vec::new());
        self.check_attr(id, &attr, "mkdir")?;
        self.note_ino(id, attr.ino, true)
    }

    async fn rmdir(&mut self, p: P) -> Check {
        let r = match self.resolve(p).await? {
            Ok(r) => r,
            Err(_) => return Ok(()),
        };
        let got = self.fs.rmdir(r.dir_ino, p.name()).await;
        let Some((id, _)) = r.child else {
            return expect_errno("rmdir of nothing", &got, libc::ENOENT);
        };
        let node = self.model.node(id);
        if node.kind != Kind::Dir {
            return expect_errno("rmdir of a file", &got, libc::ENOTDIR);
        }
        if !node.children.is_empty() {
            return expect_errno("rmdir of a non-empty directory", &got, libc::ENOTEMPTY);
        }
        got.map_err(|e| format!("rmdir {}: {e:?}", self.path(id)))?;
        let key = self.model.key(id);
        self.model.delete(&key);
        self.model.detach(id);
        Ok(())
    }

    async fn rename(&mut self, from: P, to: P, noreplace: bool) -> Check {
        let src = match self.resolve(from).await? {
            Ok(r) => r,
            Err(_) => return Ok(()),
        };
        let dst = match self.resolve(to).await? {
            Ok(r) => r,
            Err(_) => return Ok(()),
        };
        let flags = if noreplace { libc::RENAME_NOREPLACE } else { 0 };
        let fs = self.fs.clone();
        let (sd, dd) = (src.dir_ino, dst.dir_ino);
        let call = move |_: &Harness| {
            let fs = fs.clone();
            async move { fs.rename(sd, from.name(), dd, to.name(), flags).await }
        };
        let Some((s, _)) = src.child else {
            let got = call(self).await;
            return expect_errno("rename of nothing", &got, libc::ENOENT);
        };
        if self.model.is_under(dst.dir, s) {
            return Ok(()); // EINVAL from the kernel: a directory into itself
        }
        if let Some((t, _)) = dst.child {
            if t == s {
                let got = call(self).await;
                return got.map_err(|e| format!("rename onto itself: {e:?}"));
            }
            let (sk, tk) = (self.model.node(s).kind, self.model.node(t).kind);
            let refused = if noreplace {
                Some(libc::EEXIST)
            } else if sk == Kind::Dir && tk != Kind::Dir {
                Some(libc::ENOTDIR)
            } else if sk != Kind::Dir && tk == Kind::Dir {
                Some(libc::EISDIR)
            } else if tk == Kind::Dir && !self.model.node(t).children.is_empty() {
                Some(libc::ENOTEMPTY)
            } else {
                None
            };
            if let Some(errno) = refused {
                let got = call(self).await;
                return expect_errno("rename onto an existing name", &got, errno);
            }
        }
        let got = call(self).await;
        got.map_err(|e| format!("rename {} to {to:?}: {e:?}", self.path(s)))?;
        // the target goes, as an unlink would take it
        if let Some((t, _)) = dst.child {
            let tn = self.model.node(t);
            if tn.in_bucket || tn.marker {
                let key = self.model.key(t);
                self.model.delete(&key);
            }
            let old = self.model.node_mut(dst.dir).children.remove(to.name());
            assert_eq!(old, Some(t));
            self.model.node_mut(t).parent = None;
            self.model.detach(t);
        }
        let old_key = self.model.key(s);
        let (old_parent, old_name) = self.model.node(s).parent.clone().expect("linked");
        self.model.node_mut(old_parent).children.remove(&old_name);
        self.model
            .node_mut(dst.dir)
            .children
            .insert(to.name().to_string(), s);
        self.model.node_mut(s).parent = Some((dst.dir, to.name().to_string()));
        let new_key = self.model.key(s);
        match self.model.node(s).kind {
            Kind::Dir => {
                self.model.move_prefix(&old_key, &new_key);
                for n in self.model.subtree(s) {
                    let node = self.model.node_mut(n);
                    node.version += 1;
                    node.meta_pending = false;
                    if let Some(g) = node.group {
                        // the upload starts again under the new name
                        self.model.groups[g].pending = true;
                    }
                }
            }
            _ => {
                let n = self.model.node_mut(s);
                n.version += 1;
                match n.group {
                    Some(g) => {
                        // the open file's upload lands under the new name at its commit
                        let was = n.in_bucket;
                        n.in_bucket = false;
                        self.model.groups[g].pending = true;
                        if was {
                            self.model.delete(&old_key);
                        }
                    }
                    None => {
                        n.meta_pending = false;
                        let body = self.model.bucket.remove(&old_key).unwrap_or_default();
                        self.model.put(&new_key, body);
                    }
                }
            }
        }
        self.model.vanish_if_implicit(old_parent);
        Ok(())
    }

    async fn set_meta(&mut self, p: P, mode: Option<u16>, secs: Option<u32>) -> Check {
        let Ok(Resolved {
            child: Some((id, ino)),
            ..
        }) = self.resolve(p).await?
        else {
            return Ok(());
        };
        if self.model.node(id).kind == Kind::Symlink {
            return Ok(()); // chmod follows the link
        }
        let time = secs.map(|s| UNIX_EPOCH + Duration::from_secs(u64::from(s)));
        let req = SetAttr {
            mode: mode.map(u32::from),
            atime: time,
            mtime: time,
            ..SetAttr::default()
        };
        let got = self.fs.setattr(ino, req, CALLER).await;
        let attr = got.map_err(|e| format!("setattr {}: {e:?}", self.path(id)))?;
        let n = self.model.node_mut(id);
        if let Some(m) = mode {
            n.mode = u32::from(m);
        }
        if let Some(s) = secs {
            n.mtime = Some(u64::from(s));
        }
        if n.kind == Kind::Dir && !n.marker {
            // a directory without a marker gets one at once, carrying the change
            n.marker = true;
            let key = self.model.key(id);
            self.model.put(&key, Vec::new());
        } else {
            n.meta_pending = true;
        }
        self.check_attr(id, &attr, "setattr")
    }

    async fn symlink(&mut self, p: P, target: &str) -> Check {
        let r = match self.resolve(p).await? {
            Ok(r) => r,
            Err(_) => return Ok(()),
        };
        let got = self.fs.symlink(r.dir_ino, p.name(), target, CALLER).await;
        if r.child.is_some() {
            return expect_errno("symlink over an existing name", &got, libc::EEXIST);
        }
        let attr = got.map_err(|e| format!("symlink: {e:?}"))?;
        let id = self.model.add(r.dir, p.name(), Kind::Symlink, 0o777);
        let n = self.model.node_mut(id);
        n.content = target.as_bytes().to_vec();
        n.in_bucket = true;
        let key = self.model.key(id);
        self.model.put(&key, target.as_bytes().to_vec());
        self.check_attr(id, &attr, "symlink")?;
        self.note_ino(id, attr.ino, true)
    }

    async fn readlink(&mut self, p: P) -> Check {
        let Ok(Resolved {
            child: Some((id, ino)),
            ..
        }) = self.resolve(p).await?
        else {
            return Ok(());
        };
        let got = self.fs.readlink(ino).await;
        let node = self.model.node(id);
        if node.kind != Kind::Symlink {
            return expect_errno("readlink of a non-link", &got, libc::EINVAL);
        }
        ensure!(
            got.as_ref().ok() == Some(&node.content),
            "readlink {}: {got:?}",
            self.path(id)
        );
        Ok(())
    }

    async fn stat(&mut self, p: P) -> Check {
        let Ok(Resolved {
            child: Some((id, ino)),
            ..
        }) = self.resolve(p).await?
        else {
            return Ok(());
        };
        let attr = self
            .fs
            .getattr(ino)
            .await
            .map_err(|e| format!("getattr {}: {e:?}", self.path(id)))?;
        ensure!(attr.ino == ino, "getattr of {ino} answered {}", attr.ino);
        self.check_attr(id, &attr, "getattr")
    }

    async fn forget(&mut self, p: P) -> Check {
        let Ok(Resolved {
            child: Some((id, ino)),
            ..
        }) = self.resolve(p).await?
        else {
            return Ok(());
        };
        // the kernel keeps what is open, and directories while it knows their children
        let node = self.model.node(id);
        if node.kind == Kind::Dir || self.model.open_under(id) {
            return Ok(());
        }
        let n = node.lookups;
        self.fs.forget(ino, n);
        self.model.node_mut(id).lookups = 0;
        Ok(())
    }

    async fn remount(&mut self) -> Check {
        while !self.model.handles.is_empty() {
            self.close(0).await?;
        }
        self.remount_core().await?;
        self.check_bucket()?;
        self.check_tree().await
    }

    /// Another client puts a file at `p`'s key: a new file, or new content of a closed one.
    async fn outside_put(&mut self, p: P, len: u32, seed: u8) -> Check {
        let dir = match self.model.dir(p.parent()) {
            Ok(d) => Some(d),
            Err(libc::ENOENT) => None,
            Err(_) => return self.skip("outside put under a file"),
        };
        let existing = dir.and_then(|d| self.model.child(d, p.name()));
        if let Some(id) = existing {
            let n = self.model.node(id);
            if n.kind != Kind::File || n.group.is_some() || n.meta_pending {
                return self.skip("outside put over a directory, link or busy file");
            }
        }
        let dir = match dir {
            Some(d) => d,
            None => {
                let name = p.parent().expect("the root exists");
                let mode = self.model.default_dir_mode;
                self.model
                    .add(super::reference::ROOT, name, Kind::Dir, mode)
            }
        };
        let id = match existing {
            Some(id) => id,
            None => {
                let mode = self.model.default_file_mode;
                self.model.add(dir, p.name(), Kind::File, mode)
            }
        };
        let body = pattern(seed, len as usize);
        let key = self.model.key(id);
        self.srv.put_object(&key, body.clone());
        let default_mode = self.model.default_file_mode;
        let n = self.model.node_mut(id);
        n.content = body.clone();
        n.mode = default_mode;
        n.mtime = None;
        n.version += 1;
        n.in_bucket = true;
        self.model.put(&key, body);
        Ok(())
    }

    /// Another client deletes the object at `p` (a file, or a directory's marker).
    async fn outside_delete(&mut self, p: P, marker: bool) -> Check {
        let Ok(dir) = self.model.dir(p.parent()) else {
            return Ok(());
        };
        let Some(id) = self.model.child(dir, p.name()) else {
            return Ok(());
        };
        let n = self.model.node(id);
        if n.meta_pending || n.group.is_some() {
            return self.skip("outside delete of a busy node");
        }
        let key = self.model.key(id);
        match (n.kind, marker) {
            (Kind::Dir, true) if n.marker => {
                self.srv.delete_object(&key);
                self.model.delete(&key);
                // the mode was the marker's
                let mode = self.model.default_dir_mode;
                let n = self.model.node_mut(id);
                n.marker = false;
                n.mode = mode;
                self.model.vanish_if_implicit(id);
            }
            (Kind::File | Kind::Symlink, false) => {
                self.srv.delete_object(&key);
                self.model.delete(&key);
                self.model.detach(id);
            }
            _ => {}
        }
        Ok(())
    }
}

fn describe(got: &Result<Vec<u8>, bucketfs::fs::FsError>) -> String {
    match got {
        Ok(b) => format!("{} bytes", b.len()),
        Err(e) => format!(
            "{} ({})",
            bucketfs::fs::error::errno_name(e.errno),
            e.reason
        ),
    }
}

/// A write as the FUSE adapter makes it: taken at once when it just continues the part being
/// filled (`try_write_now`), else the long way.
async fn write_as_the_adapter(
    fs: &Filesystem,
    fh: u64,
    off: u64,
    data: &[u8],
) -> bucketfs::fs::FsResult<u32> {
    match fs.try_write_now(fh, off, data) {
        Some(got) => got,
        None => fs.write(fh, off, data).await,
    }
}

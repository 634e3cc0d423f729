//! The upload journal: which multipart uploads this machine started and did not finish, so that
//! the next mount can resume them (from `--cache-dir` part files, for files that were closed) or
//! abort them. One append-only text file per bucket and prefix.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use parking_lot::Mutex;

use super::blocking::blocking;

/// What the journal says about one upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalEntry {
    pub upload_id: String,
    pub key: String,
    /// Names the directory holding its part files.
    pub local_id: String,
    /// Set once the file was closed: the upload has this many parts.
    pub closed_parts: Option<u32>,
    /// Created with the CRC32C checksum algorithm: its parts carry CRC32C, not MD5.
    pub crc32c: bool,
    /// What the close's completion was conditional on: a resume keeps the condition.
    pub condition: Condition,
}

/// The condition a closed upload's completion carries (what the key held when the file was
/// opened): none, no object (a new file), or the version it replaces.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Condition {
    #[default]
    None,
    Absent,
    Etag(String),
}

impl Condition {
    /// The condition `opts` carries.
    pub fn of(opts: &crate::s3::PutOptions) -> Condition {
        match (&opts.if_match, opts.if_none_match_any) {
            (Some(e), _) => Condition::Etag(e.clone()),
            (None, true) => Condition::Absent,
            (None, false) => Condition::None,
        }
    }

    /// Put options that carry this condition (and nothing else).
    pub fn options(&self) -> crate::s3::PutOptions {
        crate::s3::PutOptions {
            if_match: match self {
                Condition::Etag(e) => Some(e.clone()),
                _ => None,
            },
            if_none_match_any: *self == Condition::Absent,
            ..Default::default()
        }
    }

    fn to_words(&self) -> String {
        match self {
            Condition::None => String::new(),
            Condition::Absent => " new".into(),
            Condition::Etag(e) => format!(" match {}", hex_encode(e)),
        }
    }

    fn from_words(w: &[&str]) -> Condition {
        match w {
            ["new", ..] => Condition::Absent,
            ["match", e, ..] => hex_decode(e).map_or(Condition::None, Condition::Etag),
            _ => Condition::None,
        }
    }
}

#[derive(Debug)]
pub struct UploadJournal {
    /// This mount's part files: one directory per bucket and prefix.
    parts: PathBuf,
    path: PathBuf,
    file: Mutex<Option<File>>,
    /// Held shared for the daemon's life (`flock`), so that a mount can tell whether another
    /// daemon of the same bucket and prefix still uses the part files.
    _lock: Option<File>,
    /// No other daemon held the lock when this one opened the journal.
    alone: bool,
    /// Part directories being removed in the background (see [`UploadJournal::finished`]).
    removals: std::sync::Arc<Removals>,
}

/// Count of background removals under way, and a wake-up when one ends.
#[derive(Debug, Default)]
struct Removals {
    running: Mutex<usize>,
    ended: tokio::sync::Notify,
}

/// `flock(2)`; whether it was granted.
fn flock(file: &File, op: libc::c_int) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a descriptor this File owns.
    unsafe { libc::flock(file.as_raw_fd(), op) == 0 }
}

fn hex_encode(s: &str) -> String {
    hex::encode(s.as_bytes())
}

fn hex_decode(s: &str) -> Option<String> {
    String::from_utf8(hex::decode(s).ok()?).ok()
}

impl UploadJournal {
    /// The journal for `bucket`/`prefix` under `dir` (created if missing).
    pub fn open(dir: &Path, bucket: &str, prefix: &str) -> std::io::Result<UploadJournal> {
        let id = format!("{bucket}/{prefix}");
        let digest = <sha2::Sha256 as sha2::Digest>::digest(id.as_bytes());
        let parts = dir.join("parts").join(hex::encode(&digest[..8]));
        std::fs::create_dir_all(&parts)?;
        let name = format!("uploads-{}.journal", hex_encode(&id));
        let path = dir.join(name);
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        let lock = File::create(parts.join(".lock")).ok();
        let alone = lock
            .as_ref()
            .is_some_and(|l| flock(l, libc::LOCK_EX | libc::LOCK_NB));
        if let Some(l) = &lock {
            flock(l, libc::LOCK_SH);
        }
        Ok(UploadJournal {
            parts,
            path,
            file: Mutex::new(Some(file)),
            _lock: lock,
            alone,
            removals: Default::default(),
        })
    }

    /// Part files a crashed earlier daemon left that no unfinished upload (`keep`) needs are
    /// removed — only when no other daemon of this bucket and prefix is running.
    pub fn remove_orphans(&self, keep: &[JournalEntry]) {
        let pending: Vec<String> = self
            .unfinished_pending()
            .into_iter()
            .map(|(l, _)| l)
            .collect();
        if !self.alone {
            tracing::debug!("another bucketfs uses this staging area: its files are left alone");
            return;
        }
        let Ok(dir) = std::fs::read_dir(&self.parts) else {
            return;
        };
        let mut removed = 0;
        for entry in dir.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == ".lock" || keep.iter().any(|e| e.local_id == name) || pending.contains(&name)
            {
                continue;
            }
            if std::fs::remove_dir_all(entry.path()).is_ok() {
                removed += 1;
            }
        }
        if removed > 0 {
            tracing::info!("removed {removed} staging dir(s) an earlier bucketfs left behind");
        }
    }

    /// Where part `n` of the upload known locally as `local_id` is kept.
    pub fn part_path(&self, local_id: &str, n: u32) -> PathBuf {
        self.parts.join(local_id).join(n.to_string())
    }

    pub fn parts_dir(&self, local_id: &str) -> PathBuf {
        self.parts.join(local_id)
    }

    /// One line, on disk before this returns (the fsync blocks: the runtime is told).
    fn append(&self, line: &str) {
        blocking(|| {
            let mut guard = self.file.lock();
            if let Some(f) = guard.as_mut() {
                if let Err(e) = writeln!(f, "{line}").and_then(|_| f.sync_data()) {
                    tracing::warn!("upload journal {}: {e}", self.path.display());
                }
            }
        })
    }

    /// An upload began; `crc32c`: created with that checksum algorithm (its parts, sent again
    /// by a later mount, must carry the same kind of checksum).
    pub fn started(&self, upload_id: &str, local_id: &str, key: &str, crc32c: bool) {
        let algorithm = if crc32c { " crc32c" } else { "" };
        self.append(&format!(
            "start {upload_id} {local_id} {}{algorithm}",
            hex_encode(key)
        ));
    }

    /// Written to again after a failed completion: not to be resumed as it was closed.
    pub fn reopened(&self, upload_id: &str) {
        self.append(&format!("open {upload_id}"));
    }

    /// The file was closed: the upload has `parts` parts, and its completion carries
    /// `condition` (as a resume's does).
    pub fn closed(&self, upload_id: &str, parts: u32, condition: &Condition) {
        self.append(&format!(
            "closed {upload_id} {parts}{}",
            condition.to_words()
        ));
    }

    /// The upload was completed or aborted; its part files go, in the background (removing a
    /// GiB of part files takes ext4 a third of a second, which a close need not wait for; the
    /// directory's name is never used again, and one a crash leaves is removed by the next
    /// mount as an orphan). [`UploadJournal::settle`] waits for them.
    pub fn finished(&self, upload_id: &str, local_id: &str) {
        self.ended(upload_id);
        let dir = self.parts_dir(local_id);
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            let _ = std::fs::remove_dir_all(dir);
            return;
        };
        *self.removals.running.lock() += 1;
        let removals = self.removals.clone();
        rt.spawn_blocking(move || {
            let _ = std::fs::remove_dir_all(dir);
            *removals.running.lock() -= 1;
            removals.ended.notify_waiters();
        });
    }

    /// Waits until the part files of finished uploads are removed (unmount, tests).
    pub async fn settle(&self) {
        loop {
            let ended = self.removals.ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            if *self.removals.running.lock() == 0 {
                return;
            }
            ended.await;
        }
    }

    /// The upload is gone from the server; its part files stay (their owner still reads them).
    pub fn ended(&self, upload_id: &str) {
        self.append(&format!("done {upload_id}"));
    }

    /// Part files of an upload that never got an upload id (a small file) are removed.
    pub fn discard_local(&self, local_id: &str) {
        let _ = blocking(|| std::fs::remove_dir_all(self.parts_dir(local_id)));
    }

    /// A hidden zeros object (see `zero_parts.rs`) is about to be created under `key`: a mount
    /// that stops before [`UploadJournal::zeros_deleted`] leaves it for the next to delete.
    pub fn zeros_created(&self, key: &str) {
        self.append(&format!("zeros {}", hex_encode(key)));
    }

    /// The zeros object `key` is deleted. Not fsynced: should the line be lost, the next
    /// mount deletes it again (a missing object is no error).
    pub fn zeros_deleted(&self, key: &str) {
        let line = format!("unzeros {}", hex_encode(key));
        blocking(|| {
            let mut guard = self.file.lock();
            if let Some(f) = guard.as_mut() {
                if let Err(e) = writeln!(f, "{line}") {
                    tracing::warn!("upload journal {}: {e}", self.path.display());
                }
            }
        })
    }

    /// Zeros objects created and not deleted, by key.
    pub fn unfinished_zeros(&self) -> Vec<String> {
        let Ok(f) = File::open(&self.path) else {
            return vec![];
        };
        let mut keys: Vec<String> = Vec::new();
        for line in BufReader::new(f).lines().map_while(Result::ok) {
            let w: Vec<&str> = line.split(' ').collect();
            match w.as_slice() {
                ["zeros", k] => keys.extend(hex_decode(k)),
                ["unzeros", k] => {
                    if let Some(k) = hex_decode(k) {
                        keys.retain(|x| *x != k);
                    }
                }
                _ => {}
            }
        }
        keys
    }

    /// Write-back: a closed file waits for its upload, from the part files of `local_id`
    /// (a later entry of the same id replaces it).
    pub fn pending(&self, local_id: &str, record: &super::upload::PendingRecord) {
        self.pending_after_sync(local_id, record, &[])
            .unwrap_or_else(|e| tracing::warn!("upload journal {}: {e}", self.path.display()));
    }

    /// As [`UploadJournal::pending`], once `files` (and the directory of the first) are on
    /// disk: one trip to the blocking pool for the fsyncs and the journal's own.
    pub fn pending_after_sync(
        &self,
        local_id: &str,
        record: &super::upload::PendingRecord,
        files: &[PathBuf],
    ) -> std::io::Result<()> {
        // a struct of strings and numbers always serializes
        let json = serde_json::to_string(record).unwrap_or_default();
        let line = format!("pending {local_id} {}", hex_encode(&json));
        blocking(|| {
            sync_files(files)?;
            if let Some(dir) = files.first().and_then(|p| p.parent()) {
                File::open(dir)?.sync_all()?;
            }
            let mut guard = self.file.lock();
            if let Some(f) = guard.as_mut() {
                writeln!(f, "{line}")?;
                f.sync_data()?;
            }
            Ok(())
        })
    }

    /// Write-back: the pending upload of `local_id` is over (uploaded or withdrawn);
    /// `drop_files`: its part files go too (else their owner still uses them). Not fsynced:
    /// should the line be lost, the next mount finds the object holds exactly those bytes
    /// already (or sends them again) — nothing is lost either way.
    pub fn landed(&self, local_id: &str, drop_files: bool) {
        let line = format!("landed {local_id}");
        let dir = drop_files.then(|| self.parts_dir(local_id));
        blocking(|| {
            let mut guard = self.file.lock();
            if let Some(f) = guard.as_mut() {
                if let Err(e) = writeln!(f, "{line}") {
                    tracing::warn!("upload journal {}: {e}", self.path.display());
                }
            }
            drop(guard);
            if let Some(dir) = dir {
                let _ = std::fs::remove_dir_all(dir);
            }
        })
    }

    /// Write-back: closed files still waiting for their upload, oldest first, by local id.
    pub fn unfinished_pending(&self) -> Vec<(String, super::upload::PendingRecord)> {
        let Ok(f) = File::open(&self.path) else {
            return vec![];
        };
        let mut order: Vec<String> = Vec::new();
        let mut map: BTreeMap<String, super::upload::PendingRecord> = BTreeMap::new();
        for line in BufReader::new(f).lines().map_while(Result::ok) {
            let w: Vec<&str> = line.split(' ').collect();
            match w.as_slice() {
                ["pending", local, json] => {
                    let record = hex_decode(json).and_then(|j| serde_json::from_str(&j).ok());
                    match record {
                        Some(r) => {
                            order.retain(|l| l != local);
                            order.push(local.to_string());
                            map.insert(local.to_string(), r);
                        }
                        None => tracing::warn!(
                            "upload journal {}: an unreadable pending entry for {local}",
                            self.path.display()
                        ),
                    }
                }
                ["landed", local] => {
                    map.remove(*local);
                    order.retain(|l| l != local);
                }
                _ => {}
            }
        }
        order
            .into_iter()
            .filter_map(|l| map.remove(&l).map(|r| (l, r)))
            .collect()
    }

    /// Nothing unfinished: no upload, no pending file, no directory rename, no zeros object.
    pub fn is_done(&self) -> bool {
        self.unfinished().is_empty()
            && self.unfinished_moves().is_empty()
            && self.unfinished_pending().is_empty()
            && self.unfinished_zeros().is_empty()
    }

    /// A directory rename from prefix `from` to `to` begins: its copies, then its deletes.
    pub fn move_started(&self, from: &str, to: &str) {
        self.append(&format!("move {} {}", hex_encode(from), hex_encode(to)));
    }

    /// The rename of `from` to `to` is complete (or was rolled back).
    pub fn move_done(&self, from: &str, to: &str) {
        self.append(&format!("moved {} {}", hex_encode(from), hex_encode(to)));
    }

    /// Directory renames begun and not done, as (from, to) prefixes.
    pub fn unfinished_moves(&self) -> Vec<(String, String)> {
        let Ok(f) = File::open(&self.path) else {
            return vec![];
        };
        let mut moves: Vec<(String, String)> = Vec::new();
        for line in BufReader::new(f).lines().map_while(Result::ok) {
            let w: Vec<&str> = line.split(' ').collect();
            let pair = |a: &str, b: &str| Some((hex_decode(a)?, hex_decode(b)?));
            match w.as_slice() {
                ["move", a, b] => moves.extend(pair(a, b)),
                ["moved", a, b] => {
                    if let Some(p) = pair(a, b) {
                        if let Some(i) = moves.iter().position(|m| *m == p) {
                            moves.remove(i);
                        }
                    }
                }
                _ => {}
            }
        }
        moves
    }

    /// Uploads started and not finished, as the journal has them.
    pub fn unfinished(&self) -> Vec<JournalEntry> {
        let Ok(f) = File::open(&self.path) else {
            return vec![];
        };
        let mut map: BTreeMap<String, JournalEntry> = BTreeMap::new();
        for line in BufReader::new(f).lines().map_while(Result::ok) {
            let w: Vec<&str> = line.split(' ').collect();
            match w.as_slice() {
                ["start", id, local, key, more @ ..] => {
                    if let Some(key) = hex_decode(key) {
                        map.insert(
                            id.to_string(),
                            JournalEntry {
                                upload_id: id.to_string(),
                                key,
                                local_id: local.to_string(),
                                closed_parts: None,
                                crc32c: more.contains(&"crc32c"),
                                condition: Condition::None,
                            },
                        );
                    }
                }
                ["closed", id, n, condition @ ..] => {
                    if let Some(e) = map.get_mut(*id) {
                        e.closed_parts = n.parse().ok();
                        e.condition = Condition::from_words(condition);
                    }
                }
                ["open", id] => {
                    if let Some(e) = map.get_mut(*id) {
                        e.closed_parts = None;
                    }
                }
                ["done", id] => {
                    map.remove(*id);
                }
                _ => {}
            }
        }
        map.into_values().collect()
    }

    /// At unmount: a journal with nothing unfinished is removed (a mount per endpoint, bucket
    /// and prefix would otherwise leave one file each behind).
    pub fn remove_if_done(&self) {
        if self.is_done() {
            *self.file.lock() = None;
            let _ = std::fs::remove_file(&self.path);
        }
    }

    /// Start a fresh journal (after recovery handled every entry).
    pub fn reset(&self) {
        let mut guard = self.file.lock();
        *guard = None;
        match File::create(&self.path) {
            Ok(f) => *guard = Some(f),
            Err(e) => tracing::warn!("upload journal {}: {e}", self.path.display()),
        }
    }
}

/// Fsync `files`, several at once: the file system commits fsyncs that wait together in one
/// journal commit (a 1 GiB write-back file's 128 part files, synced one after another, took
/// ~0.4 s of its close). Blocking.
fn sync_files(files: &[PathBuf]) -> std::io::Result<()> {
    const AT_ONCE: usize = 8;
    if files.len() <= 1 {
        return files.iter().try_for_each(|p| File::open(p)?.sync_all());
    }
    let per = files.len().div_ceil(AT_ONCE);
    std::thread::scope(|scope| {
        let running: Vec<_> = files
            .chunks(per)
            .map(|chunk| {
                scope.spawn(move || chunk.iter().try_for_each(|p| File::open(p)?.sync_all()))
            })
            .collect();
        running.into_iter().try_for_each(|h| {
            h.join()
                .unwrap_or_else(|_| Err(std::io::Error::other("a part file's fsync panicked")))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_synced_together_report_a_failure_of_any() {
        let dir = std::env::temp_dir().join(format!("bfs-journal-sync-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let mut files: Vec<PathBuf> = (0..20).map(|i| dir.join(format!("{i}"))).collect();
        for f in &files {
            std::fs::write(f, b"part").expect("write");
        }
        assert!(sync_files(&files).is_ok());
        assert!(sync_files(&files[..1]).is_ok());
        // one file gone (in the last thread's share): the sync fails
        files.push(dir.join("gone"));
        assert!(sync_files(&files).is_err());
        assert!(sync_files(&files[20..]).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn entries_follow_the_lines() {
        let dir = std::env::temp_dir().join(format!("bfs-journal-{}", std::process::id()));
        let j = UploadJournal::open(&dir, "b", "p/").expect("open");
        j.reset();
        j.started("u1", "l1", "a key with spaces\nand newline", false);
        j.started("u2", "l2", "k2", false);
        j.closed("u1", 3, &Condition::Etag("\"e 1\"".into()));
        j.started("u3", "l3", "k3", true);
        j.finished("u2", "l2");
        let e = j.unfinished();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].key, "a key with spaces\nand newline");
        assert_eq!(e[0].closed_parts, Some(3));
        assert_eq!(e[0].condition, Condition::Etag("\"e 1\"".into()));
        assert_eq!(e[1].condition, Condition::None, "not closed");
        assert_eq!(e[1].upload_id, "u3");
        assert_eq!(e[1].closed_parts, None);
        assert!(
            !e[0].crc32c && e[1].crc32c,
            "the checksum kind an upload was created with"
        );
        // written to again after a failed completion: not resumed as closed
        j.reopened("u1");
        assert_eq!(j.unfinished()[0].closed_parts, None);
        // closed again, as a new file; a line from before conditions were journaled
        j.closed("u1", 4, &Condition::Absent);
        assert_eq!(j.unfinished()[0].condition, Condition::Absent);
        j.closed("u1", 4, &Condition::None);
        assert_eq!(j.unfinished()[0].condition, Condition::None);
        // directory renames: begun, done
        j.move_started("a/", "b/");
        j.move_started("c d/", "e/");
        j.move_done("a/", "b/");
        assert_eq!(
            j.unfinished_moves(),
            [("c d/".to_string(), "e/".to_string())]
        );
        // zeros objects: created, deleted
        j.zeros_created("p/.bucketfs-zeros-1");
        j.zeros_created("p/.bucketfs-zeros-2");
        j.zeros_deleted("p/.bucketfs-zeros-1");
        assert_eq!(j.unfinished_zeros(), ["p/.bucketfs-zeros-2"]);
        j.reset();
        assert!(j.unfinished().is_empty());
        assert!(j.unfinished_moves().is_empty());
        assert!(j.unfinished_zeros().is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}

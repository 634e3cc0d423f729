//! The changed parts of an object edited in place: in a sparse staging file (part `i` at offset
//! `i × part size`), or in memory (each part holding its share of the memory budget).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use bytes::{Bytes, BytesMut};

use std::sync::Arc;

use super::blocking::blocking;
use super::memory::Reservation;
use super::staging::{Charge, StagingBudget, STAGING_PATIENCE};
use crate::s3::Payload;

enum Store {
    Memory(BTreeMap<u64, (BytesMut, Reservation)>),
    /// Lengths of the parts present in the file.
    Disk {
        file: File,
        path: PathBuf,
        lens: BTreeMap<u64, usize>,
        /// The file's bytes against `--cache-size`.
        charge: Option<Charge>,
    },
}

pub struct DirtyParts {
    part_size: u64,
    store: Store,
    /// Journaled as pending (write-back): the staging file stays when this is dropped (a
    /// later mount sends it).
    keep: bool,
}

impl DirtyParts {
    pub fn memory(part_size: u64) -> DirtyParts {
        DirtyParts {
            part_size,
            store: Store::Memory(BTreeMap::new()),
            keep: false,
        }
    }

    /// Parts in a new staging file at `path` (its directory is created).
    pub fn disk(
        part_size: u64,
        path: PathBuf,
        staging: Option<Arc<StagingBudget>>,
    ) -> io::Result<DirtyParts> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)?;
        Ok(DirtyParts {
            part_size,
            store: Store::Disk {
                file,
                path,
                lens: BTreeMap::new(),
                charge: staging.map(Charge::new),
            },
            keep: false,
        })
    }

    /// Before staging one more part: wait (a while) for room within `--cache-size`.
    pub async fn room_for_a_part(&self) {
        if let Store::Disk {
            charge: Some(c), ..
        } = &self.store
        {
            let deadline = std::time::Instant::now() + STAGING_PATIENCE;
            if !c.budget().wait_for_room(self.part_size, deadline).await {
                c.budget().overrun();
            }
        }
    }

    /// Keep the charge equal to the bytes held.
    fn recharge(&mut self) {
        if let Store::Disk {
            lens,
            charge: Some(c),
            ..
        } = &mut self.store
        {
            c.set(lens.values().map(|&l| l as u64).sum());
        }
    }

    /// The staging file (none: the parts are in memory).
    pub fn path(&self) -> Option<&std::path::Path> {
        match &self.store {
            Store::Disk { path, .. } => Some(path),
            Store::Memory(_) => None,
        }
    }

    /// Whether the staging file outlives this (journaled as pending: a later mount reads it).
    pub fn set_keep(&mut self, keep: bool) {
        self.keep = keep;
    }

    /// Whether the parts live on disk (then they hold no memory).
    pub fn on_disk(&self) -> bool {
        matches!(self.store, Store::Disk { .. })
    }

    pub fn contains(&self, i: u64) -> bool {
        self.len(i).is_some()
    }

    pub fn len(&self, i: u64) -> Option<usize> {
        match &self.store {
            Store::Memory(m) => m.get(&i).map(|(d, _)| d.len()),
            Store::Disk { lens, .. } => lens.get(&i).copied(),
        }
    }

    /// Bytes held, all parts together.
    pub fn total(&self) -> u64 {
        match &self.store {
            Store::Memory(m) => m.values().map(|(d, _)| d.len() as u64).sum(),
            Store::Disk { lens, .. } => lens.values().map(|&l| l as u64).sum(),
        }
    }

    pub fn indices(&self) -> Vec<u64> {
        match &self.store {
            Store::Memory(m) => m.keys().copied().collect(),
            Store::Disk { lens, .. } => lens.keys().copied().collect(),
        }
    }

    /// Part `i` becomes `data` (`reservation`: its memory, unused on disk).
    pub fn insert(&mut self, i: u64, data: &[u8], reservation: Reservation) -> io::Result<()> {
        let at = i * self.part_size;
        match &mut self.store {
            Store::Memory(m) => {
                m.insert(i, (BytesMut::from(data), reservation));
            }
            Store::Disk { file, lens, .. } => {
                blocking(|| file.write_all_at(data, at))?;
                lens.insert(i, data.len());
            }
        }
        self.recharge();
        Ok(())
    }

    /// Write `src` at `from` within part `i`, which already holds at least `from + len` bytes.
    pub fn write(&mut self, i: u64, from: usize, src: &[u8]) -> io::Result<()> {
        let at = i * self.part_size + from as u64;
        match &mut self.store {
            Store::Memory(m) => {
                if let Some((d, _)) = m.get_mut(&i) {
                    d[from..from + src.len()].copy_from_slice(src);
                }
            }
            Store::Disk { file, .. } => blocking(|| file.write_all_at(src, at))?,
        }
        Ok(())
    }

    /// Grow part `i` with zeros, or cut it, to `new_len`.
    pub fn resize(&mut self, i: u64, new_len: usize) -> io::Result<()> {
        let base = i * self.part_size;
        match &mut self.store {
            Store::Memory(m) => {
                if let Some((d, _)) = m.get_mut(&i) {
                    d.resize(new_len, 0);
                }
            }
            Store::Disk { file, lens, .. } => {
                if let Some(len) = lens.get_mut(&i) {
                    if new_len > *len {
                        // the file may still hold old bytes there: zeros, 1 MiB at a time
                        let (from, to) = (base + *len as u64, base + new_len as u64);
                        blocking(|| {
                            let zeros = vec![0u8; ((to - from) as usize).min(1 << 20)];
                            let mut at = from;
                            while at < to {
                                let n = ((to - at) as usize).min(zeros.len());
                                file.write_all_at(&zeros[..n], at)?;
                                at += n as u64;
                            }
                            Ok::<_, io::Error>(())
                        })?;
                    }
                    *len = new_len;
                }
            }
        }
        self.recharge();
        Ok(())
    }

    /// Bytes `[from, to)` of part `i`.
    pub fn read(&self, i: u64, from: usize, to: usize) -> io::Result<Bytes> {
        match &self.store {
            Store::Memory(m) => Ok(m
                .get(&i)
                .map(|(d, _)| Bytes::copy_from_slice(&d[from..to]))
                .unwrap_or_default()),
            Store::Disk { file, .. } => {
                let mut buf = vec![0u8; to - from];
                blocking(|| file.read_exact_at(&mut buf, i * self.part_size + from as u64))?;
                Ok(Bytes::from(buf))
            }
        }
    }

    /// The first `len` bytes of part `i` as a request body: on disk, read from the staging
    /// file while it is sent.
    pub fn payload(&self, i: u64, len: usize) -> io::Result<Payload> {
        match &self.store {
            Store::Memory(_) => self.read(i, 0, len).map(Payload::from),
            Store::Disk { path, .. } => Ok(Payload::File {
                path: Arc::new(path.clone()),
                offset: i * self.part_size,
                len: len as u64,
            }),
        }
    }

    /// Keep only the parts `keep` says yes to.
    pub fn retain(&mut self, keep: impl Fn(u64) -> bool) {
        match &mut self.store {
            Store::Memory(m) => m.retain(|&i, _| keep(i)),
            Store::Disk { lens, .. } => lens.retain(|&i, _| keep(i)),
        }
        self.recharge();
    }

    pub fn clear(&mut self) {
        match &mut self.store {
            Store::Memory(m) => m.clear(),
            Store::Disk { file, lens, .. } => {
                lens.clear();
                // give the disk space back
                let _ = file.set_len(0);
            }
        }
        self.recharge();
    }
}

impl Drop for DirtyParts {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        if let Store::Disk { path, .. } = &self.store {
            let _ = std::fs::remove_file(path);
            if let Some(dir) = path.parent() {
                let _ = std::fs::remove_dir(dir);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_and_memory_parts_agree() {
        let dir = tempfile_dir();
        let budget = StagingBudget::new(1000);
        let mut d =
            DirtyParts::disk(16, dir.join("p").join("patch"), Some(budget.clone())).expect("disk");
        let mut m = DirtyParts::memory(16);
        for p in [&mut d, &mut m] {
            p.insert(2, b"0123456789", Reservation::default())
                .expect("insert");
            p.write(2, 3, b"abc").expect("write");
            p.resize(2, 12).expect("grow");
            assert_eq!(&p.read(2, 0, 12).expect("read")[..], b"012abc6789\0\0");
            p.resize(2, 4).expect("cut");
            p.resize(2, 6).expect("grow again");
            assert_eq!(&p.read(2, 0, 6).expect("read")[..], b"012a\0\0");
            p.insert(0, b"zz", Reservation::default()).expect("insert");
            assert_eq!(p.indices(), vec![0, 2]);
            assert_eq!(p.total(), 8);
            p.retain(|i| i < 1);
            assert_eq!(p.indices(), vec![0]);
            p.clear();
            assert_eq!(p.total(), 0);
        }
        assert_eq!(
            budget.used(),
            0,
            "the staged bytes are counted and given back"
        );
        drop(d);
        assert!(!dir.join("p").exists(), "staging file removed");
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn tempfile_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("bfs-dirty-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&d);
        d
    }
}

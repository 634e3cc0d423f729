//! The files of parts sent from memory, written in the background while their bytes go to the
//! bucket: the writer does not wait for the disk (a direct write waits for the device, and the
//! server's own writes may keep it busy). Whatever reads or changes a part file, or journals
//! that the parts are on disk, first waits for these writes ([`PartFileWrites::wait`]).

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::task::JoinHandle;

use super::blocking::blocking;
use super::memory::Reservation;

/// Writes under way at most per upload: a disk slower than the network makes the writer wait
/// for the oldest (and the bytes they hold stay bounded).
const MAX_RUNNING: usize = 4;

/// A part's bytes for its file (which holds nothing yet).
pub struct FileWrite {
    pub file: File,
    pub data: Bytes,
}

impl FileWrite {
    /// Writes the bytes (past the page cache where it can). Blocking.
    pub fn run(self) -> io::Result<()> {
        super::direct_io::write_all_at(&self.file, &self.data, 0)
    }
}

/// The part-file writes of one upload still under way, and the first that failed.
#[derive(Default)]
pub struct PartFileWrites {
    running: Mutex<VecDeque<(u32, JoinHandle<io::Result<()>>)>>,
    /// What the first failure said: kept (the part file lacks bytes for good).
    failed: Mutex<Option<String>>,
    /// Told when a write ends (its bytes' hold on the budget let go first).
    ended: Arc<tokio::sync::Notify>,
}

impl PartFileWrites {
    /// Starts `w` on a blocking thread, `held` (the budget's hold on its bytes, shared with
    /// their send) kept until it ends; first waits for the oldest write while
    /// [`MAX_RUNNING`] are under way. Outside a runtime it just runs.
    pub async fn start(&self, part: u32, w: FileWrite, held: Arc<Reservation>) {
        if tokio::runtime::Handle::try_current().is_err() {
            if let Err(e) = w.run() {
                self.note(Err(e));
            }
            return;
        }
        loop {
            let oldest = {
                let mut running = self.running.lock();
                if running.len() < MAX_RUNNING {
                    let ended = self.ended.clone();
                    running.push_back((
                        part,
                        tokio::task::spawn_blocking(move || {
                            let r = w.run();
                            drop(held);
                            ended.notify_waiters();
                            r
                        }),
                    ));
                    return;
                }
                running.pop_front()
            };
            if let Some((_, h)) = oldest {
                self.note(h.await.unwrap_or_else(|e| Err(io::Error::other(e))));
            }
        }
    }

    /// What tells that a write ended (and its room in the budget may be back): take a
    /// `notified()` of it before looking for room, so that an end in between is not missed.
    pub fn ended(&self) -> Arc<tokio::sync::Notify> {
        self.ended.clone()
    }

    /// Whether part `n`'s file is being written (without waiting).
    pub fn busy(&self, n: u32) -> bool {
        self.running
            .lock()
            .iter()
            .any(|(k, h)| *k == n && !h.is_finished())
    }

    /// Waits (blocking) until every write started has ended; an error when one failed, now
    /// or before (a part file then lacks bytes).
    pub fn wait(&self) -> io::Result<()> {
        let hs: Vec<_> = self.running.lock().drain(..).map(|(_, h)| h).collect();
        if !hs.is_empty() {
            let results: Vec<_> =
                blocking(|| hs.into_iter().map(futures::executor::block_on).collect());
            for r in results {
                self.note(r.unwrap_or_else(|e| Err(io::Error::other(e))));
            }
        }
        match self.failed.lock().as_ref() {
            Some(e) => Err(io::Error::other(format!(
                "a part file could not be written: {e}"
            ))),
            None => Ok(()),
        }
    }

    fn note(&self, r: io::Result<()>) {
        if let Err(e) = r {
            tracing::warn!("a part file could not be written: {e}");
            self.failed.lock().get_or_insert(e.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_end_before_wait_returns_and_a_failure_stays_told() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .expect("rt");
        let dir = std::env::temp_dir().join(format!("bfs-part-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let writes = PartFileWrites::default();
        rt.block_on(async {
            for i in 0..6u8 {
                let file = File::create(dir.join(format!("{i}"))).expect("create");
                let data = Bytes::from(vec![i; 100_000 + usize::from(i)]);
                writes
                    .start(
                        u32::from(i),
                        FileWrite { file, data },
                        Arc::new(Reservation::default()),
                    )
                    .await;
            }
            // a read-only file: its write fails
            std::fs::write(dir.join("ro"), b"").expect("ro");
            let file = File::open(dir.join("ro")).expect("open");
            writes
                .start(
                    9,
                    FileWrite {
                        file,
                        data: Bytes::from_static(b"x"),
                    },
                    Arc::new(Reservation::default()),
                )
                .await;
        });
        assert!(writes.wait().is_err(), "the failed write is told");
        assert!(
            writes.wait().is_err(),
            "and stays told: that file lacks bytes"
        );
        assert!(!writes.busy(3));
        for i in 0..6u8 {
            let got = std::fs::read(dir.join(format!("{i}"))).expect("read");
            assert_eq!(got, vec![i; 100_000 + usize::from(i)]);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

//! Open file handles: their numbers, what each one is, an index of the write handles by inode,
//! the inodes whose writer is being released (its handle gone, its upload maybe still running),
//! every change of a writer's handle count and kept state (made under the table's lock), and a
//! notification whenever a writer is flushed or released (what a reopen, rename or unlink
//! waiting for a release listens to).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::futures::Notified;
use tokio::sync::Notify;

use super::file_io::{Handle, WriteHandle};

/// Every open handle by number. Numbers are never reused while the mount lives.
pub(crate) struct Handles {
    state: Mutex<Open>,
    next: AtomicU64,
    writers_changed: Notify,
    /// Operations waiting for a release under way, and who is told when one starts (tests).
    waiting: AtomicUsize,
    wait_started: Notify,
}

#[derive(Default)]
struct Open {
    by_fh: HashMap<u64, Handle>,
    /// inode → its write handles (several may share one writer), so that finding a file's
    /// writer never walks every open handle.
    writers: HashMap<u64, BTreeMap<u64, Arc<WriteHandle>>>,
    /// inode → releases of its write handles under way: taken out of `writers`, not finished.
    releasing: HashMap<u64, usize>,
}

impl Open {
    fn insert(&mut self, fh: u64, h: Handle) {
        if let Handle::Write(w) = &h {
            self.writers
                .entry(w.ino())
                .or_default()
                .insert(fh, w.clone());
        }
        if let Some(old) = self.by_fh.insert(fh, h) {
            self.unindex(fh, &old);
        }
    }

    fn remove(&mut self, fh: u64) -> Option<Handle> {
        let h = self.by_fh.remove(&fh)?;
        self.unindex(fh, &h);
        Some(h)
    }

    /// `fh` is a handle of the writer `w`.
    fn holds(&self, fh: u64, w: &Arc<WriteHandle>) -> bool {
        matches!(self.by_fh.get(&fh), Some(Handle::Write(x)) if Arc::ptr_eq(x, w))
    }

    fn unindex(&mut self, fh: u64, h: &Handle) {
        if let Handle::Write(w) = h {
            if let Some(m) = self.writers.get_mut(&w.ino()) {
                m.remove(&fh);
                if m.is_empty() {
                    self.writers.remove(&w.ino());
                }
            }
        }
    }
}

impl Handles {
    pub(crate) fn new() -> Handles {
        Handles {
            state: Mutex::new(Open::default()),
            next: AtomicU64::new(1),
            writers_changed: Notify::new(),
            waiting: AtomicUsize::new(0),
            wait_started: Notify::new(),
        }
    }

    /// A number for a handle about to be opened.
    pub(crate) fn next_fh(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn insert(&self, fh: u64, h: Handle) {
        self.state.lock().insert(fh, h);
    }

    /// Put `h` under `fh` and drop the handle `old` in one step (nobody sees neither).
    pub(crate) fn replace(&self, old: Option<u64>, fh: u64, h: Handle) {
        let mut st = self.state.lock();
        if let Some(old) = old {
            st.remove(old);
        }
        st.insert(fh, h);
    }

    pub(crate) fn remove(&self, fh: u64) -> Option<Handle> {
        self.state.lock().remove(fh)
    }

    /// Take `fh` out at its release. Until the returned guard goes, a write handle's inode
    /// counts as being released ([`releasing_inos`](Self::releasing_inos)): its upload may still be
    /// running, and the file is neither among the writers nor settled. Whether it was the last
    /// handle of its writer (true for any other handle).
    pub(crate) fn remove_for_release(&self, fh: u64) -> (Option<Handle>, bool, Releasing<'_>) {
        let mut st = self.state.lock();
        let h = st.remove(fh);
        let (ino, last) = match &h {
            Some(Handle::Write(w)) => {
                *st.releasing.entry(w.ino()).or_default() += 1;
                (Some(w.ino()), w.fhs.fetch_sub(1, Ordering::Relaxed) <= 1)
            }
            _ => (None, true),
        };
        (h, last, Releasing { handles: self, ino })
    }

    // A writer's handle count and whether it is kept (see `release`) change only below and in
    // `remove_for_release`, under the table's lock: of an open taking a kept writer back and
    // the uploader letting it go once its upload landed, exactly one happens (both did: the
    // file was taken for not written any more while a writer had it open, and reads went to
    // the bucket at the writer's size).

    /// The writer `w`, released by its last handle, stays under `fh` as kept (see `release`).
    pub(crate) fn insert_kept(&self, fh: u64, w: &Arc<WriteHandle>) {
        let mut st = self.state.lock();
        w.kept.store(true, Ordering::Relaxed);
        st.insert(fh, Handle::Write(w.clone()));
    }

    /// The release of `fh`, `w`'s last handle, keeps `w` where it is, as kept. False: another
    /// handle joined it meanwhile.
    pub(crate) fn keep_last(&self, fh: u64, w: &Arc<WriteHandle>) -> bool {
        let st = self.state.lock();
        let last = w.fhs.load(Ordering::Relaxed) == 1;
        if !last || !st.holds(fh, w) {
            return false;
        }
        w.fhs.store(0, Ordering::Relaxed);
        w.kept.store(true, Ordering::Relaxed);
        true
    }

    /// An open takes back `w`, kept under `fh`: not kept any more, one handle more. False: it
    /// was let go meanwhile.
    pub(crate) fn take_back_kept(&self, fh: u64, w: &Arc<WriteHandle>) -> bool {
        let st = self.state.lock();
        if !st.holds(fh, w) || !w.kept.load(Ordering::Relaxed) {
            return false;
        }
        w.kept.store(false, Ordering::Relaxed);
        w.fhs.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// An open joins `w`, open under other handles. False: its last handle was released (or
    /// it was kept) meanwhile.
    pub(crate) fn join_writer(&self, w: &Arc<WriteHandle>) -> bool {
        let st = self.state.lock();
        let open = st
            .writers
            .get(&w.ino())
            .is_some_and(|m| m.values().any(|x| Arc::ptr_eq(x, w)));
        if !open || w.kept.load(Ordering::Relaxed) {
            return false;
        }
        w.fhs.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// The kept writer `w` leaves `fh` (its upload landed). False: an open took it back first.
    pub(crate) fn let_go_kept(&self, fh: u64, w: &Arc<WriteHandle>) -> bool {
        let mut st = self.state.lock();
        if !st.holds(fh, w) || !w.kept.load(Ordering::Relaxed) {
            return false;
        }
        st.remove(fh);
        true
    }

    /// The inodes whose writer is being released.
    pub(crate) fn releasing_inos(&self) -> Vec<u64> {
        self.state.lock().releasing.keys().copied().collect()
    }

    /// An operation waits for a release under way until the guard goes.
    pub(crate) fn waiting(&self) -> Waiting<'_> {
        self.waiting.fetch_add(1, Ordering::AcqRel);
        self.wait_started.notify_waiters();
        Waiting(self)
    }

    /// Resolves once an operation waits for a release under way (at once if one does).
    pub(crate) async fn someone_waits(&self) {
        loop {
            let started = self.wait_started.notified();
            if self.waiting.load(Ordering::Acquire) > 0 {
                return;
            }
            started.await;
        }
    }

    pub(crate) fn get(&self, fh: u64) -> Option<Handle> {
        self.state.lock().by_fh.get(&fh).cloned()
    }

    /// The write handles of `ino`, by number.
    pub(crate) fn writers_of(&self, ino: u64) -> Vec<(u64, Arc<WriteHandle>)> {
        self.state
            .lock()
            .writers
            .get(&ino)
            .map_or_else(Vec::new, |m| {
                m.iter().map(|(fh, w)| (*fh, w.clone())).collect()
            })
    }

    /// Every writer once (several handles may share one).
    pub(crate) fn all_writers(&self) -> Vec<Arc<WriteHandle>> {
        let st = self.state.lock();
        st.writers
            .values()
            .flat_map(|m| {
                let mut ws: Vec<Arc<WriteHandle>> = Vec::new();
                for w in m.values() {
                    if !ws.iter().any(|o| Arc::ptr_eq(o, w)) {
                        ws.push(w.clone());
                    }
                }
                ws
            })
            .collect()
    }

    /// Resolves at the next flush or release of a writer; create it before looking at the
    /// state it waits on, so that a change in between is not missed.
    pub(crate) fn writers_changed(&self) -> Notified<'_> {
        self.writers_changed.notified()
    }

    /// A writer was flushed or released: wake whoever waits for that.
    pub(crate) fn writer_changed(&self) {
        self.writers_changed.notify_waiters();
    }
}

/// A release under way (see [`Handles::remove_for_release`]); its end wakes the waiters.
pub(crate) struct Releasing<'a> {
    handles: &'a Handles,
    ino: Option<u64>,
}

impl Drop for Releasing<'_> {
    fn drop(&mut self) {
        let Some(ino) = self.ino else { return };
        {
            let mut st = self.handles.state.lock();
            if let Some(n) = st.releasing.get_mut(&ino) {
                *n -= 1;
                if *n == 0 {
                    st.releasing.remove(&ino);
                }
            }
        }
        self.handles.writer_changed();
    }
}

/// An operation waiting for a release under way.
pub(crate) struct Waiting<'a>(&'a Handles);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}

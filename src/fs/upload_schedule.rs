//! The order in which closed files (write-back) go up: oldest close first, a failed one after
//! its wait, none while closes keep coming (up to a limit). Every step costs O(log n): the
//! uploader asks after each upload, and 100,000 files may wait.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

/// The longest a closed file waits for closes to pause before its upload starts anyway.
pub const MAX_HOLD: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// In `ready` (or `ready_now` when it does not wait for closes to pause): goes when its
    /// turn comes.
    Ready,
    /// In `waiting` until this instant (a failed attempt, or parked).
    Waiting(Instant),
    /// Being uploaded; `again`: queued anew meanwhile (goes once more after).
    Uploading { again: bool },
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    closed: Instant,
    failed: u32,
    state: State,
    /// Goes without waiting for closes to pause (a large file: its upload is long anyway).
    at_once: bool,
}

/// Closed files waiting for their upload. Invariant: an entry is in `ready` (by close time)
/// exactly when `Ready`, in `waiting` (by time) exactly when `Waiting`, in neither while
/// `Uploading`.
#[derive(Debug, Default)]
pub struct Schedule {
    entries: HashMap<u64, Entry>,
    ready: BTreeSet<(Instant, u64)>,
    ready_now: BTreeSet<(Instant, u64)>,
    waiting: BTreeSet<(Instant, u64)>,
    /// The latest close (uploads wait for closes to pause).
    last_close: Option<Instant>,
}

impl Schedule {
    fn unlink(&mut self, ino: u64, e: &Entry) {
        match e.state {
            State::Ready => {
                self.ready_set(e.at_once).remove(&(e.closed, ino));
            }
            State::Waiting(t) => {
                self.waiting.remove(&(t, ino));
            }
            State::Uploading { .. } => {}
        }
    }

    fn ready_set(&mut self, at_once: bool) -> &mut BTreeSet<(Instant, u64)> {
        if at_once {
            &mut self.ready_now
        } else {
            &mut self.ready
        }
    }

    fn set(&mut self, ino: u64, mut e: Entry, state: State) {
        self.unlink(ino, &e);
        e.state = state;
        match state {
            State::Ready => {
                self.ready_set(e.at_once).insert((e.closed, ino));
            }
            State::Waiting(t) => {
                self.waiting.insert((t, ino));
            }
            State::Uploading { .. } => {}
        }
        self.entries.insert(ino, e);
    }

    /// `ino` was closed at `closed`: queued, or due at once if it waits (being uploaded: once
    /// more after). `at_once`: it does not wait for closes to pause.
    pub fn push(&mut self, ino: u64, closed: Instant, at_once: bool) {
        self.last_close = Some(self.last_close.map_or(closed, |l| l.max(closed)));
        match self.entries.get(&ino).copied() {
            None => self.set(
                ino,
                Entry {
                    closed,
                    failed: 0,
                    state: State::Ready,
                    at_once,
                },
                State::Ready,
            ),
            Some(e) => match e.state {
                State::Ready => {}
                State::Waiting(_) => self.set(ino, e, State::Ready),
                State::Uploading { .. } => self.set(ino, e, State::Uploading { again: true }),
            },
        }
    }

    /// Up to `n` files due at `now`, oldest close first, marked as being uploaded. While
    /// closes came within `idle`, only files closed [`MAX_HOLD`] ago or more.
    pub fn take(&mut self, n: usize, now: Instant, idle: Duration) -> Vec<u64> {
        while let Some(&(t, ino)) = self.waiting.first() {
            if t > now {
                break;
            }
            if let Some(e) = self.entries.get(&ino).copied() {
                self.set(ino, e, State::Ready);
            } else {
                self.waiting.remove(&(t, ino));
            }
        }
        let settled = self.last_close.is_none_or(|l| l + idle <= now);
        let mut out = Vec::new();
        while out.len() < n {
            let Some(&(closed, ino)) = self.ready_now.first() else {
                break;
            };
            match self.entries.get(&ino).copied() {
                Some(e) => self.set(ino, e, State::Uploading { again: false }),
                None => {
                    self.ready_now.remove(&(closed, ino));
                    continue;
                }
            }
            out.push(ino);
        }
        while out.len() < n {
            let Some(&(closed, ino)) = self.ready.first() else {
                break;
            };
            if !settled && closed + MAX_HOLD > now {
                break;
            }
            if let Some(e) = self.entries.get(&ino).copied() {
                self.set(ino, e, State::Uploading { again: false });
                out.push(ino);
            } else {
                self.ready.remove(&(closed, ino));
            }
        }
        out
    }

    /// When something is next due (none: nothing waits, or all are being uploaded).
    pub fn next_due(&self, idle: Duration) -> Option<Instant> {
        let ready = self.ready.first().map(|&(closed, _)| {
            let settled = self.last_close.map_or(closed, |l| l + idle);
            settled.min(closed + MAX_HOLD)
        });
        let waiting = self.waiting.first().map(|&(t, _)| t);
        let now = self.ready_now.first().map(|&(closed, _)| closed);
        [ready, waiting, now].into_iter().flatten().min()
    }

    /// Uploaded (or nothing to upload any more): gone, unless queued anew meanwhile.
    pub fn done(&mut self, ino: u64) {
        if let Some(e) = self.entries.remove(&ino) {
            self.unlink(ino, &e);
            if e.state == (State::Uploading { again: true }) {
                self.set(
                    ino,
                    Entry {
                        failed: 0,
                        state: State::Ready,
                        ..e
                    },
                    State::Ready,
                );
            }
        }
    }

    /// The attempt failed: tried again after a wait doubling from `first` up to `max`.
    pub fn failed(&mut self, ino: u64, now: Instant, first: Duration, max: Duration) {
        if let Some(mut e) = self.entries.get(&ino).copied() {
            e.failed += 1;
            let wait = first
                .saturating_mul(1 << e.failed.min(10).saturating_sub(1))
                .min(max);
            self.set(ino, e, State::Waiting(now + wait));
        }
    }

    /// Not to be tried until queued again (its close is still under way).
    pub fn park(&mut self, ino: u64, now: Instant) {
        if let Some(e) = self.entries.get(&ino).copied() {
            self.set(ino, e, State::Waiting(now + Duration::from_secs(24 * 3600)));
        }
    }

    /// Out of the queue without an upload (unlinked, rewritten).
    pub fn forget(&mut self, ino: u64) {
        if let Some(e) = self.entries.remove(&ino) {
            self.unlink(ino, &e);
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every file waiting, with its close time.
    pub fn closed_times(&self) -> Vec<(u64, Instant)> {
        self.entries.iter().map(|(i, e)| (*i, e.closed)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: Duration = Duration::from_millis(300);

    #[test]
    fn oldest_first_after_closes_pause_and_failures_wait() {
        let t0 = Instant::now();
        let mut s = Schedule::default();
        s.push(1, t0, false);
        s.push(2, t0 + Duration::from_millis(10), false);
        s.push(3, t0 + Duration::from_millis(20), false);
        // closes still coming: nothing yet
        assert!(s.take(4, t0 + Duration::from_millis(100), IDLE).is_empty());
        assert_eq!(
            s.next_due(IDLE),
            Some(t0 + Duration::from_millis(20) + IDLE)
        );
        let now = t0 + Duration::from_secs(1);
        assert_eq!(s.take(2, now, IDLE), vec![1, 2]);
        s.failed(1, now, Duration::from_secs(1), Duration::from_secs(60));
        s.done(2);
        assert_eq!(s.take(4, now, IDLE), vec![3]);
        assert_eq!(s.next_due(IDLE), Some(now + Duration::from_secs(1)));
        assert_eq!(s.take(4, now + Duration::from_secs(2), IDLE), vec![1]);
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn a_steady_stream_of_closes_holds_files_five_seconds_at_most() {
        let t0 = Instant::now();
        let mut s = Schedule::default();
        s.push(1, t0, false);
        s.push(2, t0 + Duration::from_secs(4), false);
        let now = t0 + MAX_HOLD;
        s.push(3, now, false);
        assert_eq!(s.take(4, now, IDLE), vec![1]);
    }

    #[test]
    fn a_large_file_does_not_wait_for_closes_to_pause() {
        let t0 = Instant::now();
        let mut s = Schedule::default();
        s.push(1, t0, false);
        s.push(2, t0, true);
        assert_eq!(s.next_due(IDLE), Some(t0));
        assert_eq!(s.take(4, t0, IDLE), vec![2]);
    }

    #[test]
    fn queued_again_while_uploading_goes_once_more() {
        let t0 = Instant::now();
        let mut s = Schedule::default();
        s.push(7, t0, false);
        assert_eq!(s.take(1, t0 + Duration::from_secs(1), IDLE), vec![7]);
        s.push(7, t0 + Duration::from_secs(1), false);
        s.done(7);
        assert_eq!(s.len(), 1);
        assert_eq!(s.take(1, t0 + Duration::from_secs(3), IDLE), vec![7]);
        s.done(7);
        assert!(s.is_empty());
        // parked, then queued again: due
        s.push(8, t0, false);
        s.park(8, t0);
        assert!(s.take(1, t0 + Duration::from_secs(10), IDLE).is_empty());
        s.push(8, t0 + Duration::from_secs(10), false);
        assert_eq!(s.take(1, t0 + Duration::from_secs(11), IDLE), vec![8]);
        s.forget(8);
        assert!(s.is_empty() && s.next_due(IDLE).is_none());
    }
}

//! Large I/O buffers kept for reuse: upload parts, GET bodies, FUSE write data. A fresh 8 MiB
//! buffer costs 2,048 page faults, each zeroing a page, before the first byte is copied in
//! (freed large buffers go back to the system, so every part would pay that again); a recycled
//! one costs nothing. Each pool keeps a few idle buffers (eight: as many as a read-ahead
//! window has GETs in flight, so a sequential read's bodies come back faster than they are
//! taken again), and, once it has a memory gate (the mount's budget), only while the budget has
//! room for them: idle buffers count against `--max-memory` like the ones in use, and are let
//! go as soon as a reservation finds no room. The pool of GET bodies asks for transparent huge
//! pages ([`BufferPool::huge`]).

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use parking_lot::Mutex;

use crate::s3::client::MemoryGate;

/// Idle buffers kept at most (the rest are freed).
const KEEP: usize = 8;

/// The page size bodies are aligned to (see [`BufferPool::take_page_aligned`]).
pub const PAGE: usize = 4096;

/// An idle buffer, and its hold on the memory budget.
/// A buffer's room in the memory budget, as its gate hands it out.
pub type Room = Box<dyn std::any::Any + Send + Sync>;

struct Idle {
    buf: Vec<u8>,
    held: Option<Room>,
}

impl Idle {
    /// Able to hold `capacity` bytes, and no more than twice that (a larger one would hold
    /// more than its user counts).
    fn fits(&self, capacity: usize) -> bool {
        self.buf.capacity() >= capacity && self.buf.capacity() <= capacity.saturating_mul(2)
    }
}

/// Idle buffers of one kind (parts, bodies, …) of one mount.
#[derive(Default)]
pub struct BufferPool {
    idle: Mutex<Vec<Idle>>,
    gate: OnceLock<Arc<dyn MemoryGate>>,
    /// New buffers ask for huge pages (see [`BufferPool::huge`]).
    huge: bool,
}

impl std::fmt::Debug for BufferPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BufferPool")
            .field("idle", &self.idle())
            .finish()
    }
}

/// The size of a transparent huge page on x86-64 and most arm64 kernels.
const HUGE: usize = 2 << 20;

/// Asks the kernel to back the whole 2 MiB pages inside `len` bytes at `ptr` with huge pages
/// (`MADV_HUGEPAGE`; most distributions enable them only where asked). A body's bytes are
/// then pinned a huge page at a time by an `O_DIRECT` write (the data cache's fill), and the
/// copies into and out of it miss the TLB less. Advice only: where the kernel has none to
/// give, or THP is off, nothing changes.
fn advise_huge(ptr: *const u8, len: usize) {
    let p = ptr as usize;
    let (start, end) = (p.next_multiple_of(HUGE), (p + len) / HUGE * HUGE);
    if end > start {
        // SAFETY: the range lies inside one live allocation; the advice changes no contents.
        let rc =
            unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) };
        if rc != 0 {
            tracing::debug!(
                "madvise(MADV_HUGEPAGE): {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

impl BufferPool {
    /// A pool whose new buffers ask for transparent huge pages ([`advise_huge`]): for GET
    /// bodies, which are filled whole as they arrive, so a huge page holds no more than its
    /// bytes. Not for parts being written: a part's budget counts the bytes it has filled,
    /// and a huge page would make up to 2 MiB more resident per writer (24 writers: 48 MiB).
    /// A cold sequential read on Ceph RGW filling the data cache: 4–6 % faster.
    pub fn huge() -> BufferPool {
        BufferPool {
            huge: true,
            ..Default::default()
        }
    }

    /// Idle buffers count against `gate` from now on (set once), which may ask for them back.
    pub fn set_gate(self: &Arc<Self>, gate: Arc<dyn MemoryGate>) {
        gate.add_pool(Arc::downgrade(self));
        let _ = self.gate.set(gate);
    }

    /// Frees every idle buffer (and its hold on the budget).
    pub fn drop_idle(&self) {
        let gone = std::mem::take(&mut *self.idle.lock());
        drop(gone);
    }

    /// Frees idle buffers, smallest first, until `bytes` of them are gone (or none is left);
    /// the bytes freed.
    pub fn drop_idle_bytes(&self, bytes: u64) -> u64 {
        let mut idle = self.idle.lock();
        idle.sort_by_key(|b| std::cmp::Reverse(b.buf.capacity()));
        let mut freed = 0;
        while freed < bytes {
            match idle.pop() {
                Some(b) => freed += b.buf.capacity() as u64,
                None => break,
            }
        }
        freed
    }

    /// An empty buffer able to hold `capacity` bytes without growing: an idle one at most
    /// twice that large (a larger one would hold more than its user counts), else a new one.
    pub fn take(&self, capacity: usize) -> Vec<u8> {
        self.take_with_room(capacity).0
    }

    /// [`take`](Self::take), and the room in the budget an idle buffer held. A recycled
    /// buffer is resident in full (its pages were written before), however little of it its
    /// new user fills: a user that counts its bytes as it fills them (a part being written)
    /// keeps this room, so that the budget counts what is resident. 24 writers each
    /// filling a recycled 8 MiB part went 30 MiB past their budget without it. `None` for a
    /// new buffer (its pages come as they are written) or where no gate counts them.
    pub fn take_with_room(&self, capacity: usize) -> (Vec<u8>, Option<Room>) {
        let mut idle = self.idle.lock();
        match idle.iter().position(|b| b.fits(capacity)) {
            Some(i) => {
                let Idle { buf, held } = idle.swap_remove(i);
                (buf, held)
            }
            None => {
                let buf = Vec::with_capacity(capacity);
                if self.huge {
                    advise_huge(buf.as_ptr(), buf.capacity());
                }
                (buf, None)
            }
        }
    }

    /// An idle buffer for `capacity` bytes (as [`take`](Self::take) would pick) that holds a
    /// share of the gate's budget, with that share; `None` if there is none.
    pub fn take_idle_with_room(&self, capacity: usize) -> Option<(Vec<u8>, Room)> {
        let mut idle = self.idle.lock();
        let i = idle
            .iter()
            .position(|b| b.held.is_some() && b.fits(capacity))?;
        let Idle { buf, held } = idle.swap_remove(i);
        held.map(|h| (buf, h))
    }

    /// [`take`](Self::take) for `capacity` bytes that start at a page boundary: the buffer
    /// comes back holding the few zero bytes before that boundary (its `len()`), to be skipped
    /// with [`freeze_from`](Self::freeze_from). Data-cache blocks and part files are then
    /// written from the bytes as they are (`O_DIRECT` wants aligned memory) instead of through
    /// a copy.
    pub fn take_page_aligned(&self, capacity: usize) -> Vec<u8> {
        self.take_aligned_to(capacity, 0)
    }

    /// [`take`](Self::take) for `capacity` bytes bound for file offset `offset`: the buffer
    /// comes back holding the few zero bytes to skip (its `len()`) so that the data's address
    /// lines up with its offset modulo [`PAGE`]. Its page-aligned middle is then written to
    /// a part file from where it is (`O_DIRECT` wants aligned memory), whatever the offset,
    /// instead of through an aligned copy: 24 writers at once made 24 such copies.
    pub fn take_aligned_to(&self, capacity: usize, offset: u64) -> Vec<u8> {
        let mut buf = self.take(capacity.saturating_add(PAGE));
        let to_page = buf.as_ptr().align_offset(PAGE).min(PAGE);
        let skip = (to_page + (offset % PAGE as u64) as usize) % PAGE;
        buf.resize(skip, 0);
        buf
    }

    /// Keep `buf` for a later [`take`](Self::take). Smaller idle buffers make way for it
    /// (sizes grow: read-ahead chunks, later parts): one goes when enough are idle already,
    /// and as many as it takes when the gate's budget has no room for it beside them. With no
    /// smaller one to let go, it is freed instead.
    pub fn give(&self, mut buf: Vec<u8>) {
        buf.clear();
        let cap = buf.capacity();
        let mut idle = self.idle.lock();
        // (its hold on the budget goes with it, before the new one asks)
        let drop_smaller = |idle: &mut Vec<Idle>| match idle
            .iter()
            .enumerate()
            .min_by_key(|(_, b)| b.buf.capacity())
        {
            Some((i, b)) if b.buf.capacity() < cap => {
                idle.swap_remove(i);
                true
            }
            _ => false,
        };
        if idle.len() >= KEEP && !drop_smaller(&mut idle) {
            return;
        }
        let held = loop {
            let Some(g) = self.gate.get() else {
                break None;
            };
            match g.try_acquire(cap as u64) {
                Some(h) => break Some(h),
                None if drop_smaller(&mut idle) => continue,
                None => return,
            }
        };
        idle.push(Idle { buf, held });
    }

    /// `buf` as `Bytes` that hand the buffer back to this pool once the last copy is dropped.
    pub fn freeze(self: &Arc<Self>, buf: Vec<u8>) -> Bytes {
        self.freeze_from(buf, 0)
    }

    /// [`freeze`](Self::freeze) of `buf` without its first `skip` bytes.
    pub fn freeze_from(self: &Arc<Self>, buf: Vec<u8>, skip: usize) -> Bytes {
        let skip = skip.min(buf.len());
        Bytes::from_owner(Returning {
            buf,
            skip,
            pool: self.clone(),
        })
    }

    /// Bytes of idle buffers that hold a share of the gate's budget: room given back as soon
    /// as a reservation asks for it.
    pub fn idle_bytes(&self) -> u64 {
        self.idle
            .lock()
            .iter()
            .filter(|b| b.held.is_some())
            .map(|b| b.buf.capacity() as u64)
            .sum()
    }

    /// Idle buffers (for tests).
    pub fn idle(&self) -> usize {
        self.idle.lock().len()
    }
}

struct Returning {
    buf: Vec<u8>,
    skip: usize,
    pool: Arc<BufferPool>,
}

impl AsRef<[u8]> for Returning {
    fn as_ref(&self) -> &[u8] {
        &self.buf[self.skip..]
    }
}

impl Drop for Returning {
    fn drop(&mut self) {
        self.pool.give(std::mem::take(&mut self.buf));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `VmFlags` of the mapping holding `addr`, from `/proc/self/smaps`.
    fn vm_flags(addr: usize) -> Vec<String> {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap_or_default();
        let mut inside = false;
        for line in smaps.lines() {
            let first = line.split_whitespace().next().unwrap_or("");
            if let Some((a, b)) = first.split_once('-') {
                if let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
                {
                    inside = (a..b).contains(&addr);
                    continue;
                }
            }
            if let (true, Some(flags)) = (inside, line.strip_prefix("VmFlags:")) {
                return flags.split_whitespace().map(str::to_string).collect();
            }
        }
        panic!("no mapping holds {addr:#x}");
    }

    #[test]
    fn a_body_pool_asks_for_huge_pages_for_its_new_buffers() {
        let bodies = BufferPool::huge();
        let body = bodies.take(8 << 20);
        let mid = |b: &Vec<u8>| b.as_ptr() as usize + (4 << 20);
        assert!(
            vm_flags(mid(&body)).iter().any(|f| f == "hg"),
            "MADV_HUGEPAGE"
        );
        // a recycled body keeps its pages, and the advice with them
        let at = body.as_ptr();
        bodies.give(body);
        let again = bodies.take(8 << 20);
        assert_eq!(again.as_ptr(), at);
        assert!(vm_flags(mid(&again)).iter().any(|f| f == "hg"));
        // (that a parts pool's buffers are not advised cannot be seen from here: freed
        // memory that another test's body pool advised may come back to it)
    }

    #[test]
    fn frozen_buffers_come_back_and_are_reused_up_to_the_limit() {
        let pool = Arc::new(BufferPool::default());
        let mut a = pool.take(1024);
        a.extend_from_slice(b"part one");
        let ptr = a.as_ptr();
        let body = pool.freeze(a);
        let copy = body.clone();
        assert_eq!(&body[..], b"part one");
        drop(body);
        assert_eq!(pool.idle(), 0, "a clone still holds it");
        drop(copy);
        assert_eq!(pool.idle(), 1);
        let again = pool.take(700);
        assert_eq!(again.as_ptr(), ptr, "the same allocation");
        assert!(again.is_empty());
        // too small for the request: a new one
        pool.give(again);
        assert!(pool.take(4096).capacity() >= 4096);
        for _ in 0..KEEP + 3 {
            pool.give(Vec::with_capacity(16));
        }
        assert_eq!(pool.idle(), KEEP);
        // a larger buffer displaces a small one, so growing sizes keep being reused
        pool.give(Vec::with_capacity(1 << 20));
        assert_eq!(pool.idle(), KEEP);
        assert!(pool.take(1 << 20).capacity() >= 1 << 20);
    }

    #[test]
    fn data_bound_for_an_offset_lines_up_with_it_modulo_a_page() {
        let pool = BufferPool::default();
        for offset in [0u64, 1, 511, 4095, 4096 + 17, (8 << 20) + 3000] {
            let mut b = pool.take_aligned_to(1 << 20, offset);
            let skip = b.len();
            let cap = b.capacity();
            assert!(skip < PAGE && b.iter().all(|&x| x == 0));
            b.extend_from_slice(&vec![7u8; 1 << 20]);
            // room enough: the copy did not move the buffer
            assert_eq!(b.capacity(), cap);
            let addr = b[skip..].as_ptr() as usize;
            assert_eq!(
                addr % PAGE,
                (offset % PAGE as u64) as usize,
                "offset {offset}"
            );
            pool.give(b);
        }
    }

    #[test]
    fn page_aligned_bodies_start_at_a_page_and_come_back() {
        let pool = Arc::new(BufferPool::default());
        for _ in 0..3 {
            let mut b = pool.take_page_aligned(300 * 1024);
            let skip = b.len();
            assert!(skip < PAGE && b.iter().all(|&x| x == 0));
            let data: Vec<u8> = (0..300 * 1024).map(|i| (i % 251) as u8).collect();
            b.extend_from_slice(&data);
            let body = pool.freeze_from(b, skip);
            assert_eq!(
                body.as_ptr().align_offset(PAGE),
                0,
                "the bytes start at a page"
            );
            assert_eq!(&body[..], &data[..]);
            drop(body);
            assert_eq!(pool.idle(), 1, "the buffer is back, and is taken again");
        }
    }

    #[tokio::test]
    async fn idle_buffers_hold_budget_and_are_freed_without_room() {
        use crate::fs::memory::{BudgetGate, MemoryBudget};
        let budget = Arc::new(MemoryBudget::new(4 << 20));
        let pool = Arc::new(BufferPool::default());
        pool.set_gate(Arc::new(BudgetGate(budget.clone())));
        pool.give(Vec::with_capacity(1 << 20));
        assert_eq!(budget.in_use(), 1 << 20, "an idle buffer counts");
        let held = budget.try_reserve(3 << 20).expect("the rest");
        pool.give(Vec::with_capacity(1 << 20));
        assert_eq!(pool.idle(), 1, "no room: freed, not kept");
        drop(held);
        // someone about to wait for room gets the idle buffers' share first
        let wanted = budget
            .reserve_within(4 << 20, std::time::Duration::ZERO)
            .await
            .expect("the idle buffer let go");
        assert_eq!(pool.idle(), 0);
        drop(wanted);
        pool.give(Vec::with_capacity(1 << 20));
        let b = pool.take(1 << 20);
        assert_eq!(budget.in_use(), 0, "taken: its user counts it now");
        // a buffer far larger than asked is not handed out
        pool.give(b);
        assert!(pool.take(1024).capacity() < 1 << 20);
    }

    #[test]
    fn idle_buffers_let_go_for_a_reservation_that_finds_no_room() {
        use crate::fs::memory::{BudgetGate, MemoryBudget};
        let budget = Arc::new(MemoryBudget::new(4 << 20));
        let pool = Arc::new(BufferPool::default());
        pool.set_gate(Arc::new(BudgetGate(budget.clone())));
        pool.give(Vec::with_capacity(2 << 20));
        pool.give(Vec::with_capacity(2 << 20));
        assert_eq!(budget.in_use(), 4 << 20, "idle buffers fill the budget");
        // read-ahead asks without waiting: what only idles makes way
        let r = budget
            .try_reserve(3 << 20)
            .expect("the idle buffers let go");
        assert_eq!(pool.idle(), 0);
        assert_eq!(budget.in_use(), 3 << 20);
        assert!(budget.try_reserve(2 << 20).is_none(), "bytes in use do not");
        drop(r);
    }

    #[test]
    fn smaller_idle_buffers_make_way_for_a_larger_one_the_budget_has_no_room_for() {
        use crate::fs::memory::{BudgetGate, MemoryBudget};
        let budget = Arc::new(MemoryBudget::new(3 << 20));
        let pool = Arc::new(BufferPool::default());
        pool.set_gate(Arc::new(BudgetGate(budget.clone())));
        // what a read-ahead ramp leaves: small buffers holding budget
        pool.give(Vec::with_capacity(1 << 20));
        pool.give(Vec::with_capacity(1 << 20));
        let held = budget.try_reserve(1 << 20).expect("the rest");
        pool.give(Vec::with_capacity(2 << 20));
        assert_eq!(pool.idle(), 1, "both small ones let go for the larger one");
        assert_eq!(budget.in_use(), 3 << 20);
        assert!(pool.take(2 << 20).capacity() >= 2 << 20, "kept, and reused");
        // no room, and no smaller one to let go: freed, not kept
        let rest = budget.try_reserve(2 << 20).expect("room");
        pool.give(Vec::with_capacity(1 << 20));
        assert_eq!(pool.idle(), 0);
        drop((held, rest));
    }
}

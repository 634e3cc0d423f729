//! One memory budget for the whole mount, shared by write parts and read prefetch.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use crate::buffer_pool::BufferPool;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Budget granularity: reservations are rounded up to this many bytes.
const UNIT: u64 = 64 * 1024;

/// A bounded pool of bytes; holders of a [`Reservation`] own part of it until they drop it.
#[derive(Debug)]
pub struct MemoryBudget {
    sem: Arc<Semaphore>,
    total_units: u32,
    overruns: AtomicU64,
    /// Pools whose idle buffers hold part of the budget: emptied when anyone finds no room.
    pools: parking_lot::Mutex<Vec<Weak<BufferPool>>>,
}

/// Bytes held against the budget; given back on drop.
#[derive(Debug, Default)]
pub struct Reservation {
    permit: Option<OwnedSemaphorePermit>,
}

impl Reservation {
    /// Bytes this reservation holds.
    pub fn bytes(&self) -> u64 {
        self.permit
            .as_ref()
            .map(|p| p.num_permits() as u64 * UNIT)
            .unwrap_or(0)
    }
    /// Add the room an idle buffer held (see [`BufferPool::take_with_room`]) to this one, when
    /// it is a reservation of this budget.
    ///
    /// [`BufferPool::take_with_room`]: crate::buffer_pool::BufferPool::take_with_room
    pub fn merge_room(&mut self, room: crate::buffer_pool::Room) {
        if let Ok(r) = room.downcast::<Reservation>() {
            self.merge(*r);
        }
    }

    /// Add another reservation's bytes to this one.
    pub fn merge(&mut self, other: Reservation) {
        match (&mut self.permit, other.permit) {
            (Some(p), Some(o)) => p.merge(o),
            (None, Some(o)) => self.permit = Some(o),
            _ => {}
        }
    }
}

/// How long a writer holding memory (a part being filled in memory, a changed part of an
/// object edited in place) waits for more before going over the budget, so that writers
/// holding half-filled parts cannot wait on each other forever.
pub const WRITER_PATIENCE: Duration = Duration::from_secs(5);

impl MemoryBudget {
    pub fn new(bytes: u64) -> MemoryBudget {
        let units = (bytes / UNIT).clamp(16, u32::MAX as u64 / 2) as u32;
        MemoryBudget {
            sem: Arc::new(Semaphore::new(units as usize)),
            total_units: units,
            overruns: AtomicU64::new(0),
            pools: parking_lot::Mutex::new(Vec::new()),
        }
    }

    fn units(&self, bytes: u64) -> u32 {
        (bytes.div_ceil(UNIT).max(1) as u32).min(self.total_units)
    }

    /// Reserve now, or `None` if the budget lacks room even once idle pooled buffers let go
    /// (memory that only idles never keeps a real use out: read-ahead stops growing only
    /// for bytes in use).
    pub fn try_reserve(&self, bytes: u64) -> Option<Reservation> {
        if let Some(r) = self.reserve_now(bytes) {
            return Some(r);
        }
        self.let_idle_go(bytes);
        self.reserve_now(bytes)
    }

    /// Reserve now from the room left, idle buffers or not.
    fn reserve_now(&self, bytes: u64) -> Option<Reservation> {
        let permit = self
            .sem
            .clone()
            .try_acquire_many_owned(self.units(bytes))
            .ok()?;
        Some(Reservation {
            permit: Some(permit),
        })
    }

    /// The pools' idle buffers are freed, smallest first, until `bytes` of them are gone,
    /// and their share of the budget with them.
    fn let_idle_go(&self, bytes: u64) {
        let pools: Vec<Arc<BufferPool>> =
            self.pools.lock().iter().filter_map(Weak::upgrade).collect();
        let mut left = bytes;
        for pool in pools {
            left = left.saturating_sub(pool.drop_idle_bytes(left));
            if left == 0 {
                return;
            }
        }
    }

    /// `pool`'s idle buffers are dropped when a reservation finds no room.
    pub fn add_pool(&self, pool: Weak<BufferPool>) {
        self.pools.lock().push(pool);
    }

    /// Wait up to `patience` for room (back-pressure); `None` if there still is none. Idle
    /// pooled buffers are let go first: nobody waits for memory that only idles.
    pub async fn reserve_within(&self, bytes: u64, patience: Duration) -> Option<Reservation> {
        if let Some(r) = self.try_reserve(bytes) {
            return Some(r);
        }
        self.let_idle_go(u64::MAX);
        let fut = self.sem.clone().acquire_many_owned(self.units(bytes));
        match tokio::time::timeout(patience, fut).await {
            Ok(Ok(permit)) => Some(Reservation {
                permit: Some(permit),
            }),
            _ => None,
        }
    }

    /// `what` (a writer, a read) found no room within its patience and goes over the budget
    /// rather than wait forever; the first time is said in the log.
    pub fn overrun(&self, what: &str) {
        if self.overruns.fetch_add(1, Ordering::Relaxed) == 0 {
            tracing::warn!(
                budget = self.total(),
                "the memory budget stayed full for {} s: {what} goes over --max-memory \
                 (raise it, or run fewer readers and writers at once)",
                WRITER_PATIENCE.as_secs()
            );
        }
    }

    /// Times a holder went over the budget after waiting in vain.
    pub fn overruns(&self) -> u64 {
        self.overruns.load(Ordering::Relaxed)
    }

    /// Of [`in_use`](Self::in_use), what the pools' idle buffers hold: theirs only until a
    /// reservation lacks room.
    pub fn idle(&self) -> u64 {
        self.pools
            .lock()
            .iter()
            .filter_map(Weak::upgrade)
            .map(|p| p.idle_bytes())
            .sum()
    }

    /// Bytes currently reserved.
    pub fn in_use(&self) -> u64 {
        (self.total_units as u64 - self.sem.available_permits() as u64) * UNIT
    }

    pub fn total(&self) -> u64 {
        self.total_units as u64 * UNIT
    }
}

/// The budget as the S3 client's memory gate (parts it reads back for a refused copy): waits
/// for room like a writer, then goes over rather than wait forever.
pub struct BudgetGate(pub Arc<MemoryBudget>);

impl crate::s3::client::MemoryGate for BudgetGate {
    fn add_pool(&self, pool: Weak<BufferPool>) {
        self.0.add_pool(pool);
    }

    fn acquire(&self, bytes: u64) -> futures::future::BoxFuture<'static, Box<dyn Send>> {
        let budget = self.0.clone();
        Box::pin(async move {
            let r = match budget.reserve_within(bytes, WRITER_PATIENCE).await {
                Some(r) => r,
                None => {
                    budget.overrun("a copy through this machine");
                    Reservation::default()
                }
            };
            Box::new(r) as Box<dyn Send>
        })
    }

    /// For idle buffers kept for reuse: while the budget has room (they are dropped as soon
    /// as anyone else finds none, see [`MemoryBudget::try_reserve`]).
    fn try_acquire(&self, bytes: u64) -> Option<crate::buffer_pool::Room> {
        self.0
            .reserve_now(bytes)
            .map(|r| Box::new(r) as crate::buffer_pool::Room)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reservations_are_bounded_and_returned() {
        let b = MemoryBudget::new(2 * 1024 * 1024);
        let r1 = b.try_reserve(1024 * 1024).expect("room");
        let mut r2 = b.try_reserve(1024 * 1024).expect("room");
        assert!(b.try_reserve(1).is_none());
        assert_eq!(b.in_use(), 2 * 1024 * 1024);
        assert!(b
            .reserve_within(1, Duration::from_millis(20))
            .await
            .is_none());
        drop(r1);
        let r3 = b
            .reserve_within(1, Duration::from_millis(20))
            .await
            .expect("room after release");
        r2.merge(r3);
        assert_eq!(r2.bytes(), 1024 * 1024 + UNIT);
        drop(r2);
        assert_eq!(b.in_use(), 0);
    }
}

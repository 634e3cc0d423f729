//! Large I/O buffers kept for reuse: upload parts, GET bodies, FUSE write data. A fresh 8 MiB
//! buffer costs 2,048 page faults, each zeroing a page, before the first byte is copied in
//! (freed large buffers go back to the system, so every part would pay that again); a recycled
//! one costs nothing. Each pool keeps only a few idle buffers.

use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;

/// Idle buffers kept at most (the rest are freed).
const KEEP: usize = 2;

/// Idle buffers of one kind (parts, bodies, …) of one mount.
#[derive(Debug, Default)]
pub struct BufferPool {
    idle: Mutex<Vec<Vec<u8>>>,
}

impl BufferPool {
    /// An empty buffer able to hold `capacity` bytes without growing.
    pub fn take(&self, capacity: usize) -> Vec<u8> {
        let mut idle = self.idle.lock();
        match idle.iter().position(|b| b.capacity() >= capacity) {
            Some(i) => idle.swap_remove(i),
            None => Vec::with_capacity(capacity),
        }
    }

    /// Keep `buf` for a later [`take`](Self::take); when enough are idle already, it replaces
    /// the smallest if it is larger (sizes grow: read-ahead chunks, later parts).
    pub fn give(&self, mut buf: Vec<u8>) {
        buf.clear();
        let mut idle = self.idle.lock();
        if idle.len() < KEEP {
            idle.push(buf);
            return;
        }
        if let Some(smallest) = idle.iter_mut().min_by_key(|b| b.capacity()) {
            if smallest.capacity() < buf.capacity() {
                *smallest = buf;
            }
        }
    }

    /// `buf` as `Bytes` that hand the buffer back to this pool once the last copy is dropped.
    pub fn freeze(self: &Arc<Self>, buf: Vec<u8>) -> Bytes {
        Bytes::from_owner(Returning {
            buf,
            pool: self.clone(),
        })
    }

    /// Idle buffers (for tests).
    pub fn idle(&self) -> usize {
        self.idle.lock().len()
    }
}

struct Returning {
    buf: Vec<u8>,
    pool: Arc<BufferPool>,
}

impl AsRef<[u8]> for Returning {
    fn as_ref(&self) -> &[u8] {
        &self.buf
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
        let again = pool.take(512);
        assert_eq!(again.as_ptr(), ptr, "the same allocation");
        assert!(again.is_empty());
        // too small for the request: a new one
        pool.give(again);
        assert!(pool.take(4096).capacity() >= 4096);
        for _ in 0..5 {
            pool.give(Vec::with_capacity(16));
        }
        assert_eq!(pool.idle(), KEEP);
        // a larger buffer displaces a small one, so growing sizes keep being reused
        pool.give(Vec::with_capacity(1 << 20));
        assert_eq!(pool.idle(), KEEP);
        assert!(pool.take(1 << 20).capacity() >= 1 << 20);
    }
}

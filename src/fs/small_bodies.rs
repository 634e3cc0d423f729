//! Small files read in the request that fetches their attributes. Where a listing shows a file
//! of at most [`SMALL_BODY`] bytes, its lookup (or stat-ahead) sends a GET of the whole object
//! instead of a HEAD: one request either way, and the GET answers with the same headers. The
//! body is kept here, bound to the object's ETag, so that opening and reading the file right
//! after costs nothing: `cat`, `grep -r` or a copy out of the mount cost one request per small
//! file instead of two.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;

use super::memory::{MemoryBudget, Reservation};
use crate::s3::{ObjectMeta, S3Client, S3Error};

/// Largest file (by its listed size) whose body comes with its attributes.
pub const SMALL_BODY: u64 = 32 * 1024;
/// Bytes of bodies kept at most; the least recently fetched go first.
const KEPT_BYTES: usize = 8 * 1024 * 1024;
/// Entries kept at most (a bound for many empty files).
const KEPT_ENTRIES: usize = 4096;
/// The kept bodies' memory is taken from the mount's budget in steps of this size.
const RESERVE_STEP: u64 = 1024 * 1024;

/// Bodies of small files, by key, each with the ETag it belongs to.
pub(crate) struct SmallBodies {
    inner: Mutex<Kept>,
    ttl: Duration,
    budget: Arc<MemoryBudget>,
}

struct Kept {
    bodies: lru::LruCache<String, Body>,
    bytes: usize,
    /// Memory taken from the budget for the bodies: grows while the budget has room (up to
    /// [`KEPT_BYTES`]); past it the least recently fetched bodies go.
    reservation: Reservation,
}

struct Body {
    etag: String,
    data: Bytes,
    fetched: Instant,
}

impl SmallBodies {
    /// Bodies are served for `ttl` after their fetch (the attribute TTL).
    pub fn new(ttl: Duration, budget: Arc<MemoryBudget>) -> SmallBodies {
        let cap = NonZeroUsize::new(KEPT_ENTRIES).unwrap_or(NonZeroUsize::MIN);
        SmallBodies {
            inner: Mutex::new(Kept {
                bodies: lru::LruCache::new(cap),
                bytes: 0,
                reservation: Reservation::default(),
            }),
            ttl,
            budget,
        }
    }

    fn keep(&self, key: &str, etag: &str, data: Bytes) {
        let mut k = self.inner.lock();
        let len = data.len();
        if let Some(old) = k.bodies.put(
            key.to_string(),
            Body {
                etag: etag.to_string(),
                data,
                fetched: Instant::now(),
            },
        ) {
            k.bytes -= old.data.len();
        }
        k.bytes += len;
        while k.bytes as u64 > k.reservation.bytes() && k.reservation.bytes() < KEPT_BYTES as u64 {
            match self.budget.try_reserve(RESERVE_STEP) {
                Some(r) => k.reservation.merge(r),
                None => break,
            }
        }
        while k.bytes as u64 > k.reservation.bytes() {
            match k.bodies.pop_lru() {
                Some((_, gone)) => k.bytes -= gone.data.len(),
                None => break,
            }
        }
    }

    /// The body of `key` at version `etag`, if it was fetched within the TTL.
    pub fn get(&self, key: &str, etag: &str) -> Option<Bytes> {
        let k = self.inner.lock();
        let b = k.bodies.peek(key)?;
        (b.etag == etag && b.fetched.elapsed() < self.ttl).then(|| b.data.clone())
    }

    /// Bytes held.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.inner.lock().bytes
    }
}

/// The metadata of the file `key`, whose listing said `listed_size` bytes: a GET that keeps
/// the body in `bodies` when that is small, else (or when the GET is refused, as for an archived
/// object) a HEAD. The GET asks for the first [`SMALL_BODY`] bytes only, so an object that grew
/// since the listing costs no more than that (and its body is not kept); an empty file gets a
/// HEAD (there is nothing to read, and a range of an empty object is refused without headers).
pub(crate) async fn fetch_file_meta(
    client: &S3Client,
    bodies: &SmallBodies,
    key: &str,
    listed_size: Option<u64>,
) -> Result<ObjectMeta, S3Error> {
    if listed_size.is_some_and(|s| s > 0 && s <= SMALL_BODY) {
        match client.get_object(key, Some(0..SMALL_BODY), None).await {
            Ok(out) => {
                if let Some(etag) = &out.meta.etag {
                    if out.body.len() as u64 == out.meta.size {
                        // a copy of its own: a slice of the connection's read buffer would keep
                        // that whole buffer alive, beyond what KEPT_BYTES counts
                        bodies.keep(key, etag, Bytes::copy_from_slice(&out.body));
                    }
                }
                return Ok(out.meta);
            }
            Err(e) if e.is_not_found() => return Err(e),
            Err(e) => tracing::debug!(key, "GET with the attributes failed, HEAD instead: {e}"),
        }
    }
    client.head_object(key).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(mib: u64) -> Arc<MemoryBudget> {
        Arc::new(MemoryBudget::new(mib * 1024 * 1024))
    }

    #[test]
    fn kept_bodies_take_their_memory_from_the_budget() {
        let budget = budget(2);
        let b = SmallBodies::new(Duration::from_secs(60), budget.clone());
        let body = Bytes::from(vec![7u8; SMALL_BODY as usize]);
        b.keep("a", "e", body.clone());
        assert_eq!(budget.in_use(), RESERVE_STEP);
        // the budget is 2 MiB: the bodies stay within it, the oldest go
        for i in 0..100 {
            b.keep(&format!("k{i}"), "e", body.clone());
        }
        assert!(b.bytes() as u64 <= budget.total(), "{}", b.bytes());
        assert_eq!(budget.in_use(), budget.total());
        assert!(b.get("k99", "e").is_some() && b.get("a", "e").is_none());
    }

    #[test]
    fn a_body_is_served_for_its_own_version_only() {
        let b = SmallBodies::new(Duration::from_secs(60), budget(64));
        b.keep("a", "e1", Bytes::from_static(b"one"));
        assert_eq!(b.get("a", "e1").as_deref(), Some(&b"one"[..]));
        assert_eq!(b.get("a", "e2"), None);
        assert_eq!(b.get("b", "e1"), None);
        b.keep("a", "e2", Bytes::from_static(b"three"));
        assert_eq!(b.get("a", "e1"), None);
        assert_eq!(b.bytes(), 5);
    }

    #[test]
    fn bodies_expire_with_the_ttl_and_stay_within_their_bytes() {
        let b = SmallBodies::new(Duration::ZERO, budget(64));
        b.keep("a", "e", Bytes::from_static(b"x"));
        assert_eq!(b.get("a", "e"), None);

        let b = SmallBodies::new(Duration::from_secs(60), budget(64));
        let body = Bytes::from(vec![7u8; SMALL_BODY as usize]);
        for i in 0..(KEPT_BYTES / SMALL_BODY as usize + 10) {
            b.keep(&format!("k{i}"), "e", body.clone());
        }
        assert!(b.bytes() <= KEPT_BYTES);
        assert_eq!(b.get("k0", "e"), None, "the oldest went first");
        let last = KEPT_BYTES / SMALL_BODY as usize + 9;
        assert!(b.get(&format!("k{last}"), "e").is_some());
    }
}

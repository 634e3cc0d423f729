//! Part sizes of multipart uploads: how large part `n` is (sizes double every 1,000 parts so
//! that 10,000 parts reach the largest object), which part holds an offset, and the largest
//! file an upload can make (EFBIG beyond it, said up front).

use super::error::{FsError, FsResult};

/// Parts per size step: part sizes double every this many parts, so that 10,000 parts reach
/// 5 TiB with 8 MiB base parts.
const PARTS_PER_STEP: u32 = 1000;

/// Size of part `n` (1-based) for a base size: doubles every 1,000 parts, within the limits.
pub fn part_size_for(n: u32, base: u64, max: u64) -> u64 {
    let step = (n.saturating_sub(1) / PARTS_PER_STEP).min(20);
    (base << step).min(max)
}

/// The part holding byte `offset` (1-based) and where it starts, for parts of
/// [`part_size_for`]; an offset at a part boundary is the start of the next part. Goes a step
/// of [`PARTS_PER_STEP`] parts (all of one size) at a time.
pub fn part_holding(offset: u64, base: u64, max: u64) -> (u32, u64) {
    let (mut first, mut start) = (1u32, 0u64);
    loop {
        let size = part_size_for(first, base, max).max(1);
        let step = size.saturating_mul(u64::from(PARTS_PER_STEP));
        // sizes stop growing: every part from here on has this size
        let last = part_size_for(first.saturating_add(PARTS_PER_STEP), base, max) == size;
        if last || offset - start < step {
            let k = (offset - start) / size;
            let n = u32::try_from(k).map_or(u32::MAX, |k| first.saturating_add(k));
            return (n, start + u64::from(n - first) * size);
        }
        start += step;
        first += PARTS_PER_STEP;
    }
}

/// Limits an upload works within.
#[derive(Debug, Clone, Copy)]
pub struct PartLimits {
    pub base: u64,
    pub min: u64,
    pub max: u64,
    pub max_parts: u32,
    /// Largest file: the provider's largest object, or what `max_parts` parts of growing size
    /// reach, whichever is smaller (see [`PartLimits::new`]).
    pub max_file: u64,
}

impl PartLimits {
    pub fn new(base: u64, min: u64, max: u64, max_parts: u32, max_object: u64) -> PartLimits {
        let parts: u64 = (1..=max_parts).map(|n| part_size_for(n, base, max)).sum();
        PartLimits {
            base,
            min,
            max,
            max_parts,
            max_file: parts.min(max_object),
        }
    }

    /// EFBIG, with the reason, for a file that would grow to `size`.
    pub fn check_size(&self, size: u64) -> FsResult<()> {
        let largest = self.max_file;
        if size > largest {
            return Err(FsError::new(
                libc::EFBIG,
                format!(
                    "{size} bytes is more than the largest object this provider stores ({largest})"
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_sizes_reach_five_tib_in_ten_thousand_parts() {
        let mib = 1024 * 1024;
        let max = 5 * 1024 * mib;
        assert_eq!(part_size_for(1, 8 * mib, max), 8 * mib);
        assert_eq!(part_size_for(1000, 8 * mib, max), 8 * mib);
        assert_eq!(part_size_for(1001, 8 * mib, max), 16 * mib);
        let total: u64 = (1..=10_000).map(|n| part_size_for(n, 8 * mib, max)).sum();
        assert!(total >= 5 * 1024 * 1024 * mib, "total {total}");
        assert!((1..=10_000).all(|n| part_size_for(n, 8 * mib, max) <= max));
    }

    #[test]
    fn the_part_holding_an_offset_is_found_a_step_at_a_time() {
        let mib = 1024 * 1024;
        for (base, max) in [
            (8 * mib, 5 * 1024 * mib),
            (5 * mib, 16 * mib),
            (5 * mib, 5 * mib),
        ] {
            // walking part by part, as the sizes go
            let (mut n, mut start) = (1u32, 0u64);
            while n <= 4_500 {
                let len = part_size_for(n, base, max);
                for offset in [start, start + 1, start + len - 1] {
                    assert_eq!(part_holding(offset, base, max), (n, start), "{offset}");
                }
                start += len;
                n += 1;
            }
        }
    }
}

//! The CRC32C of each part of a part buffer, kept up while its bytes are appended in order
//! (from the writer's data, on the path that copies it anyway): a part that goes whole as it
//! was written carries it (`x-amz-checksum-crc32c`) without its bytes being read back from its
//! file to hash them. A part written out of order, cut or grown with zeros has none, and is
//! hashed from its bytes when it is sent, as every crash-resumed part is.

use std::collections::{BTreeMap, VecDeque};

/// One stretch of the buffer's bytes, starting where the one before it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    len: usize,
    /// The CRC32C of exactly its `len` bytes; `None` once any of them was changed other than
    /// by an append.
    crc: Option<u32>,
}

/// The spans of a part buffer's bytes from its start: the part being filled, and those after
/// it that a write going past its end began. Whatever the bytes went through, a span's CRC
/// (when it has one) is the CRC32C of exactly its bytes, and a part is given the CRC of a
/// span only when that span is the whole part: a span boundary in the wrong place (the part
/// size is a hint) costs a hash at the send, never a wrong checksum.
#[derive(Debug)]
pub struct PartCrcs {
    spans: VecDeque<Span>,
    /// Where the span being filled ends: the size of the part it is (a hint).
    part_size: usize,
}

impl PartCrcs {
    /// An empty buffer whose first part holds `part_size` bytes.
    pub fn new(part_size: usize) -> PartCrcs {
        PartCrcs {
            spans: VecDeque::new(),
            part_size: part_size.max(1),
        }
    }

    /// A buffer that already holds `len` bytes of unknown CRC (a part file taken up again).
    pub fn unknown(len: usize, part_size: usize) -> PartCrcs {
        let mut c = PartCrcs::new(part_size);
        c.grow(len, None);
        c
    }

    /// The size of the part being filled, as last told.
    pub fn part_size(&self) -> usize {
        self.part_size
    }

    /// The bytes the spans cover: the buffer's length.
    pub fn len(&self) -> usize {
        self.spans.iter().map(|s| s.len).sum()
    }

    /// Adds `len` bytes at the end, of CRC `crc(data)` when they are known, span by span.
    /// Bytes not known take at most three spans, whatever their length (a write 1 TiB past
    /// the end), the spans after them still starting at part boundaries.
    fn grow(&mut self, mut len: usize, data: Option<&[u8]>) {
        let mut data = data;
        if len == 0 {
            return;
        }
        if data.is_none() {
            if let Some(last) = self.spans.back_mut().filter(|s| s.len < self.part_size) {
                let n = len.min(self.part_size - last.len);
                last.len += n;
                last.crc = None;
                len -= n;
            }
            let whole = len - len % self.part_size;
            for n in [whole, len - whole] {
                if n > 0 {
                    self.spans.push_back(Span { len: n, crc: None });
                }
            }
            return;
        }
        while len > 0 {
            let last = match self.spans.back_mut() {
                Some(s) if s.len < self.part_size => s,
                _ => {
                    self.spans.push_back(Span {
                        len: 0,
                        crc: Some(0),
                    });
                    match self.spans.back_mut() {
                        Some(s) => s,
                        None => return,
                    }
                }
            };
            let n = len.min(self.part_size - last.len);
            last.crc = match (last.crc, data) {
                (Some(crc), Some(d)) => Some(crc32c::crc32c_append(crc, &d[..n])),
                _ => None,
            };
            last.len += n;
            len -= n;
            data = data.map(|d| &d[n..]);
        }
    }

    /// `data` was appended at the end.
    pub fn append(&mut self, data: &[u8]) {
        self.grow(data.len(), Some(data));
    }

    /// `len` bytes at `at` were written (anything but an append: see [`PartCrcs::write`]),
    /// the buffer grown to hold them (a gap before them is zeros).
    pub fn overwrite(&mut self, at: usize, len: usize) {
        let total = self.len();
        let end = at.saturating_add(len);
        if end > total {
            self.grow(end - total, None);
        }
        let mut start = 0;
        for s in self.spans.iter_mut() {
            if start >= end {
                break;
            }
            if start + s.len > at && len > 0 {
                s.crc = None;
            }
            start += s.len;
        }
    }

    /// `data` was written at `at`: an append keeps the CRC up, anything else loses it.
    pub fn write(&mut self, at: usize, data: &[u8]) {
        if at == self.len() {
            self.append(data);
        } else {
            self.overwrite(at, data.len());
        }
    }

    /// The buffer was cut to `new_len`, or grown to it with zeros.
    pub fn resize(&mut self, new_len: usize) {
        let total = self.len();
        if new_len >= total {
            self.grow(new_len - total, None);
            return;
        }
        let mut start = 0;
        let mut keep = 0;
        for s in self.spans.iter_mut() {
            if start >= new_len {
                break;
            }
            keep += 1;
            if start + s.len > new_len {
                s.len = new_len - start;
                s.crc = None;
            }
            start += s.len;
        }
        self.spans.truncate(keep);
    }

    /// The first `n` bytes went out as a part: its CRC when it is known (the first span is
    /// exactly that part); what follows is the next part, of `next_part_size` bytes.
    pub fn split(&mut self, n: usize, next_part_size: usize) -> Option<u32> {
        let crc = match self.spans.front() {
            Some(s) if s.len == n => s.crc,
            None if n == 0 => Some(0),
            _ => None,
        };
        let mut left = n;
        while left > 0 {
            let Some(s) = self.spans.front_mut() else {
                break;
            };
            if s.len <= left {
                left -= s.len;
                self.spans.pop_front();
            } else {
                s.len -= left;
                s.crc = None;
                left = 0;
            }
        }
        self.part_size = next_part_size.max(1);
        crc
    }

    /// The CRC of everything in the buffer (one request body), when it is known.
    pub fn whole(&self) -> Option<u32> {
        self.spans.iter().try_fold(0u32, |acc, s| {
            s.crc.map(|c| crc32c::crc32c_combine(acc, c, s.len))
        })
    }
}

/// The CRC32Cs of an upload's parts split off into their files, by part number, for the
/// parts whose file holds exactly the bytes the CRC was computed from: a part written again,
/// cut, or whose send failed (its CRC may be what the server refused) has none, and is hashed
/// from its file when it is sent.
#[derive(Debug, Default)]
pub struct FileCrcs(BTreeMap<u32, (u32, u64)>);

impl FileCrcs {
    /// Part `part`'s file holds `len` bytes of CRC `crc` (`None`: not known).
    pub fn set(&mut self, part: u32, crc: Option<u32>, len: u64) {
        match crc {
            Some(c) => self.0.insert(part, (c, len)),
            None => self.0.remove(&part),
        };
    }

    /// The CRC of part `part`'s file, which holds `len` bytes (another length: not known).
    pub fn get(&self, part: u32, len: u64) -> Option<u32> {
        self.0
            .get(&part)
            .filter(|(_, l)| *l == len)
            .map(|(c, _)| *c)
    }

    /// Part `part`'s file changed (or its CRC is in doubt).
    pub fn forget(&mut self, part: u32) {
        self.0.remove(&part);
    }

    /// Parts from `first` on are gone.
    pub fn forget_from(&mut self, first: u32) {
        self.0.retain(|&n, _| n < first);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crc(b: &[u8]) -> u32 {
        crc32c::crc32c(b)
    }

    #[test]
    fn appends_give_each_part_the_crc32c_of_its_bytes() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut c = PartCrcs::new(4096);
        // writes of odd sizes crossing part boundaries
        for piece in data.chunks(1000) {
            c.write(c.len(), piece);
        }
        assert_eq!(c.len(), data.len());
        assert_eq!(c.whole(), Some(crc(&data)));
        assert_eq!(c.split(4096, 4096), Some(crc(&data[..4096])));
        assert_eq!(c.split(4096, 8192), Some(crc(&data[4096..8192])));
        // the last part, short, keeps growing up to the next part size
        c.append(b"more");
        let mut rest = data[8192..].to_vec();
        rest.extend_from_slice(b"more");
        assert_eq!(c.split(rest.len(), 8192), Some(crc(&rest)));
        assert_eq!(c.len(), 0);
        assert_eq!(c.whole(), Some(0), "nothing: the CRC of no bytes");
    }

    #[test]
    fn a_write_out_of_order_loses_the_crc_of_its_part_only() {
        let mut c = PartCrcs::new(100);
        c.append(&[1u8; 250]);
        c.write(120, b"x"); // into the second part
        assert_eq!(c.whole(), None);
        assert_eq!(c.split(100, 100), Some(crc(&[1u8; 100])));
        assert_eq!(c.split(100, 100), None, "written out of order");
        c.append(&[2u8; 50]);
        let mut third = vec![1u8; 50];
        third.extend_from_slice(&[2u8; 50]);
        assert_eq!(c.split(100, 100), Some(crc(&third)));
        // a write past the end leaves a gap of zeros: not known
        c.write(10, b"y");
        assert_eq!(c.len(), 11);
        assert_eq!(c.split(11, 100), None);
    }

    #[test]
    fn a_cut_or_a_growth_loses_it_and_a_split_of_another_size_never_takes_it() {
        let mut c = PartCrcs::new(100);
        c.append(&[3u8; 80]);
        c.resize(80);
        assert_eq!(c.whole(), Some(crc(&[3u8; 80])), "the same length: kept");
        c.resize(60);
        assert_eq!((c.len(), c.whole()), (60, None));
        c.resize(0);
        c.append(&[4u8; 70]);
        c.resize(90);
        assert_eq!((c.len(), c.whole()), (90, None));
        let mut c = PartCrcs::new(100);
        c.append(&[5u8; 100]);
        assert_eq!(c.split(60, 100), None, "a part of another size");
        assert_eq!(c.split(40, 100), None, "the rest of a span cut");
        // the part size was a wrong hint: the span is not the part
        let mut c = PartCrcs::new(50);
        c.append(&[6u8; 100]);
        assert_eq!(c.split(100, 100), None);
        let mut c = PartCrcs::unknown(30, 100);
        c.append(b"z");
        assert_eq!(c.split(31, 100), None, "bytes of unknown CRC");
    }

    #[test]
    fn a_write_far_past_the_end_takes_few_spans_and_keeps_parts_aligned() {
        let mut c = PartCrcs::new(16);
        c.append(b"abc");
        let far = 1usize << 40;
        c.write(far, b"x");
        assert_eq!(c.len(), far + 1);
        assert!(c.spans.len() <= 4, "{:?}", c.spans);
        // grown with zeros to a part boundary, then parts written in order again
        c.resize(far + 16);
        c.append(&[7u8; 16]);
        assert_eq!(c.split(far + 16, 16), None);
        assert_eq!(c.split(16, 16), Some(crc(&[7u8; 16])));
    }

    #[test]
    fn file_crcs_are_forgotten_with_their_parts() {
        let mut f = FileCrcs::default();
        for n in 1..=5 {
            f.set(n, Some(n * 10), 100);
        }
        f.set(2, None, 100);
        f.forget(3);
        f.forget_from(5);
        assert_eq!(
            (1..=5).map(|n| f.get(n, 100)).collect::<Vec<_>>(),
            vec![Some(10), None, None, Some(40), None]
        );
        assert_eq!(f.get(1, 99), None, "a file of another length");
    }
}

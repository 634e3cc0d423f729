//! Listing logic: prefix, delimiter roll-up into common prefixes, paging
//! markers, continuation tokens and `encoding-type=url` encoding.

use std::collections::BTreeMap;
use std::ops::Bound;

use crate::store::StoredObject;

/// One ListObjects request, independent of the protocol version.
#[derive(Debug, Clone, Copy, Default)]
pub struct ListQuery<'a> {
    /// Only keys starting with this.
    pub prefix: &'a str,
    /// Roll keys up at the first occurrence of this after the prefix
    /// (`None` or empty: no roll-up).
    pub delimiter: Option<&'a str>,
    /// Exclusive start: keys `<= after` are skipped, and when `after` is a
    /// common prefix of this listing everything under it is skipped too
    /// (this is how a page that ended with a common prefix is resumed).
    pub after: Option<&'a str>,
    /// Page size; a common prefix counts once. 0 gives an empty,
    /// untruncated page.
    pub max_keys: usize,
}

/// What a listing says of one object (no metadata: a listing carries none, and copying it
/// per entry made the server's listings slow down once objects had metadata).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub key: String,
    pub size: u64,
    /// ETag without quotes.
    pub etag: String,
    pub last_modified: std::time::SystemTime,
}

/// One page of a listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListPage {
    pub objects: Vec<Listed>,
    pub common_prefixes: Vec<String>,
    pub is_truncated: bool,
    /// When truncated: the last key or common prefix of this page, to be
    /// passed as `after` for the next one.
    pub next_marker: Option<String>,
}

/// The smallest string greater than every string starting with `s`.
fn prefix_successor(s: &str) -> Option<String> {
    let mut chars: Vec<char> = s.chars().collect();
    while let Some(c) = chars.pop() {
        let mut n = c as u32 + 1;
        if n == 0xD800 {
            n = 0xE000;
        }
        if let Some(next) = char::from_u32(n) {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// Computes one page over the sorted objects of a bucket.
pub(crate) fn list_page(objects: &BTreeMap<String, StoredObject>, q: &ListQuery<'_>) -> ListPage {
    let mut page = ListPage::default();
    if q.max_keys == 0 {
        return page;
    }
    let delimiter = q.delimiter.filter(|d| !d.is_empty());
    let mut lower: Bound<String> = match q.after {
        Some(a) if a >= q.prefix => Bound::Excluded(a.to_owned()),
        _ => Bound::Included(q.prefix.to_owned()),
    };
    let mut count = 0usize;
    let mut last: Option<String> = None;
    // one walk of the map, sought again only past a common prefix's keys
    'seek: loop {
        for (key, obj) in objects.range((lower.clone(), Bound::Unbounded)) {
            // Keys with the prefix are contiguous and start at the lower bound.
            if !key.starts_with(q.prefix) {
                break 'seek;
            }
            let rest = &key[q.prefix.len()..];
            let common =
                delimiter.and_then(|d| rest.find(d).map(|i| &key[..q.prefix.len() + i + d.len()]));
            if count == q.max_keys && !(common.is_some() && common == q.after) {
                page.is_truncated = true;
                break 'seek;
            }
            match common {
                Some(cp) => {
                    if q.after != Some(cp) {
                        page.common_prefixes.push(cp.to_owned());
                        count += 1;
                        last = Some(cp.to_owned());
                    }
                    match prefix_successor(cp) {
                        Some(n) => lower = Bound::Included(n),
                        None => break 'seek,
                    }
                    continue 'seek;
                }
                None => {
                    page.objects.push(Listed {
                        key: key.clone(),
                        size: obj.data.len() as u64,
                        etag: obj.etag.clone(),
                        last_modified: obj.last_modified,
                    });
                    count += 1;
                    last = Some(key.clone());
                }
            }
        }
        break;
    }
    if page.is_truncated {
        page.next_marker = last;
    }
    page
}

/// Encodes a listing marker as an opaque continuation token.
pub fn encode_token(marker: &str) -> String {
    format!("tok-{}", hex::encode(marker.as_bytes()))
}

/// Decodes a token made by [`encode_token`].
pub fn decode_token(token: &str) -> Option<String> {
    let hex_part = token.strip_prefix("tok-")?;
    String::from_utf8(hex::decode(hex_part).ok()?).ok()
}

/// `encoding-type=url` encoding as S3 does it: unreserved characters and `/`
/// stay, space becomes `+`, everything else is `%XX` (so a literal `+` is
/// `%2B`).
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char);
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn successor() {
        assert_eq!(prefix_successor("a/").as_deref(), Some("a0"));
        assert_eq!(prefix_successor("").as_deref(), None);
        assert_eq!(prefix_successor("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_successor("\u{D7FF}").as_deref(), Some("\u{E000}"));
    }

    #[test]
    fn tokens_round_trip() {
        for s in ["", "a/b", "é 🎉\u{1}", "x%2F+"] {
            assert_eq!(decode_token(&encode_token(s)).as_deref(), Some(s));
        }
        assert_eq!(decode_token("garbage"), None);
    }

    #[test]
    fn url_encoding() {
        assert_eq!(url_encode("a b+c/d%e"), "a+b%2Bc/d%25e");
        assert_eq!(url_encode("é\n"), "%C3%A9%0A");
    }
}

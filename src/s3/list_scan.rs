//! The fast path of a ListObjectsV2 page: a byte scanner for the form every server writes.
//!
//! A listing page is flat: a root, simple elements, and `<Contents>`/`<CommonPrefixes>` of
//! simple elements. [`scan_listing`] reads exactly that form with `memchr`, taking text as
//! slices of the body (a key with no entity is decoded straight from the body: one allocation
//! per key, one per ETag). Anything else (CDATA, comments, empty or nested elements, namespace
//! prefixes, attributes below the root, a malformed body) makes it give up, and the general
//! parser in [`super::xml`] reads the page instead: what it returns is what that parser
//! returns for the same body (a test compares the two).

use std::borrow::Cow;
use std::ops::Range;
use std::time::SystemTime;

use super::time::parse_iso8601;
use super::types::{ListPage, ListedObject};
use super::xml::{unescape_into, unquoted, url_decode};

/// Where a key's raw (entity-decoded, not yet URL-decoded) bytes are.
enum Raw {
    /// A range of the body: the key had no entity.
    Body(Range<usize>),
    /// A range of the scanner's buffer of decoded text.
    Decoded(Range<usize>),
}

struct Object {
    key: Raw,
    size: u64,
    etag: Option<String>,
    modified: Option<SystemTime>,
    class: Option<Cow<'static, str>>,
}

struct Scanner<'a> {
    body: &'a [u8],
    at: usize,
    /// Keys and prefixes with entities, decoded.
    decoded: Vec<u8>,
    /// The last `<LastModified>` read and what it parsed to: the objects of a page often
    /// share one.
    last_time: (Range<usize>, Option<SystemTime>),
    /// Read ETags, times and storage classes.
    details: bool,
}

/// A page read by the fast path, or `None` when the body is not in the simple form (the
/// caller then parses it with the general parser). Without `details`, objects come with their
/// key and size only (no ETag, time or storage class: a directory walk that keeps none).
pub(super) fn scan_listing(body: &[u8], details: bool) -> Option<ListPage> {
    let mut s = Scanner {
        body,
        at: 0,
        decoded: Vec::new(),
        last_time: (0..0, None),
        details,
    };
    let root = s.root()?;
    let mut objects: Vec<Object> = Vec::with_capacity(1000);
    let mut prefixes: Vec<Raw> = Vec::new();
    let (mut encoding, mut truncated, mut token) = (None, None, None);
    loop {
        s.skip_ws();
        let name = match s.open()? {
            Open::Start(name) => name,
            Open::End(name) if name == root => break,
            Open::End(_) => return None,
        };
        match name {
            b"Contents" => objects.push(s.contents()?),
            b"CommonPrefixes" => s.common_prefixes(&mut prefixes)?,
            _ => {
                let text = s.text(name)?;
                let field = match name {
                    b"EncodingType" => &mut encoding,
                    b"IsTruncated" => &mut truncated,
                    b"NextContinuationToken" => &mut token,
                    _ => continue,
                };
                let text = s.unescaped(text)?;
                *field = Some(String::from_utf8_lossy(&text).into_owned());
            }
        }
    }
    let url = encoding
        .as_deref()
        .is_some_and(|e: &str| e.trim().eq_ignore_ascii_case("url"));
    let mut page = ListPage {
        objects: Vec::with_capacity(objects.len()),
        ..ListPage::default()
    };
    for o in objects {
        match s.name_of(&o.key, url) {
            Ok(key) => page.objects.push(ListedObject {
                key,
                size: o.size,
                etag: o.etag.filter(|e| !e.is_empty()),
                last_modified: o.modified,
                storage_class: o.class.filter(|c| !c.is_empty()),
            }),
            Err(bytes) => page.skipped_keys.push(bytes),
        }
    }
    page.common_prefixes.reserve(prefixes.len());
    for p in prefixes {
        match s.name_of(&p, url) {
            Ok(prefix) => page.common_prefixes.push(prefix),
            Err(bytes) => page.skipped_keys.push(bytes),
        }
    }
    if truncated.is_some_and(|t| t.trim().eq_ignore_ascii_case("true")) {
        // a truncated page without a token is an error the general parser words
        page.next_continuation_token = Some(token.filter(|t| !t.is_empty())?);
    }
    Some(page)
}

/// A tag just read.
enum Open<'a> {
    Start(&'a [u8]),
    End(&'a [u8]),
}

impl<'a> Scanner<'a> {
    fn skip_ws(&mut self) {
        while self
            .body
            .get(self.at)
            .is_some_and(|b| b.is_ascii_whitespace())
        {
            self.at += 1;
        }
    }

    /// The root's start tag (after an optional `<?xml …?>`), with its attributes: its name.
    fn root(&mut self) -> Option<&'a [u8]> {
        let body = self.body;
        self.skip_ws();
        if body[self.at..].starts_with(b"<?") {
            self.at += memchr::memmem::find(&body[self.at..], b"?>")? + 2;
            self.skip_ws();
        }
        if body.get(self.at) != Some(&b'<') {
            return None;
        }
        let start = self.at + 1;
        let len = body[start..]
            .iter()
            .position(|b| b.is_ascii_whitespace() || *b == b'>' || *b == b'/')?;
        let name = &body[start..start + len];
        if name != b"ListBucketResult" && name != b"ListBucketResponse" {
            return None;
        }
        // to the end of the tag, past quoted attribute values
        let mut i = start + len;
        loop {
            i += memchr::memchr3(b'>', b'"', b'\'', &body[i..])?;
            match body[i] {
                b'>' => break,
                quote => i += 1 + memchr::memchr(quote, &body[i + 1..])? + 1,
            }
        }
        if body[i - 1] == b'/' {
            return None; // an empty listing, `<ListBucketResult/>`
        }
        self.at = i + 1;
        Some(name)
    }

    /// A start or end tag without attributes at `at`; `None` for anything else.
    fn open(&mut self) -> Option<Open<'a>> {
        let body = self.body;
        let rest = body.get(self.at..)?;
        if rest.first() != Some(&b'<') {
            return None;
        }
        let end = memchr::memchr(b'>', rest)?;
        let (closing, name) = match rest.get(1) {
            Some(b'/') => (true, &rest[2..end]),
            _ => (false, &rest[1..end]),
        };
        let plain = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.');
        if name.is_empty() || !name.iter().all(plain) {
            return None;
        }
        self.at += end + 1;
        Some(if closing {
            Open::End(name)
        } else {
            Open::Start(name)
        })
    }

    /// The text of the element `name` just opened, up to its end tag (which must follow).
    fn text(&mut self, name: &[u8]) -> Option<Range<usize>> {
        let body = self.body;
        let start = self.at;
        let end = start + memchr::memchr(b'<', &body[start..])?;
        let close = &body[end..];
        let fits = close.len() > name.len() + 2
            && close.starts_with(b"</")
            && &close[2..2 + name.len()] == name
            && close[2 + name.len()] == b'>';
        if !fits {
            return None;
        }
        // every text goes through the entity decoder in the general parser, which fails on a
        // bad entity even in an element it does not use
        let raw = &body[start..end];
        if memchr::memchr(b'&', raw).is_some() && unescape_into(&mut Vec::new(), raw).is_err() {
            return None;
        }
        self.at = end + name.len() + 3;
        Some(start..end)
    }

    /// Text with its entities decoded (borrowed when it has none).
    fn unescaped(&self, text: Range<usize>) -> Option<Cow<'a, [u8]>> {
        let raw = &self.body[text];
        if memchr::memchr(b'&', raw).is_none() {
            return Some(Cow::Borrowed(raw));
        }
        let mut out = Vec::with_capacity(raw.len());
        unescape_into(&mut out, raw).ok()?;
        Some(Cow::Owned(out))
    }

    /// A key or prefix's text, kept where it is if it has no entity.
    fn keep(&mut self, text: Range<usize>) -> Option<Raw> {
        let raw = &self.body[text.clone()];
        if memchr::memchr(b'&', raw).is_none() {
            return Some(Raw::Body(text));
        }
        let at = self.decoded.len();
        unescape_into(&mut self.decoded, raw).ok()?;
        Some(Raw::Decoded(at..self.decoded.len()))
    }

    /// One `<Contents>` (just opened), to its end tag.
    fn contents(&mut self) -> Option<Object> {
        let mut key = None;
        let mut o = Object {
            key: Raw::Body(0..0),
            size: 0,
            etag: None,
            modified: None,
            class: None,
        };
        loop {
            self.skip_ws();
            let name = match self.open()? {
                Open::Start(name) => name,
                Open::End(b"Contents") => break,
                Open::End(_) => return None,
            };
            let text = self.text(name)?;
            match name {
                b"Key" => key = Some(self.keep(text)?),
                _ if !self.details && name != b"Size" => {}
                b"Size" => {
                    let t = self.unescaped(text)?;
                    o.size = std::str::from_utf8(&t).ok()?.trim().parse().ok()?;
                }
                b"ETag" => {
                    let t = self.unescaped(text)?;
                    o.etag = Some(unquoted(std::str::from_utf8(&t).ok()?).to_owned());
                }
                b"LastModified" => {
                    let raw = &self.body[text.clone()];
                    if raw == &self.body[self.last_time.0.clone()] && !raw.is_empty() {
                        o.modified = self.last_time.1;
                    } else {
                        let t = self.unescaped(text.clone())?;
                        o.modified = parse_iso8601(std::str::from_utf8(&t).ok()?.trim());
                        self.last_time = (text, o.modified);
                    }
                }
                b"StorageClass" => {
                    let t = self.unescaped(text)?;
                    let t = std::str::from_utf8(&t).ok()?.trim();
                    o.class = Some(match super::profile::known_storage_class(t) {
                        Some(c) => Cow::Borrowed(c),
                        None => Cow::Owned(t.to_owned()),
                    });
                }
                _ => {}
            }
        }
        // an object without a key is an error the general parser words
        o.key = key?;
        Some(o)
    }

    /// One `<CommonPrefixes>` (just opened), to its end tag.
    fn common_prefixes(&mut self, out: &mut Vec<Raw>) -> Option<()> {
        loop {
            self.skip_ws();
            let name = match self.open()? {
                Open::Start(name) => name,
                Open::End(b"CommonPrefixes") => return Some(()),
                Open::End(_) => return None,
            };
            let text = self.text(name)?;
            if name == b"Prefix" {
                out.push(self.keep(text)?);
            }
        }
    }

    /// A key or prefix as a `String`, URL-decoded if the page says so; `Err` with its bytes
    /// when they are not UTF-8.
    fn name_of(&self, raw: &Raw, url: bool) -> Result<String, Vec<u8>> {
        let bytes = match raw {
            Raw::Body(r) => &self.body[r.clone()],
            Raw::Decoded(r) => &self.decoded[r.clone()],
        };
        if url && bytes.iter().any(|b| matches!(b, b'%' | b'+')) {
            return String::from_utf8(url_decode(bytes)).map_err(|e| e.into_bytes());
        }
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_owned()),
            Err(_) => Err(bytes.to_vec()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s3::xml::{escape_text, parse_list_objects_v2_events};
    use proptest::prelude::*;

    /// The fast path read `body` as the general parser does, or left it to it.
    fn same_as_general(body: &str) -> bool {
        let fast = scan_listing(body.as_bytes(), true);
        let general = parse_list_objects_v2_events(body.as_bytes());
        match fast {
            Some(page) => {
                assert_eq!(Some(&page), general.as_ref().ok(), "{body}");
                true
            }
            None => false,
        }
    }

    const TEST_SERVER: &str = r#"<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>test-bucket</Name><Prefix>big/</Prefix><MaxKeys>3</MaxKeys><KeyCount>3</KeyCount><IsTruncated>true</IsTruncated><NextContinuationToken>tok-6269672f6630303030303032</NextContinuationToken><Contents><ETag>"d41d8cd98f00b204e9800998ecf8427e"</ETag><Key>big/f0000000</Key><LastModified>2026-12-02T18:39:32.513Z</LastModified><Size>0</Size><StorageClass>STANDARD</StorageClass></Contents><Contents><ETag>"d41d8cd98f00b204e9800998ecf8427e"</ETag><Key>big/f0000001</Key><LastModified>2026-12-02T18:39:32.513Z</LastModified><Size>7</Size><StorageClass>STANDARD</StorageClass></Contents><Contents><ETag>&quot;x&quot;</ETag><Key>big/a&amp;b</Key><LastModified>2026-12-02T18:39:33Z</LastModified><Size>0</Size><StorageClass>ODD</StorageClass></Contents><CommonPrefixes><Prefix>big/d/</Prefix></CommonPrefixes><Delimiter>/</Delimiter></ListBucketResult>"#;

    #[test]
    fn the_usual_forms_take_the_fast_path() {
        assert!(same_as_general(TEST_SERVER));
        let page = scan_listing(TEST_SERVER.as_bytes(), true).expect("fast");
        // without details: the same keys and sizes, nothing else
        let light = scan_listing(TEST_SERVER.as_bytes(), false).expect("fast");
        assert_eq!(light.objects.len(), 3);
        for (l, full) in light.objects.iter().zip(&page.objects) {
            assert_eq!((&l.key, l.size), (&full.key, full.size));
            assert_eq!(
                (&l.etag, l.last_modified, &l.storage_class),
                (&None, None, &None)
            );
        }
        assert_eq!(page.objects.len(), 3);
        assert_eq!(page.objects[2].key, "big/a&b");
        assert_eq!(page.objects[1].size, 7);
        assert_eq!(page.objects[0].last_modified, page.objects[1].last_modified);
        assert_ne!(page.objects[1].last_modified, page.objects[2].last_modified);
        // AWS's indented form, URL-encoded, with fields this parser does not use
        let aws = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListBucketResult xmlns='x' a=\"q>\">\n  <Name>b</Name>\n  <Contents>\n    <Key>a%2Fb+c%20%C3%A9</Key>\n    <ChecksumAlgorithm>CRC64NVME</ChecksumAlgorithm>\n    <Size> 12 </Size>\n  </Contents>\n  <Contents><Key>%FF</Key></Contents>\n  <CommonPrefixes><Prefix>p%25/</Prefix></CommonPrefixes>\n  <EncodingType>url</EncodingType>\n  <IsTruncated>true</IsTruncated>\n  <NextContinuationToken>t&amp;1</NextContinuationToken>\n</ListBucketResult>\n";
        assert!(same_as_general(aws));
        let page = scan_listing(aws.as_bytes(), true).expect("fast");
        assert_eq!(page.objects[0].key, "a/b c é");
        assert_eq!(page.skipped_keys, vec![vec![0xFF]]);
        assert_eq!(page.next_continuation_token.as_deref(), Some("t&1"));
    }

    #[test]
    fn other_forms_are_left_to_the_general_parser() {
        for body in [
            "<ListBucketResult><Contents><Key><![CDATA[c<d]]></Key></Contents></ListBucketResult>",
            "<ListBucketResult/>",
            "<ListBucketResult><!-- c --></ListBucketResult>",
            "<ListBucketResult><Contents><Key>k</Key><Owner><ID>1</ID></Owner></Contents></ListBucketResult>",
            "<ListBucketResult><CommonPrefixes><Prefix/></CommonPrefixes></ListBucketResult>",
            "<s3:ListBucketResult><s3:Contents><s3:Key>k</s3:Key></s3:Contents></s3:ListBucketResult>",
            "<ListBucketResult><Contents><Key a=\"1\">k</Key></Contents></ListBucketResult>",
            "<ListBucketResult><Contents><Size>1</Size></Contents></ListBucketResult>",
            "<ListBucketResult><Contents><Key>k</Key><Size>x</Size></Contents></ListBucketResult>",
            "<ListBucketResult><Name>a&bad;</Name></ListBucketResult>",
            "<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>",
            "<ListBucketResult><Contents><Key>k</Key></Size></Contents></ListBucketResult>",
            "<ListBucketResult>stray<Name>a</Name></ListBucketResult>",
            "<ListBucketResult><Contents><Key>k</Key>",
            "<Error><Code>AccessDenied</Code></Error>",
            "",
        ] {
            assert!(!same_as_general(body), "{body}");
        }
    }

    fn xml_or_url(key: &str, url: bool) -> String {
        if url {
            percent_encoding::utf8_percent_encode(key, percent_encoding::NON_ALPHANUMERIC)
                .to_string()
        } else {
            escape_text(key)
        }
    }

    proptest! {
        #[test]
        fn the_fast_path_reads_what_the_general_parser_reads(
            keys in proptest::collection::vec("[a-c&<>\"' %+/é\\x01]{0,6}", 0..6),
            prefixes in proptest::collection::vec("[a-c&%+ /]{0,4}", 0..3),
            url in any::<bool>(),
            spaced in any::<bool>(),
            truncated in any::<bool>(),
            sizes in proptest::collection::vec(0u64..5_000_000_000, 6),
            times in proptest::collection::vec(0usize..3, 6),
        ) {
            let ws = if spaced { "\n  " } else { "" };
            let stamps = ["2009-10-12T17:50:30.000Z", "2009-10-12T17:50:31Z", "bad"];
            let mut body = format!("<?xml version=\"1.0\"?>{ws}<ListBucketResult xmlns=\"x\">");
            if truncated {
                body += &format!("{ws}<IsTruncated>true</IsTruncated>{ws}<NextContinuationToken>a&amp;b</NextContinuationToken>");
            }
            for (i, k) in keys.iter().enumerate() {
                body += &format!(
                    "{ws}<Contents>{ws}<Key>{}</Key>{ws}<Size>{}</Size><ETag>&quot;e{i}&quot;</ETag><LastModified>{}</LastModified></Contents>",
                    xml_or_url(k, url), sizes[i], stamps[times[i]]
                );
            }
            for p in &prefixes {
                body += &format!("{ws}<CommonPrefixes><Prefix>{}</Prefix></CommonPrefixes>", xml_or_url(p, url));
            }
            if url {
                body += "<EncodingType>url</EncodingType>";
            }
            body += &format!("{ws}</ListBucketResult>{ws}");
            prop_assert!(same_as_general(&body), "left to the general parser: {}", body);
        }
    }
}

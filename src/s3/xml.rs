//! S3 XML bodies: parsing responses (listings, errors, multipart, copy, delete) and
//! building request bodies (CompleteMultipartUpload, Delete).

use std::time::SystemTime;

use quick_xml::events::Event;
use quick_xml::Reader;

use super::error::S3Error;
use super::time::parse_iso8601;
use super::types::{CompletedPart, ListPage, ListedObject, MultipartUploadInfo};

/// One element: local name, its own text (entity-decoded bytes), and child elements.
#[derive(Debug, Default)]
struct Node {
    name: String,
    text: Vec<u8>,
    children: Vec<Node>,
}

impl Node {
    fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.name == name)
    }

    fn children<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// Text of a child element, as bytes (may not be UTF-8).
    fn child_bytes(&self, name: &str) -> Option<&[u8]> {
        self.child(name).map(|c| c.text.as_slice())
    }

    /// Text of a child element as a string (lossy: only for codes, ids, numbers, dates).
    fn child_text(&self, name: &str) -> Option<String> {
        self.child_bytes(name)
            .map(|b| String::from_utf8_lossy(b).into_owned())
    }

    fn child_trimmed(&self, name: &str) -> Option<String> {
        self.child_text(name).map(|s| s.trim().to_owned())
    }

    fn child_bool(&self, name: &str) -> bool {
        self.child_trimmed(name)
            .is_some_and(|s| s.eq_ignore_ascii_case("true"))
    }
}

fn invalid(what: impl std::fmt::Display) -> S3Error {
    S3Error::InvalidResponse(what.to_string())
}

/// Decodes `&lt;` `&gt;` `&amp;` `&apos;` `&quot;` and numeric character references.
pub(super) fn unescape_into(out: &mut Vec<u8>, raw: &[u8]) -> Result<(), S3Error> {
    let mut i = 0;
    while i < raw.len() {
        if raw[i] != b'&' {
            out.push(raw[i]);
            i += 1;
            continue;
        }
        let end = raw[i..]
            .iter()
            .position(|&b| b == b';')
            .map(|p| i + p)
            .ok_or_else(|| invalid("unterminated XML entity"))?;
        let entity = &raw[i + 1..end];
        match entity {
            b"lt" => out.push(b'<'),
            b"gt" => out.push(b'>'),
            b"amp" => out.push(b'&'),
            b"apos" => out.push(b'\''),
            b"quot" => out.push(b'"'),
            _ => {
                let text = std::str::from_utf8(entity).map_err(|_| invalid("bad XML entity"))?;
                let code = if let Some(hex) = text.strip_prefix("#x").or(text.strip_prefix("#X")) {
                    u32::from_str_radix(hex, 16).ok()
                } else if let Some(dec) = text.strip_prefix('#') {
                    dec.parse().ok()
                } else {
                    None
                };
                let c = code
                    .and_then(char::from_u32)
                    .ok_or_else(|| invalid(format!("unknown XML entity &{text};")))?;
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
        i = end + 1;
    }
    Ok(())
}

/// Parses a whole document into a tree and returns its root element.
fn parse_tree(body: &[u8]) -> Result<Node, S3Error> {
    let mut reader = Reader::from_reader(body);
    let mut stack: Vec<Node> = Vec::new();
    loop {
        let event = reader
            .read_event()
            .map_err(|e| invalid(format!("malformed XML: {e}")))?;
        match event {
            Event::Start(e) => stack.push(Node {
                name: String::from_utf8_lossy(e.local_name().as_ref()).into_owned(),
                ..Node::default()
            }),
            Event::Empty(e) => {
                let node = Node {
                    name: String::from_utf8_lossy(e.local_name().as_ref()).into_owned(),
                    ..Node::default()
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None => return Ok(node),
                }
            }
            Event::End(_) => {
                let node = stack.pop().ok_or_else(|| invalid("unbalanced XML"))?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None => return Ok(node),
                }
            }
            Event::Text(t) => {
                if let Some(cur) = stack.last_mut() {
                    unescape_into(&mut cur.text, t.as_ref())?;
                }
            }
            Event::CData(t) => {
                if let Some(cur) = stack.last_mut() {
                    cur.text.extend_from_slice(t.as_ref());
                }
            }
            Event::Eof => return Err(invalid("empty or truncated XML body")),
            _ => {}
        }
    }
}

/// Decodes `%XX` escapes and `+` (space), as S3 writes keys with `encoding-type=url`.
pub fn url_decode(s: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < s.len() => match (hex(s[i + 1]), hex(s[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    out
}

/// A key-like field: URL-decoded when the response says so, then checked for UTF-8.
/// `Err(bytes)` carries the decoded bytes when they are not UTF-8.
fn decode_name(raw: &[u8], url_encoded: bool) -> Result<String, Vec<u8>> {
    let bytes = if url_encoded {
        url_decode(raw)
    } else {
        raw.to_vec()
    };
    String::from_utf8(bytes).map_err(|e| e.into_bytes())
}

fn strip_quotes(etag: &str) -> String {
    unquoted(etag).to_owned()
}

fn etag_of(node: &Node) -> Option<String> {
    node.child_text("ETag")
        .map(|s| strip_quotes(&s))
        .filter(|s| !s.is_empty())
}

fn time_of(node: &Node, name: &str) -> Option<SystemTime> {
    node.child_trimmed(name).and_then(|s| parse_iso8601(&s))
}

/// The fields of an S3 `<Error>` body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
    pub request_id: Option<String>,
    /// `Region` or a redirect `Endpoint`, when the server names one.
    pub region: Option<String>,
    pub endpoint: Option<String>,
}

fn error_fields(node: &Node) -> ErrorBody {
    ErrorBody {
        code: node.child_trimmed("Code").unwrap_or_default(),
        message: node.child_text("Message").unwrap_or_default(),
        request_id: node.child_trimmed("RequestId").filter(|s| !s.is_empty()),
        region: node.child_trimmed("Region").filter(|s| !s.is_empty()),
        endpoint: node.child_trimmed("Endpoint").filter(|s| !s.is_empty()),
    }
}

fn find_error(root: &Node) -> Option<ErrorBody> {
    if root.name == "Error" {
        return Some(error_fields(root));
    }
    // Some servers wrap it: <ErrorResponse><Error>…</Error></ErrorResponse>.
    // (Not any root: a DeleteResult has per-key <Error> children.)
    if root.name == "ErrorResponse" {
        return root.child("Error").map(error_fields);
    }
    None
}

/// Parses an `<Error>` body; `None` when the body is not one.
pub fn parse_error(body: &[u8]) -> Option<ErrorBody> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    parse_tree(body).ok().as_ref().and_then(find_error)
}

/// Parses a body that may be the expected `root` element or an `<Error>` (which S3 can
/// send with status 200 for CompleteMultipartUpload and copies).
fn parse_expecting(
    body: &[u8],
    root_name: &str,
    status: u16,
    key: Option<&str>,
) -> Result<Node, S3Error> {
    let root = parse_tree(body)?;
    if let Some(err) = find_error(&root) {
        return Err(S3Error::service(
            status,
            err.code,
            err.message,
            err.request_id,
            key,
        ));
    }
    // moto (and some older servers) say `…Response` where S3 says `…Result`.
    let alias = root_name
        .strip_suffix("Result")
        .map(|stem| format!("{stem}Response"));
    if root.name != root_name && alias.as_deref() != Some(root.name.as_str()) {
        return Err(invalid(format!(
            "expected <{root_name}>, got <{}>",
            root.name
        )));
    }
    Ok(root)
}

/// The elements of a listing the one-pass parser looks at (names compared once, at the start
/// tag: nothing is allocated per element).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Tag {
    Contents,
    CommonPrefixes,
    Key,
    Size,
    Etag,
    LastModified,
    StorageClass,
    Prefix,
    EncodingType,
    IsTruncated,
    NextContinuationToken,
    Other,
}

impl Tag {
    fn of(name: &[u8]) -> Tag {
        match name {
            b"Contents" => Tag::Contents,
            b"CommonPrefixes" => Tag::CommonPrefixes,
            b"Key" => Tag::Key,
            b"Size" => Tag::Size,
            b"ETag" => Tag::Etag,
            b"LastModified" => Tag::LastModified,
            b"StorageClass" => Tag::StorageClass,
            b"Prefix" => Tag::Prefix,
            b"EncodingType" => Tag::EncodingType,
            b"IsTruncated" => Tag::IsTruncated,
            b"NextContinuationToken" => Tag::NextContinuationToken,
            _ => Tag::Other,
        }
    }
}

/// One `<Contents>` of a listing as read, before its key is decoded (the key's raw bytes are a
/// range of the page's key arena).
#[derive(Default)]
struct RawObject {
    key: Option<std::ops::Range<usize>>,
    size: Option<u64>,
    etag: Option<String>,
    modified: Option<SystemTime>,
    class: Option<std::borrow::Cow<'static, str>>,
}

/// What one pass over a listing collects. Keys and prefixes go to one arena, decoded once
/// the encoding is known (it may come after them).
#[derive(Default)]
struct RawListing {
    objects: Vec<RawObject>,
    prefixes: Vec<std::ops::Range<usize>>,
    arena: Vec<u8>,
    encoding: Option<String>,
    truncated: Option<String>,
    token: Option<String>,
    cur: RawObject,
}

impl RawListing {
    /// The element `tag` (inside `parent`, at `depth` under the root) ended with `text`.
    fn ended(&mut self, depth: usize, parent: Tag, tag: Tag, text: &[u8]) -> Result<(), S3Error> {
        let lossy = String::from_utf8_lossy;
        match (depth, parent, tag) {
            (2, Tag::Contents, Tag::Key) => self.cur.key = Some(self.keep(text)),
            (2, Tag::Contents, Tag::Size) => {
                let s = lossy(text);
                let s = s.trim();
                let size = s
                    .parse::<u64>()
                    .map_err(|_| invalid(format!("bad <Size> {s:?}")))?;
                self.cur.size = Some(size);
            }
            (2, Tag::Contents, Tag::Etag) => {
                let s = lossy(text);
                self.cur.etag = Some(unquoted(&s).to_owned());
            }
            (2, Tag::Contents, Tag::LastModified) => {
                self.cur.modified = parse_iso8601(lossy(text).trim())
            }
            (2, Tag::Contents, Tag::StorageClass) => {
                let s = lossy(text);
                let s = s.trim();
                // the classes the provider profiles name come without an allocation per object
                self.cur.class = Some(match super::profile::known_storage_class(s) {
                    Some(c) => std::borrow::Cow::Borrowed(c),
                    None => std::borrow::Cow::Owned(s.to_owned()),
                });
            }
            (1, _, Tag::Contents) => self.objects.push(std::mem::take(&mut self.cur)),
            (2, Tag::CommonPrefixes, Tag::Prefix) => {
                let r = self.keep(text);
                self.prefixes.push(r);
            }
            (1, _, Tag::EncodingType) => self.encoding = Some(lossy(text).into_owned()),
            (1, _, Tag::IsTruncated) => self.truncated = Some(lossy(text).into_owned()),
            (1, _, Tag::NextContinuationToken) => self.token = Some(lossy(text).into_owned()),
            _ => {}
        }
        Ok(())
    }

    fn keep(&mut self, text: &[u8]) -> std::ops::Range<usize> {
        let at = self.arena.len();
        self.arena.extend_from_slice(text);
        at..self.arena.len()
    }
}

/// An ETag without its whitespace and quotes.
pub(super) fn unquoted(etag: &str) -> &str {
    let t = etag.trim();
    t.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(t)
}

/// Parses a ListObjectsV2 page (`ListBucketResult`) in one pass, without building a tree: a
/// directory walk parses a page of 1,000 keys per 1,000 entries, and each key costs one
/// allocation (its `String`), its ETag another. The usual form of page is read by a byte
/// scanner ([`super::list_scan`]); any other by the events of a general XML reader. A body
/// that is not a listing (an `<Error>`) goes through the general parser, which says what it is.
pub fn parse_list_objects_v2(body: &[u8]) -> Result<ListPage, S3Error> {
    match super::list_scan::scan_listing(body, true) {
        Some(page) => Ok(page),
        None => parse_list_objects_v2_events(body),
    }
}

/// As [`parse_list_objects_v2`], but the objects of a page in the usual form come with their
/// key and size only, for a directory walk that keeps no ETag or time (those of a page in
/// another form may come with them all the same).
pub fn parse_list_objects_v2_names(body: &[u8]) -> Result<ListPage, S3Error> {
    match super::list_scan::scan_listing(body, false) {
        Some(page) => Ok(page),
        None => parse_list_objects_v2_events(body),
    }
}

/// [`parse_list_objects_v2`] for any form of page (the events of a general XML reader).
pub(super) fn parse_list_objects_v2_events(body: &[u8]) -> Result<ListPage, S3Error> {
    let mut reader = Reader::from_reader(body);
    let mut path: Vec<Tag> = Vec::new();
    let mut text: Vec<u8> = Vec::new();
    let mut raw = RawListing {
        objects: Vec::with_capacity(1000),
        arena: Vec::with_capacity(body.len() / 4),
        ..RawListing::default()
    };
    loop {
        let event = reader
            .read_event()
            .map_err(|e| invalid(format!("malformed XML: {e}")))?;
        match event {
            Event::Start(e) => {
                let name = e.local_name();
                let name = name.as_ref();
                if path.is_empty() && name != b"ListBucketResult" && name != b"ListBucketResponse" {
                    return parse_list_objects_v2_tree(body);
                }
                path.push(Tag::of(name));
                text.clear();
            }
            Event::Empty(e) => {
                let Some(&parent) = path.last() else {
                    return parse_list_objects_v2_tree(body);
                };
                raw.ended(path.len(), parent, Tag::of(e.local_name().as_ref()), &[])?;
                text.clear();
            }
            Event::Text(t) => unescape_into(&mut text, t.as_ref())?,
            Event::CData(t) => text.extend_from_slice(t.as_ref()),
            Event::End(_) => {
                let tag = path.pop().ok_or_else(|| invalid("unbalanced XML"))?;
                let Some(&parent) = path.last() else {
                    break;
                };
                raw.ended(path.len(), parent, tag, &text)?;
                text.clear();
            }
            Event::Eof => return Err(invalid("empty or truncated XML body")),
            _ => {}
        }
    }
    let url = raw
        .encoding
        .as_deref()
        .is_some_and(|e| e.trim().eq_ignore_ascii_case("url"));
    let mut page = ListPage {
        objects: Vec::with_capacity(raw.objects.len()),
        ..ListPage::default()
    };
    let arena = &raw.arena;
    for o in raw.objects {
        let raw_key = o.key.ok_or_else(|| invalid("<Contents> without <Key>"))?;
        let key = match decode_name(&arena[raw_key], url) {
            Ok(k) => k,
            Err(bytes) => {
                page.skipped_keys.push(bytes);
                continue;
            }
        };
        page.objects.push(ListedObject {
            key,
            size: o.size.unwrap_or(0),
            etag: o.etag.filter(|e| !e.is_empty()),
            last_modified: o.modified,
            storage_class: o.class.filter(|c| !c.is_empty()),
        });
    }
    for p in raw.prefixes {
        match decode_name(&arena[p], url) {
            Ok(prefix) => page.common_prefixes.push(prefix),
            Err(bytes) => page.skipped_keys.push(bytes),
        }
    }
    if raw
        .truncated
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("true"))
    {
        let token = raw
            .token
            .filter(|t| !t.is_empty())
            .ok_or_else(|| invalid("truncated listing without NextContinuationToken"))?;
        page.next_continuation_token = Some(token);
    }
    Ok(page)
}

/// The `<NextContinuationToken>` of a listing page, found without parsing the page (a SIMD
/// search): the next page can be asked for while this one is parsed. A guess, which the
/// parse confirms; `None` when there is none, or none that reads cleanly.
pub fn peek_continuation_token(body: &[u8]) -> Option<String> {
    const OPEN: &[u8] = b"<NextContinuationToken>";
    let start = memchr::memmem::find(body, OPEN)? + OPEN.len();
    let len = memchr::memchr(b'<', &body[start..])?;
    let mut out = Vec::with_capacity(len);
    unescape_into(&mut out, &body[start..start + len]).ok()?;
    String::from_utf8(out).ok().filter(|t| !t.is_empty())
}

/// A body whose root is not a listing: the error it carries (or why it is not one); an empty
/// `<ListBucketResult/>` is an empty page.
fn parse_list_objects_v2_tree(body: &[u8]) -> Result<ListPage, S3Error> {
    parse_expecting(body, "ListBucketResult", 200, None)?;
    Ok(ListPage::default())
}

/// Keys an STS `AssumeRole*` answer carries: access key, secret, session token, expiry.
pub type StsKeys = (String, String, String, Option<SystemTime>);

/// Parses the answer of STS `AssumeRoleWithWebIdentity` (or `AssumeRole`): the keys under
/// `…Result/Credentials`, or the error an `ErrorResponse` names.
pub fn parse_sts_credentials(body: &[u8]) -> Result<StsKeys, String> {
    let root = parse_tree(body).map_err(|e| format!("unreadable STS answer: {e}"))?;
    let error = if root.name == "Error" {
        Some(&root)
    } else {
        root.child("Error")
    };
    if let Some(err) = error {
        let code = err.child_trimmed("Code").unwrap_or_default();
        let message = err.child_text("Message").unwrap_or_default();
        return Err(format!("STS refused: {code}: {message}"));
    }
    let creds = root
        .children
        .iter()
        .find(|c| c.name.ends_with("Result"))
        .and_then(|r| r.child("Credentials"))
        .ok_or_else(|| format!("STS answer without credentials (root {})", root.name))?;
    let field = |name: &str| {
        creds
            .child_trimmed(name)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| format!("STS answer without {name}"))
    };
    Ok((
        field("AccessKeyId")?,
        field("SecretAccessKey")?,
        field("SessionToken")?,
        time_of(creds, "Expiration"),
    ))
}

/// Parses `InitiateMultipartUploadResult` and returns the upload id.
pub fn parse_initiate_multipart(body: &[u8], key: &str) -> Result<String, S3Error> {
    let root = parse_expecting(body, "InitiateMultipartUploadResult", 200, Some(key))?;
    root.child_trimmed("UploadId")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| invalid("InitiateMultipartUploadResult without UploadId"))
}

/// Parses `CompleteMultipartUploadResult` (or the `<Error>` a 200 may carry);
/// returns the ETag, quotes stripped.
pub fn parse_complete_multipart(
    body: &[u8],
    status: u16,
    key: &str,
) -> Result<Option<String>, S3Error> {
    let root = parse_expecting(body, "CompleteMultipartUploadResult", status, Some(key))?;
    Ok(etag_of(&root))
}

/// ETag and LastModified of a `CopyObjectResult` / `CopyPartResult`
/// (or the `<Error>` a 200 may carry).
/// What a CopyObject or UploadPartCopy answered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyResult {
    pub etag: Option<String>,
    pub last_modified: Option<SystemTime>,
    /// The copy's CRC32C (base64), where the server keeps one.
    pub crc32c: Option<String>,
}

pub fn parse_copy_result(body: &[u8], status: u16, key: &str) -> Result<CopyResult, S3Error> {
    let root = parse_tree(body)?;
    if let Some(err) = find_error(&root) {
        return Err(S3Error::service(
            status,
            err.code,
            err.message,
            err.request_id,
            Some(key),
        ));
    }
    if !matches!(
        root.name.as_str(),
        "CopyObjectResult" | "CopyPartResult" | "CopyObjectResponse" | "CopyPartResponse"
    ) {
        return Err(invalid(format!(
            "expected <CopyObjectResult>, got <{}>",
            root.name
        )));
    }
    Ok(CopyResult {
        etag: etag_of(&root),
        last_modified: time_of(&root, "LastModified"),
        crc32c: root
            .child_text("ChecksumCRC32C")
            .map(|v| v.trim().to_owned()),
    })
}

/// If a 200 body is an `<Error>`, that error. Used before parsing the expected result.
pub fn error_in_ok_body(body: &[u8], status: u16, key: Option<&str>) -> Option<S3Error> {
    let err = parse_error(body)?;
    Some(S3Error::service(
        status,
        err.code,
        err.message,
        err.request_id,
        key,
    ))
}

/// One page of ListMultipartUploads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MultipartUploadsPage {
    pub uploads: Vec<MultipartUploadInfo>,
    /// Markers for the next page, when truncated (URL-decoded).
    pub next: Option<(String, String)>,
    /// Keys that were not UTF-8 after decoding.
    pub skipped_keys: Vec<Vec<u8>>,
}

/// Parses `ListMultipartUploadsResult`.
pub fn parse_list_multipart_uploads(body: &[u8]) -> Result<MultipartUploadsPage, S3Error> {
    let root = parse_expecting(body, "ListMultipartUploadsResult", 200, None)?;
    let url = root
        .child_trimmed("EncodingType")
        .is_some_and(|e| e.eq_ignore_ascii_case("url"));
    let mut page = MultipartUploadsPage::default();
    for u in root.children("Upload") {
        let raw = u
            .child_bytes("Key")
            .ok_or_else(|| invalid("<Upload> without <Key>"))?;
        let key = match decode_name(raw, url) {
            Ok(k) => k,
            Err(bytes) => {
                page.skipped_keys.push(bytes);
                continue;
            }
        };
        let upload_id = u
            .child_trimmed("UploadId")
            .ok_or_else(|| invalid("<Upload> without <UploadId>"))?;
        page.uploads.push(MultipartUploadInfo {
            key,
            upload_id,
            initiated: time_of(u, "Initiated"),
        });
    }
    if root.child_bool("IsTruncated") {
        let key_marker = root.child_bytes("NextKeyMarker").unwrap_or_default();
        let key_marker =
            decode_name(key_marker, url).map_err(|_| invalid("NextKeyMarker is not UTF-8"))?;
        let id_marker = root.child_trimmed("NextUploadIdMarker").unwrap_or_default();
        if key_marker.is_empty() && id_marker.is_empty() {
            return Err(invalid("truncated upload listing without markers"));
        }
        page.next = Some((key_marker, id_marker));
    }
    Ok(page)
}

/// What DeleteObjects said about each key (quiet mode lists only failures).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteResult {
    pub deleted: Vec<String>,
    /// `(key, code, message)` of each key that was not deleted.
    pub errors: Vec<(String, String, String)>,
}

/// Parses `DeleteResult`.
pub fn parse_delete_result(body: &[u8]) -> Result<DeleteResult, S3Error> {
    let root = parse_expecting(body, "DeleteResult", 200, None)?;
    let mut out = DeleteResult::default();
    for d in root.children("Deleted") {
        if let Some(k) = d.child_text("Key") {
            out.deleted.push(k);
        }
    }
    for e in root.children("Error") {
        out.errors.push((
            e.child_text("Key").unwrap_or_default(),
            e.child_trimmed("Code").unwrap_or_default(),
            e.child_text("Message").unwrap_or_default(),
        ));
    }
    Ok(out)
}

/// Escapes text for an XML element body. Control characters (and CR, LF, TAB, which an
/// XML parser would otherwise normalize) become numeric character references.
pub fn escape_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("&#x{:X};", c as u32));
            }
            c => out.push(c),
        }
    }
    out
}

const S3_NS: &str = "http://s3.amazonaws.com/doc/2006-03-01/";

/// Body of CompleteMultipartUpload. ETags are sent quoted, parts in the given order.
pub fn build_complete_multipart(parts: &[CompletedPart]) -> String {
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<CompleteMultipartUpload xmlns=\"{S3_NS}\">"
    );
    for p in parts {
        let etag = strip_quotes(&p.etag);
        let crc = p
            .crc32c
            .as_ref()
            .map(|c| format!("<ChecksumCRC32C>{}</ChecksumCRC32C>", escape_text(c)))
            .unwrap_or_default();
        out.push_str(&format!(
            "<Part><PartNumber>{}</PartNumber><ETag>\"{}\"</ETag>{crc}</Part>",
            p.part_number,
            escape_text(&etag)
        ));
    }
    out.push_str("</CompleteMultipartUpload>");
    out
}

/// Body of DeleteObjects; `quiet` asks the server to report only failures.
pub fn build_delete(keys: &[String], quiet: bool) -> String {
    let mut out = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Delete xmlns=\"{S3_NS}\">");
    if quiet {
        out.push_str("<Quiet>true</Quiet>");
    }
    for k in keys {
        out.push_str("<Object><Key>");
        out.push_str(&escape_text(k));
        out.push_str("</Key></Object>");
    }
    out.push_str("</Delete>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    const LIST_PLAIN: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Name>bucket</Name>
  <Prefix>dir/</Prefix>
  <KeyCount>3</KeyCount>
  <MaxKeys>1000</MaxKeys>
  <Delimiter>/</Delimiter>
  <IsTruncated>true</IsTruncated>
  <NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>
  <Contents>
    <Key>dir/a&amp;b &lt;c&gt; </Key>
    <LastModified>2009-10-12T17:50:30.000Z</LastModified>
    <ETag>&quot;fba9dede5f27731c9771645a39863328&quot;</ETag>
    <Size>434234</Size>
    <StorageClass>STANDARD</StorageClass>
  </Contents>
  <Contents>
    <Key>dir/日本語</Key>
    <LastModified>2009-10-12T17:50:31Z</LastModified>
    <Size>0</Size>
  </Contents>
  <Contents><Key><![CDATA[dir/cdata<&>]]></Key><Size>1</Size></Contents>
  <CommonPrefixes><Prefix>dir/sub/</Prefix></CommonPrefixes>
  <CommonPrefixes><Prefix>dir/x&#x1;y/</Prefix></CommonPrefixes>
</ListBucketResult>"#;

    #[test]
    fn list_plain() {
        let page = parse_list_objects_v2(LIST_PLAIN.as_bytes()).unwrap();
        assert_eq!(page.objects.len(), 3);
        let a = &page.objects[0];
        assert_eq!(a.key, "dir/a&b <c> ");
        assert_eq!(a.size, 434_234);
        assert_eq!(a.etag.as_deref(), Some("fba9dede5f27731c9771645a39863328"));
        assert_eq!(
            a.last_modified,
            Some(UNIX_EPOCH + Duration::from_secs(1_255_369_830))
        );
        assert_eq!(a.storage_class.as_deref(), Some("STANDARD"));
        assert_eq!(page.objects[1].key, "dir/日本語");
        assert_eq!(page.objects[1].etag, None);
        assert_eq!(page.objects[1].storage_class, None);
        assert_eq!(page.objects[2].key, "dir/cdata<&>");
        assert_eq!(page.common_prefixes, vec!["dir/sub/", "dir/x\u{1}y/"]);
        assert_eq!(
            page.next_continuation_token.as_deref(),
            Some("1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=")
        );
        assert!(page.skipped_keys.is_empty());
    }

    #[test]
    fn list_url_encoded() {
        let body = r#"<ListBucketResult>
  <EncodingType>url</EncodingType>
  <IsTruncated>false</IsTruncated>
  <Contents><Key>a%26b%3Cc%3E+d%2Be%25f</Key><Size>3</Size></Contents>
  <Contents><Key>ctl%01%0A%7F</Key><Size>3</Size></Contents>
  <Contents><Key>%E6%97%A5</Key><Size>3</Size></Contents>
  <Contents><Key>bad%FF%FE</Key><Size>3</Size></Contents>
  <Contents><Key>trailing%</Key><Size>3</Size></Contents>
  <CommonPrefixes><Prefix>p%20q/</Prefix></CommonPrefixes>
  <CommonPrefixes><Prefix>%C3%28/</Prefix></CommonPrefixes>
</ListBucketResult>"#;
        let page = parse_list_objects_v2(body.as_bytes()).unwrap();
        let keys: Vec<&str> = page.objects.iter().map(|o| o.key.as_str()).collect();
        assert_eq!(
            keys,
            vec!["a&b<c> d+e%f", "ctl\u{1}\n\u{7f}", "日", "trailing%"]
        );
        assert_eq!(page.common_prefixes, vec!["p q/"]);
        assert_eq!(
            page.skipped_keys,
            vec![b"bad\xff\xfe".to_vec(), b"\xc3(/".to_vec()]
        );
        assert_eq!(page.next_continuation_token, None);
    }

    #[test]
    fn list_not_encoded_keeps_percent() {
        let body = "<ListBucketResult><Contents><Key>a%20b+c</Key><Size>1</Size></Contents></ListBucketResult>";
        let page = parse_list_objects_v2(body.as_bytes()).unwrap();
        assert_eq!(page.objects[0].key, "a%20b+c");
    }

    #[test]
    fn one_pass_listing_parse_reads_every_form() {
        let body = r#"<?xml version="1.0"?><ListBucketResult xmlns="x"><Contents><Key>a%2Fb+c%20d</Key><Size> 7 </Size><ETag>&quot;e1&quot;</ETag><LastModified>2009-10-12T17:50:30.000Z</LastModified><StorageClass>GLACIER</StorageClass></Contents><Contents><Key>t&amp;x&#x41;</Key></Contents><CommonPrefixes><Prefix>p%25/</Prefix></CommonPrefixes><CommonPrefixes><Prefix/></CommonPrefixes><EncodingType>url</EncodingType><IsTruncated>true</IsTruncated><NextContinuationToken>tok 1</NextContinuationToken></ListBucketResult>"#;
        let page = parse_list_objects_v2(body.as_bytes()).expect("page");
        assert_eq!(page.objects.len(), 2);
        // the encoding comes after the keys: they are decoded all the same
        assert_eq!(page.objects[0].key, "a/b c d");
        assert_eq!(page.objects[0].size, 7);
        assert_eq!(page.objects[0].etag.as_deref(), Some("e1"));
        assert!(page.objects[0].last_modified.is_some());
        assert_eq!(page.objects[0].storage_class.as_deref(), Some("GLACIER"));
        assert_eq!(page.objects[1].key, "t&xA");
        assert_eq!(page.objects[1].size, 0);
        assert_eq!(page.common_prefixes, ["p%/", ""]);
        assert_eq!(page.next_continuation_token.as_deref(), Some("tok 1"));
        // moto's root name, CDATA, not truncated
        let page = parse_list_objects_v2(
            b"<ListBucketResponse><Contents><Key><![CDATA[c<d]]></Key><Size>0</Size></Contents><IsTruncated>false</IsTruncated></ListBucketResponse>",
        )
        .expect("page");
        assert_eq!(page.objects[0].key, "c<d");
        assert_eq!(page.next_continuation_token, None);
        assert_eq!(
            parse_list_objects_v2(b"<ListBucketResult/>").expect("empty"),
            ListPage::default()
        );
        // an error body is the error it carries
        let err =
            parse_list_objects_v2(b"<Error><Code>AccessDenied</Code><Message>m</Message></Error>")
                .expect_err("error body");
        assert_eq!(err.status(), Some(200));
        assert!(parse_list_objects_v2(b"<Other/>").is_err());
    }

    #[test]
    fn continuation_token_is_found_before_the_parse() {
        let body = b"<ListBucketResult><IsTruncated>true</IsTruncated><NextContinuationToken>a&amp;b=</NextContinuationToken><Contents><Key>k</Key></Contents></ListBucketResult>";
        assert_eq!(peek_continuation_token(body).as_deref(), Some("a&b="));
        let page = parse_list_objects_v2(body).expect("page");
        assert_eq!(page.next_continuation_token.as_deref(), Some("a&b="));
        assert_eq!(
            peek_continuation_token(LIST_PLAIN.as_bytes()),
            parse_list_objects_v2(LIST_PLAIN.as_bytes())
                .expect("page")
                .next_continuation_token
        );
        for none in [
            &b"<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>"[..],
            b"<ListBucketResult><NextContinuationToken/></ListBucketResult>",
            b"<ListBucketResult><NextContinuationToken></NextContinuationToken>",
            b"<ListBucketResult><NextContinuationToken>cut",
            b"",
        ] {
            assert_eq!(peek_continuation_token(none), None);
        }
    }

    #[test]
    fn list_truncated_without_token_is_invalid() {
        let body = "<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>";
        assert!(matches!(
            parse_list_objects_v2(body.as_bytes()),
            Err(S3Error::InvalidResponse(_))
        ));
        assert!(parse_list_objects_v2(b"<ListBucketResult><Contents>").is_err());
        assert!(parse_list_objects_v2(b"").is_err());
        assert!(parse_list_objects_v2(b"not xml at all").is_err());
    }

    #[test]
    fn error_body() {
        let body = br#"<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>NoSuchKey</Code><Message>The resource you requested does not exist</Message>
<Resource>/mybucket/myfoto.jpg</Resource><RequestId>4442587FB7D0A2F9</RequestId></Error>"#;
        let e = parse_error(body).unwrap();
        assert_eq!(e.code, "NoSuchKey");
        assert_eq!(e.message, "The resource you requested does not exist");
        assert_eq!(e.request_id.as_deref(), Some("4442587FB7D0A2F9"));
        assert_eq!(parse_error(b""), None);
        assert_eq!(parse_error(b"<html>oops</html>"), None);
        let wrapped = b"<ErrorResponse><Error><Code>SlowDown</Code></Error></ErrorResponse>";
        assert_eq!(parse_error(wrapped).unwrap().code, "SlowDown");
    }

    #[test]
    fn initiate_and_complete() {
        let body =
            br#"<InitiateMultipartUploadResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Bucket>example-bucket</Bucket><Key>example-object</Key>
  <UploadId>VXBsb2FkIElEIGZvciA2aWWpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA</UploadId>
</InitiateMultipartUploadResult>"#;
        assert_eq!(
            parse_initiate_multipart(body, "k").unwrap(),
            "VXBsb2FkIElEIGZvciA2aWWpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA"
        );
        let ok = br#"<CompleteMultipartUploadResult><Location>http://x/b/k</Location><Bucket>b</Bucket><Key>k</Key>
<ETag>"3858f62230ac3c915f300c664312c11f-9"</ETag></CompleteMultipartUploadResult>"#;
        assert_eq!(
            parse_complete_multipart(ok, 200, "k").unwrap().as_deref(),
            Some("3858f62230ac3c915f300c664312c11f-9")
        );
        let err = br#"<Error><Code>InternalError</Code><Message>We encountered an internal error. Please try again.</Message><RequestId>656c76696e6727732072657175657374</RequestId></Error>"#;
        let e = parse_complete_multipart(err, 200, "k").unwrap_err();
        assert_eq!(e.status(), Some(200));
        assert_eq!(e.code(), Some("InternalError"));
        assert!(e.is_retryable());
        assert!(parse_initiate_multipart(b"<Other/>", "k").is_err());
        let moto = b"<CompleteMultipartUploadResponse><ETag>\"m-2\"</ETag></CompleteMultipartUploadResponse>";
        assert_eq!(
            parse_complete_multipart(moto, 200, "k").unwrap().as_deref(),
            Some("m-2")
        );
    }

    #[test]
    fn copy_results() {
        let body = br#"<CopyObjectResult><LastModified>2009-10-28T22:32:00.000Z</LastModified><ETag>"9b2cf535f27731c974343645a3985328"</ETag></CopyObjectResult>"#;
        let r = parse_copy_result(body, 200, "k").unwrap();
        assert_eq!(r.etag.as_deref(), Some("9b2cf535f27731c974343645a3985328"));
        assert!(r.last_modified.is_some());
        assert_eq!(r.crc32c, None);
        let part = br#"<CopyPartResult><LastModified>2009-10-28T22:32:00Z</LastModified><ETag>"b"</ETag><ChecksumCRC32C>yZRlqg==</ChecksumCRC32C></CopyPartResult>"#;
        let r = parse_copy_result(part, 200, "k").unwrap();
        assert_eq!(r.etag.as_deref(), Some("b"));
        assert_eq!(r.crc32c.as_deref(), Some("yZRlqg=="));
        let err = b"<Error><Code>SlowDown</Code><Message>m</Message></Error>";
        let e = parse_copy_result(err, 200, "k").unwrap_err();
        assert_eq!(e.code(), Some("SlowDown"));
        assert!(e.is_retryable());
        assert!(error_in_ok_body(err, 200, None).is_some());
        assert!(error_in_ok_body(body, 200, None).is_none());
    }

    #[test]
    fn multipart_uploads() {
        let body = br#"<ListMultipartUploadsResult>
  <Bucket>b</Bucket><EncodingType>url</EncodingType>
  <NextKeyMarker>my%2Bmovie.m2ts</NextKeyMarker>
  <NextUploadIdMarker>YW55IGlkZWEgd2h5IGVsdmluZydzIHVwbG9hZCBmYWlsZWQ</NextUploadIdMarker>
  <IsTruncated>true</IsTruncated>
  <Upload><Key>my+divisor</Key><UploadId>XMgbGlrZSBlbHZpbmcncyBub3QgaGF2aW5nIG11Y2ggbHVjaw</UploadId>
    <Initiated>2010-11-10T20:48:33.000Z</Initiated></Upload>
  <Upload><Key>x%FF</Key><UploadId>u2</UploadId></Upload>
</ListMultipartUploadsResult>"#;
        let page = parse_list_multipart_uploads(body).unwrap();
        assert_eq!(page.uploads.len(), 1);
        assert_eq!(page.uploads[0].key, "my divisor");
        assert!(page.uploads[0].initiated.is_some());
        assert_eq!(page.skipped_keys, vec![b"x\xff".to_vec()]);
        assert_eq!(
            page.next,
            Some((
                "my+movie.m2ts".to_owned(),
                "YW55IGlkZWEgd2h5IGVsdmluZydzIHVwbG9hZCBmYWlsZWQ".to_owned()
            ))
        );
        let last = b"<ListMultipartUploadsResult><IsTruncated>false</IsTruncated></ListMultipartUploadsResult>";
        assert_eq!(parse_list_multipart_uploads(last).unwrap().next, None);
    }

    #[test]
    fn delete_result() {
        let body = br#"<DeleteResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Deleted><Key>sample1.txt</Key></Deleted>
  <Error><Key>a&amp;b</Key><Code>AccessDenied</Code><Message>Access Denied</Message></Error>
</DeleteResult>"#;
        let r = parse_delete_result(body).unwrap();
        assert_eq!(r.deleted, vec!["sample1.txt"]);
        assert_eq!(
            r.errors,
            vec![(
                "a&b".to_owned(),
                "AccessDenied".to_owned(),
                "Access Denied".to_owned()
            )]
        );
        let empty = b"<DeleteResult/>";
        assert_eq!(parse_delete_result(empty).unwrap(), DeleteResult::default());
    }

    #[test]
    fn builders_escape_and_round_trip() {
        let parts = vec![
            CompletedPart {
                part_number: 1,
                etag: "\"abc\"".into(),
                crc32c: None,
            },
            CompletedPart {
                part_number: 2,
                etag: "def".into(),
                crc32c: None,
            },
        ];
        let xml = build_complete_multipart(&parts);
        assert!(xml.contains("<Part><PartNumber>1</PartNumber><ETag>\"abc\"</ETag></Part>"));
        assert!(xml.contains("<Part><PartNumber>2</PartNumber><ETag>\"def\"</ETag></Part>"));

        let keys = vec![
            "a&b<c>\"d'".to_owned(),
            "ctl\u{1}\r\n\tx".to_owned(),
            "日本 %2B+".to_owned(),
        ];
        let xml = build_delete(&keys, true);
        assert!(xml.contains("<Quiet>true</Quiet>"));
        assert!(xml.contains("<Key>a&amp;b&lt;c&gt;&quot;d&apos;</Key>"));
        assert!(xml.contains("<Key>ctl&#x1;&#xD;&#xA;&#x9;x</Key>"));
        // What we build, we parse back to the same keys.
        let root = parse_tree(xml.as_bytes()).unwrap();
        let back: Vec<String> = root
            .children("Object")
            .filter_map(|o| o.child_text("Key"))
            .collect();
        assert_eq!(back, keys);
    }

    #[test]
    fn url_decode_edges() {
        assert_eq!(url_decode(b"%41%2b%2F+"), b"A+/ ");
        assert_eq!(url_decode(b"%4"), b"%4");
        assert_eq!(url_decode(b"%zz"), b"%zz");
        assert_eq!(url_decode(b"%"), b"%");
    }
}

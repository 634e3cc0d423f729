//! Extended attributes, stored as s3fs stores them: one `x-amz-meta-xattr` header holding
//! URL-encoded JSON `{"name":"base64(value)",…}`. Plus read-only `user.s3.etag` and
//! `user.s3.storage_class` for scripts.

use std::collections::BTreeMap;

use base64::Engine;
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::error::{FsError, FsResult};
use super::Filesystem;

/// The metadata header (without `x-amz-meta-`) that holds all extended attributes.
pub const META_XATTR: &str = "xattr";
const ETAG_NAME: &str = "user.s3.etag";
const STORAGE_CLASS_NAME: &str = "user.s3.storage_class";
/// S3 limits all user metadata of an object to 2 KB.
const METADATA_LIMIT: usize = 2048;
const XATTR_CREATE: i32 = 1;
const XATTR_REPLACE: i32 = 2;

const KEEP: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Parse the header value into name → value (a value that is not base64 is left out; a header
/// that is not a JSON object gives none).
pub fn decode(header: &str) -> BTreeMap<String, Vec<u8>> {
    let json = percent_decode_str(header).decode_utf8_lossy();
    let Ok(pairs) = serde_json::from_str::<BTreeMap<String, String>>(json.trim()) else {
        tracing::debug!("x-amz-meta-xattr is not a JSON object of strings: ignored");
        return BTreeMap::new();
    };
    pairs
        .into_iter()
        .filter(|(name, _)| !name.is_empty())
        .filter_map(|(name, v)| {
            let bytes = base64::engine::general_purpose::STANDARD.decode(v).ok()?;
            Some((name, bytes))
        })
        .collect()
}

/// The header value for these attributes.
pub fn encode(attrs: &BTreeMap<String, Vec<u8>>) -> String {
    let pairs: BTreeMap<&str, String> = attrs
        .iter()
        .map(|(k, v)| {
            (
                k.as_str(),
                base64::engine::general_purpose::STANDARD.encode(v),
            )
        })
        .collect();
    // a map of strings always serializes
    let json = serde_json::to_string(&pairs).unwrap_or_else(|_| "{}".to_string());
    utf8_percent_encode(&json, KEEP).to_string()
}

/// One extended attribute of a node, from the metadata it holds.
fn xattr_of(n: &super::inode::Inode, name: &str) -> FsResult<Vec<u8>> {
    match name {
        ETAG_NAME => n
            .etag
            .clone()
            .map(String::into_bytes)
            .ok_or_else(|| FsError::new(libc::ENODATA, "no ETag yet")),
        STORAGE_CLASS_NAME => Ok(n
            .meta
            .storage_class
            .clone()
            .unwrap_or_else(|| "STANDARD".into())
            .into_bytes()),
        _ => n
            .meta
            .user
            .get(META_XATTR)
            .and_then(|h| decode(h).remove(name))
            .ok_or_else(|| FsError::new(libc::ENODATA, "no such attribute")),
    }
}

fn check_name(name: &str) -> FsResult<()> {
    if name.starts_with("system.") {
        return Err(FsError::new(libc::EOPNOTSUPP, "ACLs are not stored in S3"));
    }
    if name.contains(['"', ',', ':', '{', '}']) {
        return Err(FsError::new(
            libc::EINVAL,
            "xattr names with quotes, commas or colons cannot be stored",
        ));
    }
    Ok(())
}

impl Filesystem {
    /// The user metadata of `ino` with its current attributes applied.
    async fn xattrs_of(
        &self,
        ino: u64,
    ) -> FsResult<(BTreeMap<String, Vec<u8>>, Option<String>, Option<String>)> {
        self.full_meta(ino).await?;
        self.getattr(ino).await?;
        let t = self.inodes.lock();
        let n = t.get(ino).ok_or_else(FsError::not_found)?;
        let map = n
            .meta
            .user
            .get(META_XATTR)
            .map(|h| decode(h))
            .unwrap_or_default();
        Ok((map, n.etag.clone(), n.meta.storage_class.clone()))
    }

    /// [`getxattr`](Self::getxattr) answered from memory: `Some` when the node's metadata is
    /// known and its attributes are fresh (what `getxattr` would read without a request),
    /// `None` when the answer needs the async path. `ls -l` asks every entry for two of them,
    /// so the FUSE adapter answers these on its own thread.
    pub fn getxattr_now(&self, ino: u64, name: &str) -> Option<FsResult<Vec<u8>>> {
        let t = self.inodes.lock();
        let n = t.get(ino)?;
        if n.partial_meta {
            // `ls -l` asks every file for its ACL and security label: a file whose attributes
            // came from a listing (`--stat-from-listing`) answers "none" without fetching its
            // metadata
            let acl_or_label =
                name.starts_with("security.") || name.starts_with("system.posix_acl_");
            return acl_or_label.then(|| Err(FsError::new(libc::ENODATA, "no such attribute")));
        }
        if !(n.attr_fresh(std::time::Instant::now()) || ino == super::ROOT_INO) {
            return None;
        }
        Some(xattr_of(n, name))
    }

    pub async fn getxattr(&self, ino: u64, name: &str) -> FsResult<Vec<u8>> {
        if let Some(answer) = self.getxattr_now(ino, name) {
            return answer;
        }
        self.full_meta(ino).await?;
        self.getattr(ino).await?;
        let t = self.inodes.lock();
        xattr_of(t.get(ino).ok_or_else(FsError::not_found)?, name)
    }

    /// Names, NUL-terminated one after another, as listxattr(2) wants them.
    pub async fn listxattr(&self, ino: u64) -> FsResult<Vec<u8>> {
        let (map, etag, _) = self.xattrs_of(ino).await?;
        let mut out = Vec::new();
        for name in map.keys() {
            out.extend_from_slice(name.as_bytes());
            out.push(0);
        }
        if etag.is_some() {
            out.extend_from_slice(ETAG_NAME.as_bytes());
            out.push(0);
        }
        out.extend_from_slice(STORAGE_CLASS_NAME.as_bytes());
        out.push(0);
        Ok(out)
    }

    pub async fn setxattr(&self, ino: u64, name: &str, value: &[u8], flags: i32) -> FsResult<()> {
        self.check_writable()?;
        check_name(name)?;
        if name == ETAG_NAME || name == STORAGE_CLASS_NAME {
            return Err(FsError::new(libc::EPERM, "read-only attribute"));
        }
        let (mut map, _, _) = self.xattrs_of(ino).await?;
        let exists = map.contains_key(name);
        if flags & XATTR_CREATE != 0 && exists {
            return Err(FsError::new(libc::EEXIST, "attribute exists"));
        }
        if flags & XATTR_REPLACE != 0 && !exists {
            return Err(FsError::new(libc::ENODATA, "no such attribute"));
        }
        map.insert(name.to_string(), value.to_vec());
        self.store_xattrs(ino, &map).await
    }

    pub async fn removexattr(&self, ino: u64, name: &str) -> FsResult<()> {
        self.check_writable()?;
        let (mut map, _, _) = self.xattrs_of(ino).await?;
        if map.remove(name).is_none() {
            return Err(FsError::new(libc::ENODATA, "no such attribute"));
        }
        self.store_xattrs(ino, &map).await
    }

    async fn store_xattrs(&self, ino: u64, map: &BTreeMap<String, Vec<u8>>) -> FsResult<()> {
        // a file an earlier run closed goes up before it is changed
        self.land_recovered(ino).await?;
        let header = encode(map);
        let (attr, writing) = {
            let mut t = self.inodes.lock();
            let n = t.get_mut(ino).ok_or_else(FsError::not_found)?;
            let mut meta = n.meta.user.clone();
            if map.is_empty() {
                meta.remove(META_XATTR);
            } else {
                meta.insert(META_XATTR.to_string(), header);
            }
            let size: usize = meta.iter().map(|(k, v)| k.len() + 11 + v.len()).sum();
            if size > METADATA_LIMIT {
                return Err(FsError::new(
                    libc::E2BIG,
                    "object metadata would exceed S3's 2 KB limit",
                ));
            }
            n.meta.user = meta;
            // an xattr change changes ctime, as on ext4 and s3fs
            n.attr.ctime = std::time::SystemTime::now();
            (n.attr, n.writing || n.local_only)
        };
        if writing {
            // carried by the writer's commit, or written after it closes if it commits nothing
            return self.defer_metadata(ino);
        }
        self.store_metadata(ino, &attr).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3fs_format_round_trip() {
        let mut m = BTreeMap::new();
        m.insert("user.a".to_string(), b"hello".to_vec());
        m.insert("user.bin".to_string(), vec![0, 255, 10]);
        let h = encode(&m);
        assert!(h.starts_with("%7B%22user.a%22%3A%22aGVsbG8%3D%22"), "{h}");
        assert_eq!(decode(&h), m);
        // what s3fs writes for {"user.other":"dGVzdA=="}
        let s3fs = "%7B%22user.other%22%3A%22dGVzdA%3D%3D%22%7D";
        assert_eq!(
            decode(s3fs).get("user.other").map(Vec::as_slice),
            Some(&b"test"[..])
        );
        assert!(decode("").is_empty());
    }

    #[test]
    fn names_with_json_punctuation_round_trip() {
        // the string splitting this replaced broke these apart
        let mut m = BTreeMap::new();
        m.insert("user.a:b,c".to_string(), b"x".to_vec());
        m.insert("user.\"quoted\"".to_string(), b"y".to_vec());
        m.insert("user.{brace}".to_string(), b"z".to_vec());
        assert_eq!(decode(&encode(&m)), m);
        assert!(decode("%7Bnot json").is_empty());
    }
}

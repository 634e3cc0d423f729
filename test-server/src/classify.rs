//! Names the S3 operation of a raw HTTP request (path-style addressing),
//! so that counting, logging and faults work before s3s parses anything.

use http::{HeaderMap, Method};
use percent_encoding::percent_decode_str;

/// What a request is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Operation name as in the S3 API ("PutObject", "ListObjectsV2", ...).
    pub op: String,
    pub bucket: Option<String>,
    /// Decoded object key.
    pub key: Option<String>,
}

fn decode(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// Query parameter names (decoded) with their decoded values.
pub fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(&k.replace('+', " ")), decode(&v.replace('+', " ")))
        })
        .collect()
}

/// Splits a raw request path into bucket and key, like s3s does.
pub fn split_path(raw_path: &str) -> (Option<String>, Option<String>) {
    let decoded = decode(raw_path);
    let path = decoded.strip_prefix('/').unwrap_or(&decoded);
    if path.is_empty() {
        return (None, None);
    }
    match path.split_once('/') {
        None | Some((_, "")) => (Some(path.trim_end_matches('/').to_owned()), None),
        Some((b, k)) => (Some(b.to_owned()), Some(k.to_owned())),
    }
}

/// Classifies a request.
pub fn classify(
    method: &Method,
    raw_path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Target {
    let (bucket, key) = split_path(raw_path);
    let q = query_pairs(query);
    let has = |name: &str| q.iter().any(|(k, _)| k == name);
    let value = |name: &str| q.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let copy = headers.contains_key("x-amz-copy-source");
    let first_sub = || {
        const SUBS: &[(&str, &str)] = &[
            ("tagging", "Tagging"),
            ("acl", "Acl"),
            ("policy", "Policy"),
            ("cors", "Cors"),
            ("versioning", "Versioning"),
            ("lifecycle", "Lifecycle"),
            ("website", "Website"),
            ("encryption", "Encryption"),
            ("logging", "Logging"),
            ("notification", "Notification"),
            ("replication", "Replication"),
            ("ownershipControls", "OwnershipControls"),
            ("publicAccessBlock", "PublicAccessBlock"),
            ("object-lock", "ObjectLockConfiguration"),
            ("accelerate", "Accelerate"),
            ("requestPayment", "RequestPayment"),
        ];
        SUBS.iter().find(|(s, _)| has(s)).map(|(_, n)| *n)
    };
    let op: String = match (&bucket, &key) {
        (None, _) => match *method {
            Method::GET => "ListBuckets".into(),
            _ => "Unknown".into(),
        },
        (Some(_), None) => match *method {
            Method::HEAD => "HeadBucket".into(),
            Method::GET if value("list-type") == Some("2") => "ListObjectsV2".into(),
            Method::GET if has("uploads") => "ListMultipartUploads".into(),
            Method::GET if has("versions") => "ListObjectVersions".into(),
            Method::GET if has("location") => "GetBucketLocation".into(),
            Method::GET => match first_sub() {
                Some("Lifecycle") => "GetBucketLifecycleConfiguration".into(),
                Some(s) => format!("GetBucket{s}"),
                None => "ListObjects".into(),
            },
            Method::PUT => match first_sub() {
                Some("Lifecycle") => "PutBucketLifecycleConfiguration".into(),
                Some(s) => format!("PutBucket{s}"),
                None => "CreateBucket".into(),
            },
            Method::DELETE => match first_sub() {
                Some(s) => format!("DeleteBucket{s}"),
                None => "DeleteBucket".into(),
            },
            Method::POST if has("delete") => "DeleteObjects".into(),
            Method::POST => "PostObject".into(),
            _ => "Unknown".into(),
        },
        (Some(_), Some(_)) => match *method {
            Method::HEAD => "HeadObject".into(),
            Method::GET if has("uploadId") => "ListParts".into(),
            Method::GET if has("tagging") => "GetObjectTagging".into(),
            Method::GET if has("acl") => "GetObjectAcl".into(),
            Method::GET if has("attributes") => "GetObjectAttributes".into(),
            Method::GET => "GetObject".into(),
            Method::PUT if has("partNumber") && has("uploadId") => {
                if copy { "UploadPartCopy" } else { "UploadPart" }.into()
            }
            Method::PUT if has("tagging") => "PutObjectTagging".into(),
            Method::PUT if has("acl") => "PutObjectAcl".into(),
            Method::PUT if copy => "CopyObject".into(),
            Method::PUT => "PutObject".into(),
            Method::POST if has("uploads") => "CreateMultipartUpload".into(),
            Method::POST if has("uploadId") => "CompleteMultipartUpload".into(),
            Method::POST if has("restore") => "RestoreObject".into(),
            Method::POST if has("select") => "SelectObjectContent".into(),
            Method::DELETE if has("uploadId") => "AbortMultipartUpload".into(),
            Method::DELETE if has("tagging") => "DeleteObjectTagging".into(),
            Method::DELETE => "DeleteObject".into(),
            _ => "Unknown".into(),
        },
    };
    Target { op, bucket, key }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(method: Method, path: &str, query: Option<&str>, copy: bool) -> String {
        let mut h = HeaderMap::new();
        if copy {
            h.insert("x-amz-copy-source", "b/k".parse().unwrap());
        }
        classify(&method, path, query, &h).op
    }

    #[test]
    fn names() {
        assert_eq!(op(Method::GET, "/", None, false), "ListBuckets");
        assert_eq!(
            op(Method::GET, "/b", Some("list-type=2&prefix=a"), false),
            "ListObjectsV2"
        );
        assert_eq!(
            op(Method::GET, "/b/", Some("prefix=a"), false),
            "ListObjects"
        );
        assert_eq!(
            op(Method::GET, "/b", Some("uploads&prefix=x"), false),
            "ListMultipartUploads"
        );
        assert_eq!(op(Method::HEAD, "/b", None, false), "HeadBucket");
        assert_eq!(op(Method::PUT, "/b", None, false), "CreateBucket");
        assert_eq!(
            op(Method::POST, "/b", Some("delete"), false),
            "DeleteObjects"
        );
        assert_eq!(op(Method::HEAD, "/b/k", None, false), "HeadObject");
        assert_eq!(op(Method::GET, "/b/k", None, false), "GetObject");
        assert_eq!(op(Method::PUT, "/b/k", None, false), "PutObject");
        assert_eq!(op(Method::PUT, "/b/k", None, true), "CopyObject");
        assert_eq!(
            op(Method::PUT, "/b/k", Some("partNumber=1&uploadId=u"), false),
            "UploadPart"
        );
        assert_eq!(
            op(Method::PUT, "/b/k", Some("partNumber=1&uploadId=u"), true),
            "UploadPartCopy"
        );
        assert_eq!(
            op(Method::POST, "/b/k", Some("uploads"), false),
            "CreateMultipartUpload"
        );
        assert_eq!(
            op(Method::POST, "/b/k", Some("uploadId=u"), false),
            "CompleteMultipartUpload"
        );
        assert_eq!(
            op(Method::DELETE, "/b/k", Some("uploadId=u"), false),
            "AbortMultipartUpload"
        );
        assert_eq!(
            op(Method::GET, "/b/k", Some("uploadId=u"), false),
            "ListParts"
        );
        assert_eq!(op(Method::DELETE, "/b/k", None, false), "DeleteObject");
    }

    #[test]
    fn keys_are_decoded() {
        let t = classify(
            &Method::GET,
            "/b/a%20b/%E2%9C%93//x%2Fy",
            None,
            &HeaderMap::new(),
        );
        assert_eq!(t.bucket.as_deref(), Some("b"));
        assert_eq!(t.key.as_deref(), Some("a b/✓//x/y"));
        assert_eq!(split_path("/b/"), (Some("b".into()), None));
    }
}

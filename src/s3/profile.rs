//! What differs between S3 providers, as one table (AWS, Huawei OBS, Alibaba OSS, GDC, MinIO,
//! Ceph RGW, other), with what each server is known to do where S3 servers disagree.

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;

/// A known S3-compatible service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Provider {
    /// Amazon S3.
    Aws,
    /// Huawei Cloud OBS.
    Obs,
    /// Alibaba Cloud OSS.
    Oss,
    /// Google Distributed Cloud (S3-compatible object storage).
    Gdc,
    /// MinIO.
    Minio,
    /// Ceph RADOS Gateway.
    Ceph,
    /// Anything else that speaks S3 (SeaweedFS, Garage, s3s, moto, …): probed at mount.
    Other,
}

/// The facts about one provider that change what requests the client may send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub provider: Provider,
    /// Lower-case name, as accepted by [`Provider::from_name`].
    pub name: &'static str,
    /// Path-style (`host/bucket/key`) rather than virtual-hosted (`bucket.host/key`) by default.
    pub default_path_style: bool,
    /// Add `x-id=<Operation>` to the query string, as AWS SDKs do. Some providers reject it.
    pub send_x_id_query: bool,
    /// Largest part of a multipart upload.
    pub max_part_size: u64,
    /// Smallest part of a multipart upload (all but the last).
    pub min_part_size: u64,
    /// Most parts in one multipart upload.
    pub max_parts: u32,
    /// Largest object the provider stores.
    pub max_object_size: u64,
    /// Largest object a single CopyObject can copy; larger ones need UploadPartCopy.
    pub max_copy_object_size: u64,
    /// ListObjectsV2 accepts `encoding-type=url` (and then URL-encodes keys).
    pub list_encoding_url: bool,
    /// Header that sets the storage class of a new object.
    pub storage_class_header: &'static str,
    /// What the server does where servers differ (conditions, ETags, part copy). For a
    /// profile with `probe`, what is assumed until the mount's probe says otherwise.
    pub caps: Capabilities,
    /// The server's behaviour is not known well enough: find it out at mount (see `probe.rs`).
    pub probe: bool,
    /// Value of `x-amz-server-side-encryption` for SSE-KMS (`aws:kms`; GDC says `SSE-KMS`).
    pub sse_kms_value: &'static str,
    /// Storage classes this provider names, in the spelling its header wants. Empty: any
    /// class is passed through as given (upper-cased).
    pub storage_classes: &'static [&'static str],
    /// How this provider's ETags relate to the content.
    pub etag_style: EtagStyle,
}

/// Whether a server honours a feature bucketfs relies on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holds {
    Yes,
    /// Accepted but ignored, or refused: not to be relied on.
    No,
    /// Not known (the probe could not tell).
    Unknown,
}

impl Holds {
    pub fn yes(self) -> bool {
        self == Holds::Yes
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Holds::Yes => "yes",
            Holds::No => "no",
            Holds::Unknown => "unknown",
        }
    }
    pub fn parse(s: &str) -> Option<Holds> {
        match s {
            "yes" => Some(Holds::Yes),
            "no" => Some(Holds::No),
            "unknown" => Some(Holds::Unknown),
            _ => None,
        }
    }
}

/// What a server really does in the corners where S3 servers differ from AWS and each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// `If-None-Match: *` on PutObject refuses to replace an existing object (412).
    pub conditional_create: Holds,
    /// `If-Match` on PutObject refuses to replace another version (412).
    pub conditional_replace: Holds,
    /// `If-Match` is matched only against the bare ETag (`abc…`), not the quoted form
    /// (`"abc…"`) that RFC 9110 and AWS use (Ceph RGW compares the raw strings).
    pub if_match_bare: bool,
    /// `If-None-Match: *` / `If-Match` on CompleteMultipartUpload are honoured. Where not,
    /// the client checks the condition with a HEAD just before completing.
    pub conditional_complete: Holds,
    /// CompleteMultipartUpload's reply names the new object's ETag (Ceph RGW: empty). Where
    /// not, the client HEADs the key for it.
    pub complete_etag: Holds,
    /// UploadPartCopy (a server-side copy of a range into a part) works.
    pub upload_part_copy: Holds,
    /// `x-amz-copy-source-if-match` on a copy refuses a changed source (412). Ceph RGW and
    /// moto ignore it.
    pub copy_source_condition: Holds,
    /// PutObject with a wrong `x-amz-checksum-crc32c` is refused (`BadDigest`): the server
    /// verifies CRC32C, so uploads may carry it instead of the costlier `Content-MD5`.
    pub verifies_crc32c: Holds,
    /// A PutObject signed with a SHA-256 (`x-amz-content-sha256`) that is not its body's is
    /// refused: the server verifies the signed payload hash, so uploads without CRC32C may be
    /// protected by it instead of the costlier `Content-MD5`.
    pub verifies_payload_sha256: Holds,
    /// A single-part object's ETag is the MD5 of its bytes (unless encrypted with KMS or a
    /// customer key): whole-object GETs are checked against it.
    pub etag_md5: Holds,
}

impl Capabilities {
    /// Everything as AWS documents it.
    pub const AWS: Capabilities = Capabilities {
        conditional_create: Holds::Yes,
        conditional_replace: Holds::Yes,
        if_match_bare: false,
        conditional_complete: Holds::Yes,
        complete_etag: Holds::Yes,
        upload_part_copy: Holds::Yes,
        copy_source_condition: Holds::Yes,
        verifies_crc32c: Holds::Yes,
        verifies_payload_sha256: Holds::Yes,
        etag_md5: Holds::Yes,
    };

    /// `name value` lines, as kept in the probe cache.
    pub fn to_text(&self) -> String {
        format!(
            "conditional_create {}\nconditional_replace {}\nif_match_bare {}\n\
             conditional_complete {}\ncomplete_etag {}\nupload_part_copy {}\n\
             copy_source_condition {}\nverifies_crc32c {}\nverifies_payload_sha256 {}\n\
             etag_md5 {}\n",
            self.conditional_create.as_str(),
            self.conditional_replace.as_str(),
            self.if_match_bare,
            self.conditional_complete.as_str(),
            self.complete_etag.as_str(),
            self.upload_part_copy.as_str(),
            self.copy_source_condition.as_str(),
            self.verifies_crc32c.as_str(),
            self.verifies_payload_sha256.as_str(),
            self.etag_md5.as_str(),
        )
    }

    /// The inverse of [`Capabilities::to_text`]; `None` unless every field is there.
    pub fn from_text(text: &str) -> Option<Capabilities> {
        let mut fields = std::collections::HashMap::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            if let Some((k, v)) = line.trim().split_once(' ') {
                fields.insert(k, v.trim());
            }
        }
        let holds = |k: &str| fields.get(k).and_then(|v| Holds::parse(v));
        Some(Capabilities {
            conditional_create: holds("conditional_create")?,
            conditional_replace: holds("conditional_replace")?,
            if_match_bare: fields.get("if_match_bare")?.parse().ok()?,
            conditional_complete: holds("conditional_complete")?,
            complete_etag: holds("complete_etag")?,
            upload_part_copy: holds("upload_part_copy")?,
            copy_source_condition: holds("copy_source_condition")?,
            verifies_crc32c: holds("verifies_crc32c")?,
            verifies_payload_sha256: holds("verifies_payload_sha256")?,
            etag_md5: holds("etag_md5")?,
        })
    }

    /// One line per guarantee that is weaker on this server than on AWS, for the log.
    pub fn weaker_guarantees(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if !self.conditional_create.yes() {
            out.push(
                "this server does not honour If-None-Match on PutObject: a new file created at \
                 the same time through another client may be overwritten",
            );
        }
        if !self.conditional_replace.yes() {
            out.push(
                "this server does not honour If-Match on PutObject: a file changed through \
                 another client while open here may be overwritten",
            );
        }
        if !self.conditional_complete.yes() {
            out.push(
                "this server ignores conditions on CompleteMultipartUpload: large files are \
                 checked with a HEAD just before they complete, so a change through another \
                 client in that moment may be overwritten",
            );
        }
        if !self.copy_source_condition.yes() {
            out.push(
                "this server ignores x-amz-copy-source-if-match: a rename of a file changed \
                 through another client at that moment may carry the other version",
            );
        }
        if !self.upload_part_copy.yes() {
            out.push(
                "this server refuses UploadPartCopy: renames and in-place changes of large \
                 files copy their bytes through this machine",
            );
        }
        out
    }
}

/// What an ETag says about an object's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EtagStyle {
    /// Single-part objects (without SSE-KMS/SSE-C): hex MD5 of the body, lower case.
    /// Multipart: MD5 of the parts' binary MD5s, `-N` (AWS, OBS, MinIO, Ceph, GDC).
    Md5,
    /// Single-part objects: hex MD5 in upper case. Multipart: an opaque value with `-N`
    /// that is *not* AWS's MD5-of-MD5s (Alibaba OSS). Compare case-insensitively.
    Md5UpperOpaqueMultipart,
}

const fn aws_like(provider: Provider, name: &'static str) -> Profile {
    Profile {
        provider,
        name,
        default_path_style: false,
        send_x_id_query: false,
        max_part_size: 5 * GIB,
        min_part_size: 5 * MIB,
        max_parts: 10_000,
        max_object_size: 5 * 1024 * GIB,
        max_copy_object_size: 5 * GIB,
        list_encoding_url: true,
        storage_class_header: "x-amz-storage-class",
        caps: Capabilities::AWS,
        probe: false,
        sse_kms_value: "aws:kms",
        storage_classes: &[],
        etag_style: EtagStyle::Md5,
    }
}

const AWS_CLASSES: &[&str] = &[
    "STANDARD",
    "REDUCED_REDUNDANCY",
    "STANDARD_IA",
    "ONEZONE_IA",
    "INTELLIGENT_TIERING",
    "GLACIER",
    "GLACIER_IR",
    "DEEP_ARCHIVE",
    "EXPRESS_ONEZONE",
    "OUTPOSTS",
    "SNOW",
];
const OBS_CLASSES: &[&str] = &["STANDARD", "STANDARD_IA", "GLACIER"];

/// `name` as the static string of a storage class some profile names (listings keep those
/// without an allocation per object).
pub(super) fn known_storage_class(name: &str) -> Option<&'static str> {
    [AWS_CLASSES, OBS_CLASSES, OSS_CLASSES]
        .into_iter()
        .flatten()
        .find(|c| **c == name)
        .copied()
}
const OSS_CLASSES: &[&str] = &[
    "Standard",
    "IA",
    "Archive",
    "ColdArchive",
    "DeepColdArchive",
];

/// Providers that document no conditional writes (none are sent), nor CRC32C checksums, nor
/// that they verify a signed payload's SHA-256 (uploads carry Content-MD5).
const NO_CONDITIONS: Capabilities = Capabilities {
    conditional_create: Holds::No,
    conditional_replace: Holds::No,
    conditional_complete: Holds::No,
    verifies_crc32c: Holds::No,
    verifies_payload_sha256: Holds::Unknown,
    ..Capabilities::AWS
};

/// The table. Order matches [`Provider`]; [`profile`] relies on it.
static PROFILES: [Profile; 7] = [
    Profile {
        send_x_id_query: true,
        storage_classes: AWS_CLASSES,
        ..aws_like(Provider::Aws, "aws")
    },
    Profile {
        // OBS rejects the `x-id` query parameter.
        send_x_id_query: false,
        caps: NO_CONDITIONS,
        storage_classes: OBS_CLASSES,
        ..aws_like(Provider::Obs, "obs")
    },
    Profile {
        max_copy_object_size: GIB,
        storage_class_header: "x-oss-storage-class",
        caps: NO_CONDITIONS,
        storage_classes: OSS_CLASSES,
        etag_style: EtagStyle::Md5UpperOpaqueMultipart,
        ..aws_like(Provider::Oss, "oss")
    },
    Profile {
        default_path_style: true,
        // EV2 buckets refuse UploadPartCopy; large copies fall back to download+upload.
        caps: Capabilities {
            upload_part_copy: Holds::No,
            ..NO_CONDITIONS
        },
        sse_kms_value: "SSE-KMS",
        ..aws_like(Provider::Gdc, "gdc")
    },
    Profile {
        default_path_style: true,
        ..aws_like(Provider::Minio, "minio")
    },
    Profile {
        // measured against RGW 16.2.15 (docs/PROVIDERS.md): the quoted If-Match that AWS
        // clients send always fails; Complete ignores If-None-Match and answers an empty ETag
        default_path_style: true,
        caps: Capabilities {
            if_match_bare: true,
            conditional_complete: Holds::No,
            complete_etag: Holds::No,
            copy_source_condition: Holds::No,
            // additional checksums came with Ceph 19 (Squid)
            verifies_crc32c: Holds::No,
            ..Capabilities::AWS
        },
        ..aws_like(Provider::Ceph, "ceph")
    },
    Profile {
        default_path_style: true,
        probe: true,
        caps: Capabilities {
            verifies_crc32c: Holds::Unknown,
            verifies_payload_sha256: Holds::Unknown,
            etag_md5: Holds::Unknown,
            ..Capabilities::AWS
        },
        ..aws_like(Provider::Other, "other")
    },
];

/// The profile of a provider.
pub fn profile(provider: Provider) -> &'static Profile {
    let i = match provider {
        Provider::Aws => 0,
        Provider::Obs => 1,
        Provider::Oss => 2,
        Provider::Gdc => 3,
        Provider::Minio => 4,
        Provider::Ceph => 5,
        Provider::Other => 6,
    };
    &PROFILES[i]
}

impl Profile {
    /// The provider's spelling of a storage class given on the command line. Common names
    /// of other providers are translated (`IA`/`STANDARD_IA`, `ARCHIVE`/`GLACIER`, …);
    /// an unknown class is an error naming the valid ones.
    pub fn storage_class_name(&self, requested: &str) -> Result<String, String> {
        let want = requested.trim();
        if want.is_empty() {
            return Err("storage class is empty".into());
        }
        if !want
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(format!(
                "storage class {want:?} has characters no provider uses"
            ));
        }
        let norm = want.to_ascii_uppercase().replace('-', "_");
        if self.storage_classes.is_empty() {
            return Ok(norm);
        }
        // Synonyms: the first name of each group the provider knows wins.
        const GROUPS: &[&[&str]] = &[
            &["STANDARD"],
            &["STANDARD_IA", "IA", "WARM", "INFREQUENT_ACCESS"],
            &["GLACIER", "ARCHIVE", "COLD"],
            &["DEEP_ARCHIVE", "COLDARCHIVE", "COLD_ARCHIVE"],
            &["DEEPCOLDARCHIVE", "DEEP_COLD_ARCHIVE"],
        ];
        let squash = |s: &str| s.to_ascii_uppercase().replace(['_', '-'], "");
        if let Some(exact) = self
            .storage_classes
            .iter()
            .find(|c| squash(c) == squash(want))
        {
            return Ok((*exact).to_owned());
        }
        if let Some(group) = GROUPS.iter().find(|g| g.contains(&norm.as_str())) {
            for alias in group.iter() {
                if let Some(c) = self
                    .storage_classes
                    .iter()
                    .find(|c| squash(c) == squash(alias))
                {
                    return Ok((*c).to_owned());
                }
            }
        }
        Err(format!(
            "storage class {want} is not one {} knows; use one of {}",
            self.name,
            self.storage_classes.join(", ")
        ))
    }

    /// Whether two ETags (quoted or not) name the same content, by this provider's rules.
    pub fn etags_equal(&self, a: &str, b: &str) -> bool {
        let strip = |s: &str| {
            let t = s.trim();
            let t = t.strip_prefix("W/").unwrap_or(t);
            t.trim_matches('"').to_owned()
        };
        let (a, b) = (strip(a), strip(b));
        match self.etag_style {
            EtagStyle::Md5 => a == b,
            EtagStyle::Md5UpperOpaqueMultipart => a.eq_ignore_ascii_case(&b),
        }
    }

    /// Whether `etag` of a single-part upload can be checked against the body's MD5
    /// (`md5_hex`, lower case): not for multipart ETags (`-N`) nor for SSE-KMS/SSE-C objects,
    /// whose ETags are not MD5s. `None`: cannot be told.
    pub fn etag_matches_md5(
        &self,
        etag: &str,
        md5_hex: &str,
        encrypted_kms_or_c: bool,
    ) -> Option<bool> {
        let e = etag.trim().trim_matches('"');
        if encrypted_kms_or_c || e.contains('-') || e.len() != 32 {
            return None;
        }
        Some(self.etags_equal(e, md5_hex))
    }
}

impl Provider {
    /// Every provider, in table order.
    pub const ALL: [Provider; 7] = [
        Provider::Aws,
        Provider::Obs,
        Provider::Oss,
        Provider::Gdc,
        Provider::Minio,
        Provider::Ceph,
        Provider::Other,
    ];

    /// Parses a provider name (case-insensitive; a few aliases accepted).
    pub fn from_name(name: &str) -> Option<Provider> {
        match name.trim().to_ascii_lowercase().as_str() {
            "aws" | "amazon" | "s3" => Some(Provider::Aws),
            "obs" | "huawei" | "huaweicloud" => Some(Provider::Obs),
            "oss" | "alibaba" | "aliyun" => Some(Provider::Oss),
            "gdc" | "google-distributed-cloud" => Some(Provider::Gdc),
            "minio" => Some(Provider::Minio),
            "ceph" | "rgw" | "radosgw" => Some(Provider::Ceph),
            "other" | "generic" => Some(Provider::Other),
            _ => None,
        }
    }

    /// Guesses the provider from an endpoint host name (or a whole endpoint URL).
    pub fn infer_from_host(host: &str) -> Provider {
        let mut h = host.trim();
        if let Some((_, rest)) = h.split_once("://") {
            h = rest;
        }
        let h = h.split(['/', '?']).next().unwrap_or(h);
        // Strip a port (but not from a bare IPv6 address).
        let h = match h.rsplit_once(':') {
            Some((name, port))
                if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) =>
            {
                name
            }
            _ => h,
        };
        let h = h.trim_end_matches('.').to_ascii_lowercase();
        let ends = |suffix: &str| h == suffix || h.ends_with(&format!(".{suffix}"));
        if ends("amazonaws.com") || ends("amazonaws.com.cn") {
            Provider::Aws
        } else if ends("myhuaweicloud.com") {
            Provider::Obs
        } else if ends("aliyuncs.com") {
            Provider::Oss
        } else {
            Provider::Other
        }
    }

    /// This provider's profile.
    pub fn profile(self) -> &'static Profile {
        profile(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_matches_enum() {
        for p in Provider::ALL {
            assert_eq!(profile(p).provider, p);
            assert_eq!(Provider::from_name(profile(p).name), Some(p));
        }
    }

    #[test]
    fn infer() {
        assert_eq!(
            Provider::infer_from_host("s3.eu-west-1.amazonaws.com"),
            Provider::Aws
        );
        assert_eq!(
            Provider::infer_from_host("https://bucket.s3.amazonaws.com:443/x"),
            Provider::Aws
        );
        assert_eq!(
            Provider::infer_from_host("s3.cn-north-1.amazonaws.com.cn"),
            Provider::Aws
        );
        assert_eq!(
            Provider::infer_from_host("obs.cn-north-4.myhuaweicloud.com"),
            Provider::Obs
        );
        assert_eq!(
            Provider::infer_from_host("oss-cn-hangzhou.aliyuncs.com"),
            Provider::Oss
        );
        assert_eq!(
            Provider::infer_from_host("OSS-CN-HANGZHOU.ALIYUNCS.COM."),
            Provider::Oss
        );
        assert_eq!(Provider::infer_from_host("127.0.0.1:9000"), Provider::Other);
        assert_eq!(Provider::infer_from_host("[::1]:9000"), Provider::Other);
        assert_eq!(
            Provider::infer_from_host("notamazonaws.com"),
            Provider::Other
        );
        assert_eq!(
            Provider::infer_from_host("amazonaws.com.evil.example"),
            Provider::Other
        );
    }

    #[test]
    fn facts() {
        let aws = profile(Provider::Aws);
        assert_eq!(aws.min_part_size, 5 * MIB);
        assert_eq!(aws.max_part_size, 5 * GIB);
        assert_eq!(aws.max_parts, 10_000);
        assert_eq!(aws.max_copy_object_size, 5 * GIB);
        assert!(!aws.default_path_style);
        let oss = profile(Provider::Oss);
        assert_eq!(oss.max_copy_object_size, GIB);
        assert_eq!(oss.storage_class_header, "x-oss-storage-class");
        assert!(!profile(Provider::Obs).send_x_id_query);
        assert!(profile(Provider::Gdc).default_path_style);
        assert_eq!(profile(Provider::Gdc).caps.upload_part_copy, Holds::No);
        assert!(profile(Provider::Other).probe && !profile(Provider::Ceph).probe);
        assert!(profile(Provider::Ceph).caps.if_match_bare);
        assert_eq!(Provider::from_name("rgw"), Some(Provider::Ceph));
        assert!(profile(Provider::Minio).default_path_style);
        assert!(profile(Provider::Other).default_path_style);
        assert_eq!(Provider::from_name(" MinIO "), Some(Provider::Minio));
        assert_eq!(Provider::from_name("nope"), None);
    }

    #[test]
    fn capabilities_round_trip_as_text() {
        let ceph = profile(Provider::Ceph).caps;
        assert_eq!(Capabilities::from_text(&ceph.to_text()), Some(ceph));
        assert_eq!(Capabilities::from_text("conditional_create yes\n"), None);
        assert!(Capabilities::AWS.weaker_guarantees().is_empty());
        assert_eq!(ceph.weaker_guarantees().len(), 2);
        assert_eq!(profile(Provider::Obs).caps.weaker_guarantees().len(), 3);
    }

    #[test]
    fn etags_and_storage_classes() {
        let aws = profile(Provider::Aws);
        let oss = profile(Provider::Oss);
        assert!(aws.etags_equal("\"abc\"", "abc"));
        assert!(!aws.etags_equal("ABC", "abc"));
        assert!(oss.etags_equal("\"ABC-2\"", "abc-2"));
        let md5 = "5d41402abc4b2a76b9719d911017c592";
        assert_eq!(aws.etag_matches_md5(md5, md5, false), Some(true));
        assert_eq!(
            oss.etag_matches_md5(&md5.to_ascii_uppercase(), md5, false),
            Some(true)
        );
        assert_eq!(aws.etag_matches_md5("abc-3", md5, false), None);
        assert_eq!(aws.etag_matches_md5(md5, md5, true), None);
        assert_eq!(oss.storage_class_name("ia").unwrap(), "IA");
        assert_eq!(
            oss.storage_class_name("Cold_Archive").unwrap(),
            "ColdArchive"
        );
        assert_eq!(
            profile(Provider::Obs).storage_class_name("cold").unwrap(),
            "GLACIER"
        );
        assert_eq!(aws.storage_class_name("glacier_ir").unwrap(), "GLACIER_IR");
        assert!(aws.storage_class_name("NOPE").is_err());
        assert!(profile(Provider::Other).storage_class_name("a b").is_err());
        assert_eq!(profile(Provider::Gdc).sse_kms_value, "SSE-KMS");
    }
}

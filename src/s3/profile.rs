//! What differs between S3 providers, as one table (AWS, Huawei OBS, Alibaba OSS, GDC, MinIO, other).

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
    /// Anything else that speaks S3 (Ceph RGW, SeaweedFS, s3s, moto, …).
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
    /// Largest object a single CopyObject can copy; larger ones need UploadPartCopy.
    pub max_copy_object_size: u64,
    /// UploadPartCopy works (server-side copy of a range into a part).
    pub supports_upload_part_copy: bool,
    /// ListObjectsV2 accepts `encoding-type=url` (and then URL-encodes keys).
    pub list_encoding_url: bool,
    /// Header that sets the storage class of a new object.
    pub storage_class_header: &'static str,
    /// `Content-Encoding: aws-chunked` streaming uploads are accepted.
    pub supports_aws_chunked: bool,
    /// Region to sign with when none is given.
    pub default_region: &'static str,
    /// Conditional writes (`If-None-Match: *`, `If-Match` on PUT) are known to be honoured.
    /// False means "not known", not "known broken": callers should not rely on them.
    pub supports_conditional_put: bool,
    /// Value of `x-amz-server-side-encryption` for SSE-KMS (`aws:kms`; GDC says `SSE-KMS`).
    pub sse_kms_value: &'static str,
    /// Storage classes this provider names, in the spelling its header wants. Empty: any
    /// class is passed through as given (upper-cased).
    pub storage_classes: &'static [&'static str],
    /// How this provider's ETags relate to the content.
    pub etag_style: EtagStyle,
    /// The WORM headers `x-amz-object-lock-mode` / `-retain-until-date` are accepted on new objects.
    pub supports_object_lock_headers: bool,
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
        max_copy_object_size: 5 * GIB,
        supports_upload_part_copy: true,
        list_encoding_url: true,
        storage_class_header: "x-amz-storage-class",
        supports_aws_chunked: true,
        default_region: "us-east-1",
        supports_conditional_put: true,
        sse_kms_value: "aws:kms",
        storage_classes: &[],
        etag_style: EtagStyle::Md5,
        supports_object_lock_headers: true,
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
const OSS_CLASSES: &[&str] = &[
    "Standard",
    "IA",
    "Archive",
    "ColdArchive",
    "DeepColdArchive",
];

/// The table. Order matches [`Provider`]; [`profile`] relies on it.
static PROFILES: [Profile; 6] = [
    Profile {
        send_x_id_query: true,
        storage_classes: AWS_CLASSES,
        ..aws_like(Provider::Aws, "aws")
    },
    Profile {
        // OBS rejects the `x-id` query parameter.
        send_x_id_query: false,
        supports_conditional_put: false,
        storage_classes: OBS_CLASSES,
        ..aws_like(Provider::Obs, "obs")
    },
    Profile {
        max_copy_object_size: GIB,
        storage_class_header: "x-oss-storage-class",
        supports_aws_chunked: false,
        supports_conditional_put: false,
        storage_classes: OSS_CLASSES,
        etag_style: EtagStyle::Md5UpperOpaqueMultipart,
        supports_object_lock_headers: false,
        ..aws_like(Provider::Oss, "oss")
    },
    Profile {
        default_path_style: true,
        // EV2 buckets refuse UploadPartCopy; large copies fall back to download+upload.
        supports_upload_part_copy: false,
        supports_conditional_put: false,
        sse_kms_value: "SSE-KMS",
        ..aws_like(Provider::Gdc, "gdc")
    },
    Profile {
        default_path_style: true,
        ..aws_like(Provider::Minio, "minio")
    },
    Profile {
        default_path_style: true,
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
        Provider::Other => 5,
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
    pub const ALL: [Provider; 6] = [
        Provider::Aws,
        Provider::Obs,
        Provider::Oss,
        Provider::Gdc,
        Provider::Minio,
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
        assert!(!oss.supports_aws_chunked);
        assert!(!profile(Provider::Obs).send_x_id_query);
        assert!(profile(Provider::Gdc).default_path_style);
        assert!(!profile(Provider::Gdc).supports_upload_part_copy);
        assert!(profile(Provider::Minio).default_path_style);
        assert_eq!(profile(Provider::Minio).default_region, "us-east-1");
        assert!(profile(Provider::Other).default_path_style);
        assert_eq!(Provider::from_name(" MinIO "), Some(Provider::Minio));
        assert_eq!(Provider::from_name("nope"), None);
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

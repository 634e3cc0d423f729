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
    }
}

/// The table. Order matches [`Provider`]; [`profile`] relies on it.
static PROFILES: [Profile; 6] = [
    Profile {
        send_x_id_query: true,
        ..aws_like(Provider::Aws, "aws")
    },
    Profile {
        // OBS rejects the `x-id` query parameter.
        send_x_id_query: false,
        supports_conditional_put: false,
        ..aws_like(Provider::Obs, "obs")
    },
    Profile {
        max_copy_object_size: GIB,
        storage_class_header: "x-oss-storage-class",
        supports_aws_chunked: false,
        supports_conditional_put: false,
        ..aws_like(Provider::Oss, "oss")
    },
    Profile {
        default_path_style: true,
        // EV2 buckets refuse UploadPartCopy; large copies fall back to download+upload.
        supports_upload_part_copy: false,
        supports_conditional_put: false,
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
}

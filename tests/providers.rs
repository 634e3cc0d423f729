//! Provider dialects against the SigV4-checking test server: for each profile, the exact shape
//! of every request (host, path, query, headers sent and not sent; a 2xx answer means the
//! signature verified), SSE-C on every data request, `encoding-type=url` round trips, the
//! GET + UploadPart fallback where UploadPartCopy is refused, and keys that expire or rotate.
//!
//! Copy limits are 1–5 GiB in real profiles; the tests use copies of those profiles with the
//! limits scaled down (and the server's minimum part size lowered to match), so that "over the
//! copy limit" takes a few hundred KiB.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bucketfs::config::credentials::{load_shared_with, CredentialRequest};
use bucketfs::s3::profile::profile;
use bucketfs::s3::{
    Credentials, ListRequest, ObjectLock, Profile, Provider, PutOptions, RetainUntil, S3Client,
    S3Config, ServerSideEncryption, SharedCredentials, SseCustomerKey, StaticCredentials,
};
use bucketfs_test_server::{Fault, FaultKind, RequestRecord, TestServer};

const PART: u64 = 16 * 1024;
const COPY_LIMIT: u64 = 64 * 1024;

/// The provider's profile with small part and copy limits.
fn small_profile(p: Provider) -> &'static Profile {
    Box::leak(Box::new(Profile {
        min_part_size: PART,
        max_copy_object_size: COPY_LIMIT,
        ..profile(p).clone()
    }))
}

fn static_creds(srv: &TestServer) -> SharedCredentials {
    Arc::new(StaticCredentials {
        credentials: Credentials {
            access_key_id: srv.access_key(),
            secret_access_key: srv.secret_key(),
            session_token: None,
        },
        origin: "test".into(),
    })
}

fn config(srv: &TestServer, p: Provider) -> S3Config {
    let mut cfg = S3Config::new(srv.endpoint(), "us-east-1", srv.bucket(), static_creds(srv));
    cfg.profile = small_profile(p);
    cfg.path_style = true;
    cfg.retry_timeout = Duration::from_secs(5);
    cfg.max_attempts = 3;
    cfg
}

async fn server() -> TestServer {
    let srv = TestServer::start().await;
    srv.set_min_part_size(PART);
    srv
}

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn ok(r: &RequestRecord) -> bool {
    matches!(r.status, Some(200..=299))
}

/// Every request went to the server's host, path style, with a signature it accepted, and
/// carries `x-id` exactly when the profile says so (object operations only).
fn check_common(srv: &TestServer, p: &Profile) {
    let host = srv.addr().to_string();
    let bucket_path = format!("/{}", srv.bucket());
    for r in srv.request_log() {
        assert!(ok(&r), "{} {} {}: {:?}", r.op, r.path, r.query, r.status);
        assert_eq!(r.header("host"), Some(host.as_str()), "{}", r.op);
        assert!(
            r.path == bucket_path || r.path.starts_with(&format!("{bucket_path}/")),
            "{}: path {}",
            r.op,
            r.path
        );
        assert!(r.header("x-amz-date").is_some() && r.header("x-amz-content-sha256").is_some());
        let bucket_level = r.op.starts_with("List") || r.op == "HeadBucket";
        let has_x_id = r.query_param("x-id").is_some();
        if p.send_x_id_query && !bucket_level && r.op != "HeadObject" {
            assert_eq!(
                r.query_param("x-id").as_deref(),
                Some(r.op.as_str()),
                "{}",
                r.op
            );
        } else {
            assert!(!has_x_id, "{} sent x-id for {}", p.name, r.op);
        }
        assert_eq!(r.header("content-encoding"), None, "never aws-chunked");
    }
}

/// list, head, get, put, multipart, copy under and over the copy limit, for one provider.
async fn request_shapes(p: Provider) {
    let srv = server().await;
    let mut cfg = config(&srv, p);
    cfg.storage_class = Some("STANDARD_IA".into());
    cfg.sse = Some(ServerSideEncryption::S3);
    cfg.acl = Some("bucket-owner-full-control".into());
    let prof = cfg.profile;
    let client = S3Client::new(cfg).expect("client");
    let class_header = prof.storage_class_header;
    let class_value = match p {
        Provider::Oss => "IA",
        _ => "STANDARD_IA",
    };
    let other_class_header = if class_header == "x-amz-storage-class" {
        "x-oss-storage-class"
    } else {
        "x-amz-storage-class"
    };
    let new_object = |r: &RequestRecord| {
        assert_eq!(r.header(class_header), Some(class_value), "{}", r.op);
        assert_eq!(r.header(other_class_header), None, "{}", r.op);
        assert_eq!(r.header("x-amz-server-side-encryption"), Some("AES256"));
        assert_eq!(r.header("x-amz-acl"), Some("bucket-owner-full-control"));
    };
    let data_only = |r: &RequestRecord| {
        for h in [
            class_header,
            "x-amz-server-side-encryption",
            "x-amz-acl",
            "x-amz-server-side-encryption-customer-key",
        ] {
            assert_eq!(r.header(h), None, "{} must not send {h}", r.op);
        }
    };

    // put
    let small = data(1000, 1);
    client
        .put_object("dir/small", small.clone(), &PutOptions::default())
        .await
        .expect("put");
    let put = &srv.requests_for("PutObject")[0];
    assert_eq!(put.path, format!("/{}/dir/small", srv.bucket()));
    new_object(put);

    // head, get
    let meta = client.head_object("dir/small").await.expect("head");
    assert_eq!(meta.size, 1000);
    data_only(&srv.requests_for("HeadObject")[0]);
    let got = client
        .get_object("dir/small", Some(10..20), None)
        .await
        .expect("get");
    assert_eq!(&got.body[..], &small[10..20]);
    let get = &srv.requests_for("GetObject")[0];
    assert_eq!(get.header("range"), Some("bytes=10-19"));
    data_only(get);

    // list
    let page = client
        .list_objects_v2(&ListRequest {
            prefix: "dir/".into(),
            delimiter: Some("/".into()),
            ..ListRequest::default()
        })
        .await
        .expect("list");
    assert_eq!(page.objects.len(), 1);
    let list = &srv.requests_for("ListObjectsV2")[0];
    assert_eq!(list.path, format!("/{}", srv.bucket()));
    assert_eq!(list.query_param("list-type").as_deref(), Some("2"));
    assert_eq!(list.query_param("prefix").as_deref(), Some("dir/"));
    assert_eq!(list.query_param("delimiter").as_deref(), Some("/"));
    assert_eq!(
        list.query_param("encoding-type").as_deref(),
        prof.list_encoding_url.then_some("url")
    );

    // multipart
    let big = data((2 * PART + 100) as usize, 2);
    let id = client
        .create_multipart_upload("dir/mp", &PutOptions::default())
        .await
        .expect("create");
    let mut parts = Vec::new();
    for (i, chunk) in big.chunks(PART as usize).enumerate() {
        let n = i as u32 + 1;
        let etag = client
            .upload_part("dir/mp", &id, n, chunk.to_vec())
            .await
            .expect("part");
        parts.push(etag);
    }
    client
        .complete_multipart_upload("dir/mp", &id, &parts, &PutOptions::default())
        .await
        .expect("complete");
    assert_eq!(srv.get_object("dir/mp").as_deref(), Some(&big[..]));
    let create = &srv.requests_for("CreateMultipartUpload")[0];
    assert_eq!(create.query_param("uploads").as_deref(), Some(""));
    new_object(create);
    for r in srv.requests_for("UploadPart") {
        assert_eq!(r.query_param("uploadId").as_deref(), Some(id.as_str()));
        assert!(r.query_param("partNumber").is_some());
        data_only(&r);
    }
    data_only(&srv.requests_for("CompleteMultipartUpload")[0]);

    // copy under the limit: one CopyObject
    srv.clear_request_log();
    srv.reset_counts();
    client
        .copy_object_sized("dir/small", "dir/copy", 1000, PART, None, None)
        .await
        .expect("copy");
    assert_eq!(srv.count("CopyObject"), 1);
    assert_eq!(srv.count("CreateMultipartUpload"), 0);
    let copy = &srv.requests_for("CopyObject")[0];
    assert_eq!(
        copy.header("x-amz-copy-source"),
        Some(format!("/{}/dir/small", srv.bucket()).as_str())
    );
    new_object(copy);
    assert_eq!(srv.get_object("dir/copy").as_deref(), Some(&small[..]));

    // copy over the limit: multipart, UploadPartCopy unless the profile knows it is refused
    let large = data((COPY_LIMIT * 2 + 123) as usize, 3);
    srv.put_object("dir/large", large.clone());
    srv.clear_request_log();
    srv.reset_counts();
    client
        .copy_object_sized(
            "dir/large",
            "dir/large-copy",
            large.len() as u64,
            PART,
            None,
            None,
        )
        .await
        .expect("large copy");
    assert_eq!(
        srv.get_object("dir/large-copy").as_deref(),
        Some(&large[..])
    );
    assert_eq!(srv.count("CopyObject"), 0);
    assert_eq!(srv.count("CreateMultipartUpload"), 1);
    assert_eq!(srv.count("CompleteMultipartUpload"), 1);
    let n_parts = (large.len() as u64).div_ceil(PART);
    if prof.caps.upload_part_copy.yes() {
        assert_eq!(srv.count("UploadPartCopy"), n_parts);
        assert_eq!(srv.count("UploadPart"), 0);
        for r in srv.requests_for("UploadPartCopy") {
            assert!(r
                .header("x-amz-copy-source-range")
                .is_some_and(|v| v.starts_with("bytes=")));
            data_only(&r);
        }
    } else {
        assert_eq!(
            srv.count("UploadPartCopy"),
            0,
            "{} never tries it",
            prof.name
        );
        assert_eq!(srv.count("UploadPart"), n_parts);
        assert_eq!(srv.count("GetObject"), n_parts);
    }
    new_object(&srv.requests_for("CreateMultipartUpload")[0]);
    check_common(&srv, prof);
}

#[tokio::test]
async fn aws_request_shapes() {
    request_shapes(Provider::Aws).await;
}

#[tokio::test]
async fn obs_request_shapes() {
    request_shapes(Provider::Obs).await;
}

#[tokio::test]
async fn oss_request_shapes() {
    request_shapes(Provider::Oss).await;
}

#[tokio::test]
async fn gdc_request_shapes() {
    request_shapes(Provider::Gdc).await;
}

#[tokio::test]
async fn minio_request_shapes() {
    request_shapes(Provider::Minio).await;
}

#[tokio::test]
async fn other_request_shapes() {
    request_shapes(Provider::Other).await;
}

const SSE_C_HEADERS: [&str; 3] = [
    "x-amz-server-side-encryption-customer-algorithm",
    "x-amz-server-side-encryption-customer-key",
    "x-amz-server-side-encryption-customer-key-md5",
];

#[tokio::test]
async fn sse_c_key_on_every_part_head_get_and_copy() {
    for p in [Provider::Aws, Provider::Obs, Provider::Gdc] {
        let srv = server().await;
        let key = SseCustomerKey::from_bytes(&[9u8; 32]).unwrap();
        let mut cfg = config(&srv, p);
        cfg.sse = Some(ServerSideEncryption::Customer(key.clone()));
        let client = S3Client::new(cfg).expect("client");
        let body = data((3 * PART) as usize, 5);
        client
            .put_object("one", data(10, 1), &PutOptions::default())
            .await
            .unwrap();
        let id = client
            .create_multipart_upload("mp", &PutOptions::default())
            .await
            .unwrap();
        let mut parts = Vec::new();
        for (i, c) in body.chunks(PART as usize).enumerate() {
            let n = i as u32 + 1;
            let etag = client.upload_part("mp", &id, n, c.to_vec()).await.unwrap();
            parts.push(etag);
        }
        client
            .complete_multipart_upload("mp", &id, &parts, &PutOptions::default())
            .await
            .unwrap();
        client.head_object("mp").await.unwrap();
        client.get_object("mp", Some(0..100), None).await.unwrap();
        client
            .copy_object("one", "one-copy", None, None)
            .await
            .unwrap();
        client
            .copy_object_multipart("mp", "mp-copy", body.len() as u64, PART, None, None)
            .await
            .unwrap();
        assert_eq!(srv.get_object("mp-copy").as_deref(), Some(&body[..]));

        let mut seen = std::collections::BTreeSet::new();
        for r in srv.request_log() {
            seen.insert(r.op.clone());
            let data_op = matches!(
                r.op.as_str(),
                "PutObject"
                    | "CreateMultipartUpload"
                    | "UploadPart"
                    | "UploadPartCopy"
                    | "HeadObject"
                    | "GetObject"
                    | "CopyObject"
            );
            if data_op {
                assert_eq!(r.header(SSE_C_HEADERS[0]), Some("AES256"), "{}", r.op);
                assert_eq!(r.header(SSE_C_HEADERS[1]), Some(key.key_b64()), "{}", r.op);
                assert_eq!(
                    r.header(SSE_C_HEADERS[2]),
                    Some(key.key_md5_b64()),
                    "{}",
                    r.op
                );
                assert_eq!(r.header("x-amz-server-side-encryption"), None);
            }
            if matches!(r.op.as_str(), "CopyObject" | "UploadPartCopy") {
                for h in SSE_C_HEADERS {
                    let src = h.replace("x-amz-", "x-amz-copy-source-");
                    assert!(r.header(&src).is_some(), "{} lacks {src}", r.op);
                }
            }
        }
        let want_ops = ["UploadPart", "HeadObject", "GetObject", "CopyObject"];
        for op in want_ops {
            assert!(seen.contains(op), "{op} not exercised");
        }
        // GDC refuses part copies: its multipart copy reads with GET, which carries the key too
        let copy_op = if p == Provider::Gdc {
            "GetObject"
        } else {
            "UploadPartCopy"
        };
        assert!(seen.contains(copy_op));
        check_common(&srv, client.profile());
    }
}

#[tokio::test]
async fn kms_and_object_lock_headers() {
    let srv = server().await;
    let mut cfg = config(&srv, Provider::Aws);
    cfg.sse = Some(ServerSideEncryption::Kms {
        key_id: Some("arn:aws:kms:r:1:key/k".into()),
    });
    cfg.requester_pays = true;
    let client = S3Client::new(cfg).unwrap();
    client
        .put_object("k", data(10, 0), &PutOptions::default())
        .await
        .unwrap();
    client.head_object("k").await.unwrap();
    let put = &srv.requests_for("PutObject")[0];
    assert_eq!(put.header("x-amz-server-side-encryption"), Some("aws:kms"));
    assert_eq!(
        put.header("x-amz-server-side-encryption-aws-kms-key-id"),
        Some("arn:aws:kms:r:1:key/k")
    );
    for r in srv.request_log() {
        assert_eq!(
            r.header("x-amz-request-payer"),
            Some("requester"),
            "{}",
            r.op
        );
    }

    // GDC spells SSE-KMS differently
    let srv = server().await;
    let mut cfg = config(&srv, Provider::Gdc);
    cfg.sse = Some(ServerSideEncryption::Kms { key_id: None });
    let client = S3Client::new(cfg).unwrap();
    client
        .put_object("k", data(10, 0), &PutOptions::default())
        .await
        .unwrap();
    let put = &srv.requests_for("PutObject")[0];
    assert_eq!(put.header("x-amz-server-side-encryption"), Some("SSE-KMS"));
    assert_eq!(put.header("x-amz-request-payer"), None);

    // OBS WORM: lock headers and Content-MD5 on new objects
    let srv = server().await;
    let mut cfg = config(&srv, Provider::Obs);
    cfg.object_lock = Some(ObjectLock {
        mode: "compliance".into(),
        retain: RetainUntil::Date("2030-07-01T04:11:15Z".into()),
    });
    let client = S3Client::new(cfg).unwrap();
    client
        .put_object("w", b"hello".to_vec(), &PutOptions::default())
        .await
        .unwrap();
    let put = &srv.requests_for("PutObject")[0];
    assert_eq!(put.header("x-amz-object-lock-mode"), Some("COMPLIANCE"));
    assert_eq!(
        put.header("x-amz-object-lock-retain-until-date"),
        Some("2030-07-01T04:11:15Z")
    );
    assert_eq!(put.header("content-md5"), Some("XUFAKrxLKna5cZ2REBfFkg=="));
    check_common(&srv, client.profile());
}

#[tokio::test]
async fn storage_class_names_are_translated_or_refused() {
    let srv = server().await;
    let class_of = |p: Provider, class: &str| {
        let mut cfg = config(&srv, p);
        cfg.storage_class = Some(class.into());
        S3Client::new(cfg).map(|_| ())
    };
    assert!(class_of(Provider::Obs, "DEEP_ARCHIVE").is_err());
    assert!(class_of(Provider::Oss, "REDUCED_REDUNDANCY").is_err());
    assert!(class_of(Provider::Aws, "GLACIER").is_ok());
    assert_eq!(
        profile(Provider::Oss)
            .storage_class_name("GLACIER")
            .unwrap(),
        "Archive"
    );
    assert_eq!(
        profile(Provider::Oss)
            .storage_class_name("standard")
            .unwrap(),
        "Standard"
    );
    assert_eq!(
        profile(Provider::Obs)
            .storage_class_name("archive")
            .unwrap(),
        "GLACIER"
    );
    assert_eq!(
        profile(Provider::Obs).storage_class_name("IA").unwrap(),
        "STANDARD_IA"
    );
    assert_eq!(
        profile(Provider::Minio)
            .storage_class_name("reduced_redundancy")
            .unwrap(),
        "REDUCED_REDUNDANCY"
    );

    let mut cfg = config(&srv, Provider::Oss);
    cfg.storage_class = Some("ARCHIVE".into());
    let client = S3Client::new(cfg).unwrap();
    client
        .put_object("a", data(3, 0), &PutOptions::default())
        .await
        .unwrap();
    let put = &srv.requests_for("PutObject")[0];
    assert_eq!(put.header("x-oss-storage-class"), Some("Archive"));
    assert_eq!(put.header("x-amz-storage-class"), None);
}

#[tokio::test]
async fn control_characters_round_trip_through_url_encoding() {
    for p in [Provider::Oss, Provider::Aws, Provider::Other] {
        let srv = server().await;
        let client = S3Client::new(config(&srv, p)).unwrap();
        let key = "ctl/a\u{1}b\u{7f}c d+e%f";
        client
            .put_object(key, b"x".to_vec(), &PutOptions::default())
            .await
            .unwrap();
        assert_eq!(srv.keys(), vec![key.to_string()]);
        let page = client
            .list_objects_v2(&ListRequest {
                prefix: "ctl/".into(),
                delimiter: Some("/".into()),
                ..ListRequest::default()
            })
            .await
            .unwrap();
        assert_eq!(page.objects.len(), 1);
        assert_eq!(page.objects[0].key, key);
        let list = &srv.requests_for("ListObjectsV2")[0];
        assert_eq!(list.query_param("encoding-type").as_deref(), Some("url"));
        let got = client.get_object(key, None, None).await.unwrap();
        assert_eq!(&got.body[..], b"x");
        check_common(&srv, client.profile());
    }
}

#[tokio::test]
async fn refused_upload_part_copy_falls_back_to_get_and_upload_part() {
    let srv = server().await;
    let body = data((5 * PART + 7) as usize, 9);
    srv.put_object("src", body.clone());
    srv.add_fault(Fault::new(FaultKind::not_implemented()).op("UploadPartCopy"));
    let client = S3Client::new(config(&srv, Provider::Other)).unwrap();
    let etag = client
        .copy_object_multipart("src", "dst", body.len() as u64, PART, None, None)
        .await
        .expect("copy with fallback");
    assert!(!etag.is_empty());
    assert_eq!(srv.get_object("dst").as_deref(), Some(&body[..]));
    let parts = (body.len() as u64).div_ceil(PART);
    // 501 is not retried; at most the parts already in flight were refused
    assert!(srv.count("UploadPartCopy") >= 1);
    assert!(srv.count("UploadPartCopy") <= parts, "{:?}", srv.counts());
    assert_eq!(srv.count("UploadPart"), parts);
    assert_eq!(srv.count("GetObject"), parts);
    assert_eq!(srv.multipart_uploads(), vec![]);

    // source changed under the copy: 412 from every read, the upload is aborted
    srv.clear_faults();
    let err = client
        .copy_object_multipart(
            "src",
            "dst2",
            body.len() as u64,
            PART,
            None,
            Some("0123456789abcdef0123456789abcdef"),
        )
        .await
        .expect_err("stale etag");
    assert!(err.is_precondition_failed(), "{err}");
    assert_eq!(srv.get_object("dst2"), None);
    assert_eq!(srv.multipart_uploads(), vec![]);
}

#[tokio::test]
async fn multipart_copy_respects_part_count_limit_and_metadata() {
    let srv = server().await;
    let body = data((4 * PART) as usize, 4);
    let mut meta = std::collections::BTreeMap::new();
    meta.insert("mode".to_string(), "0600".to_string());
    let client = S3Client::new(config(&srv, Provider::Aws)).unwrap();
    client
        .put_object(
            "m",
            body.clone(),
            &PutOptions {
                content_type: Some("text/x-test".into()),
                user_metadata: meta.clone(),
                ..PutOptions::default()
            },
        )
        .await
        .unwrap();
    client
        .copy_object_multipart("m", "m2", body.len() as u64, 1, None, None)
        .await
        .unwrap();
    let head = client.head_object("m2").await.unwrap();
    assert_eq!(head.content_type.as_deref(), Some("text/x-test"));
    assert_eq!(head.user_metadata, meta);
    // part size is raised to the profile's minimum
    assert_eq!(srv.count("UploadPartCopy"), 4);
    assert_eq!(client.copy_part_size(10 * PART, 1), PART);
    assert_eq!(client.copy_part_size(10 * PART, 3 * PART), 3 * PART);
    // large objects: parts grow so that 10,000 are enough
    assert_eq!(
        client.copy_part_size(100 << 30, 8 << 20),
        (100u64 << 30).div_ceil(10_000)
    );
    let aws = S3Client::new({
        let mut c = config(&srv, Provider::Aws);
        c.profile = profile(Provider::Aws);
        c
    })
    .unwrap();
    assert_eq!(
        aws.copy_part_size(1 << 30, 1 << 20),
        5 << 20,
        "AWS minimum 5 MiB"
    );
    assert_eq!(
        aws.copy_part_size(5u64 << 40, 8 << 20),
        (5u64 << 40).div_ceil(10_000)
    );
    assert!(
        aws.copy_part_size(u64::MAX / 2, 8 << 20) <= 5 << 30,
        "AWS maximum 5 GiB"
    );
}

/// Virtual-hosted style through the real client: the request is sent to the loopback server
/// (`connect_to`) with `Host: BUCKET.s3.example.test:PORT` and the key as the whole path. The
/// server only knows path style, so it reads the first path segment as a bucket and answers
/// 404 NoSuchBucket — after checking the signature, which covers the virtual host (a bad
/// signature would be 403).
#[tokio::test]
async fn virtual_hosted_request_shape() {
    let srv = server().await;
    let endpoint = format!("http://s3.example.test:{}", srv.port());
    let mut cfg = S3Config::new(&endpoint, "us-east-1", srv.bucket(), static_creds(&srv));
    cfg.profile = profile(Provider::Aws);
    cfg.path_style = false;
    cfg.connect_to = Some(srv.addr());
    cfg.max_attempts = 1;
    let client = S3Client::new(cfg).unwrap();
    assert_eq!(
        client.object_url("dir/a b").unwrap(),
        format!(
            "http://{}.s3.example.test:{}/dir/a%20b",
            srv.bucket(),
            srv.port()
        )
    );
    let err = client
        .head_object("dir/a b")
        .await
        .expect_err("not path style");
    assert_eq!(err.status(), Some(404), "{err}");
    let r = srv.request_log().pop().unwrap();
    assert_eq!(
        r.header("host"),
        Some(format!("{}.s3.example.test:{}", srv.bucket(), srv.port()).as_str())
    );
    assert_eq!(r.path, "/dir/a%20b");
    assert_eq!(r.status, Some(404));

    // and the same with the wrong secret is refused: the 404 above was a checked signature
    let mut cfg = S3Config::new(&endpoint, "us-east-1", srv.bucket(), {
        let c: SharedCredentials = Arc::new(StaticCredentials {
            credentials: Credentials {
                access_key_id: srv.access_key(),
                secret_access_key: "wrong".into(),
                session_token: None,
            },
            origin: "test".into(),
        });
        c
    });
    cfg.path_style = false;
    cfg.connect_to = Some(srv.addr());
    cfg.max_attempts = 1;
    let bad = S3Client::new(cfg).unwrap();
    let err = bad.head_object("dir/a b").await.expect_err("bad signature");
    assert_eq!(err.status(), Some(403), "{err}");

    // virtual-hosted needs a DNS name
    let mut cfg = config(&srv, Provider::Aws);
    cfg.path_style = false;
    assert!(S3Client::new(cfg).is_err());
}

fn env_with(pairs: &[(&str, &str)]) -> Arc<HashMap<String, String>> {
    let mut e: HashMap<String, String> = HashMap::new();
    e.insert("AWS_EC2_METADATA_DISABLED".into(), "true".into());
    for (k, v) in pairs {
        e.insert(k.to_string(), v.to_string());
    }
    Arc::new(e)
}

fn write_private(path: &std::path::Path, text: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_credentials_file_is_reloaded_after_a_403() {
    let srv = server().await;
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join("credentials");
    let write_keys = |k: &str, s: &str| {
        write_private(
            &file,
            &format!("[default]\naws_access_key_id = {k}\naws_secret_access_key = {s}\n"),
            0o600,
        )
    };
    write_keys(&srv.access_key(), &srv.secret_key());
    let env = env_with(&[
        ("HOME", home.path().to_str().unwrap()),
        ("AWS_SHARED_CREDENTIALS_FILE", file.to_str().unwrap()),
    ]);
    let creds = load_shared_with(
        &CredentialRequest {
            bucket: srv.bucket().into(),
            ..CredentialRequest::default()
        },
        env,
    )
    .unwrap();
    let mut cfg = S3Config::new(srv.endpoint(), "us-east-1", srv.bucket(), creds);
    cfg.profile = small_profile(Provider::Gdc);
    cfg.max_attempts = 2;
    let client = S3Client::new(cfg).unwrap();
    client.head_bucket().await.expect("first keys");

    // the keys rotate: the server only knows the new ones, the file is rewritten
    srv.set_credentials("ROTATED2", "rotated-secret-2");
    write_keys("ROTATED2", "rotated-secret-2");
    srv.clear_request_log();
    client.head_bucket().await.expect("reloaded after 403");
    let statuses: Vec<_> = srv.request_log().iter().map(|r| r.status).collect();
    // either the file change was noticed first (one 200), or a 403 made it reread (403, 200)
    assert!(
        statuses == vec![Some(200)] || statuses == vec![Some(403), Some(200)],
        "{statuses:?}"
    );
    assert!(client.describe_credentials().contains("ROTATED2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_credential_process_keys_are_refreshed() {
    let srv = server().await;
    let home = tempfile::tempdir().unwrap();
    let counter = home.path().join("runs");
    let script = home.path().join("creds.sh");
    // every run hands out keys that expired an hour ago (a clock-skewed or lazy helper)
    write_private(
        &script,
        &format!(
            "#!/bin/sh\nn=$(cat {c} 2>/dev/null || echo 0); echo $((n+1)) > {c}\n\
             printf '{{\"Version\":1,\"AccessKeyId\":\"{k}\",\"SecretAccessKey\":\"{s}\",\"Expiration\":\"2001-01-01T00:00:00Z\"}}'\n",
            c = counter.display(),
            k = srv.access_key(),
            s = srv.secret_key()
        ),
        0o700,
    );
    let config_file = home.path().join("config");
    write_private(
        &config_file,
        &format!("[default]\ncredential_process = {}\n", script.display()),
        0o600,
    );
    let env = env_with(&[
        ("HOME", home.path().to_str().unwrap()),
        ("AWS_CONFIG_FILE", config_file.to_str().unwrap()),
    ]);
    let creds = load_shared_with(&CredentialRequest::default(), env).unwrap();
    let client = S3Client::new(S3Config::new(
        srv.endpoint(),
        "us-east-1",
        srv.bucket(),
        creds,
    ))
    .unwrap();
    let runs = || {
        std::fs::read_to_string(&counter)
            .unwrap_or_default()
            .trim()
            .parse::<u32>()
            .unwrap_or(0)
    };
    client.head_bucket().await.unwrap();
    assert_eq!(
        runs(),
        1,
        "fetched once at start, not again within a second"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    client.head_bucket().await.unwrap();
    assert_eq!(runs(), 2, "expired keys are fetched again before use");
    assert!(client
        .describe_credentials()
        .contains("credential_process of profile default"));
}

//! End-to-end integrity against the in-process server: a body damaged on the way to the server
//! is refused through its checksum and sent again; a GET body damaged on the way back is
//! fetched again, never handed out; the probe finds whether a server verifies CRC32C.

use bucketfs::s3::profile::Holds;
use bucketfs::s3::{PutOptions, S3Error, UploadChecksums};
use bucketfs_test_server::{Dialect, Fault, FaultKind, TestServer};

#[path = "common/core.rs"]
mod core_fs;
use core_fs::{client, client_with};

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i % 253) as u8 ^ seed).collect()
}

#[tokio::test]
async fn a_put_damaged_on_the_way_is_refused_and_sent_again() {
    for (mode, header) in [
        (UploadChecksums::Auto, "content-md5"),
        (UploadChecksums::Md5, "content-md5"),
        (UploadChecksums::Crc32c, "x-amz-checksum-crc32c"),
        (UploadChecksums::Sha256, "x-amz-content-sha256"),
    ] {
        let srv = TestServer::start().await;
        let c = client_with(&srv, |cfg| cfg.upload_checksums = mode);
        srv.add_fault(
            Fault::new(FaultKind::CorruptRequest)
                .op("PutObject")
                .times(1),
        );
        let body = data(300_000, 1);
        c.put_object("k", body.clone(), &PutOptions::default())
            .await
            .expect("put");
        assert_eq!(srv.get_object("k").as_deref(), Some(&body[..]), "{mode:?}");
        assert_eq!(c.stats().checksum_failures, 1, "{mode:?}");
        let puts = srv.requests_for("PutObject");
        assert_eq!(puts.len(), 2, "{mode:?}");
        assert!(
            puts[0]
                .headers
                .iter()
                .any(|(n, v)| n == header && v != "UNSIGNED-PAYLOAD"),
            "{mode:?}"
        );
        assert_eq!(puts[0].status, Some(400), "{mode:?}: refused as BadDigest");
    }
}

#[tokio::test]
async fn without_checksums_a_damaged_put_is_stored_damaged() {
    // what the checksums prevent: the server cannot tell
    let srv = TestServer::start().await;
    let c = client_with(&srv, |cfg| cfg.upload_checksums = UploadChecksums::Off);
    srv.add_fault(
        Fault::new(FaultKind::CorruptRequest)
            .op("PutObject")
            .times(1),
    );
    let body = data(1000, 2);
    c.put_object("k", body.clone(), &PutOptions::default())
        .await
        .expect("put");
    let stored = srv.get_object("k").expect("stored");
    assert_ne!(&stored[..], &body[..]);
    assert_eq!(c.stats().checksum_failures, 0);
}

#[tokio::test]
async fn a_part_damaged_on_the_way_is_sent_again() {
    let srv = TestServer::start().await;
    let c = client(&srv);
    srv.add_fault(
        Fault::new(FaultKind::CorruptRequest)
            .op("UploadPart")
            .skip(1)
            .times(1),
    );
    let (a, b) = (data(5 * 1024 * 1024, 3), data(1234, 4));
    let id = c
        .create_multipart_upload("mp", &PutOptions::default())
        .await
        .expect("create");
    let mut parts = Vec::new();
    for (n, body) in [(1u32, &a), (2, &b)] {
        let part = c
            .upload_part("mp", &id, n, body.clone())
            .await
            .expect("part");
        parts.push(part);
    }
    c.complete_multipart_upload("mp", &id, &parts, &PutOptions::default())
        .await
        .expect("complete");
    let mut want = a.clone();
    want.extend_from_slice(&b);
    assert_eq!(srv.get_object("mp").as_deref(), Some(&want[..]));
    assert_eq!(c.stats().checksum_failures, 1);
    assert!(srv
        .requests_for("UploadPart")
        .iter()
        .all(|r| r.headers.iter().any(|(n, _)| n == "content-md5")));
}

/// A client that knows from the probe that the server's ETags are MD5s.
async fn probed_client(srv: &TestServer) -> bucketfs::s3::S3Client {
    let c = client(srv);
    let caps = c.probe("").await.expect("probe");
    assert_eq!(caps.etag_md5, Holds::Yes);
    c.set_capabilities(caps);
    c
}

#[tokio::test]
async fn unprobed_etags_are_not_taken_for_md5s() {
    // a server not known to give MD5 ETags: nothing to check a body against
    let srv = TestServer::start().await;
    let c = client(&srv);
    srv.put_object("k", data(1000, 7));
    srv.add_fault(
        Fault::new(FaultKind::CorruptResponse)
            .op("GetObject")
            .times(1),
    );
    let got = c.get_object("k", None, None).await.expect("get");
    assert_ne!(&got.body[..], &data(1000, 7)[..]);
}

#[tokio::test]
async fn a_get_body_damaged_on_the_way_is_fetched_again() {
    let srv = TestServer::start().await;
    let c = probed_client(&srv).await;
    let body = data(200_000, 5);
    srv.put_object("k", body.clone());
    let len = body.len() as u64;
    // a whole-object GET and a ranged GET that covers the whole object are both checked
    for range in [None, Some(0..len)] {
        srv.add_fault(
            Fault::new(FaultKind::CorruptResponse)
                .op("GetObject")
                .times(1),
        );
        let got = c.get_object("k", range.clone(), None).await.expect("get");
        assert_eq!(&got.body[..], &body[..], "{range:?}");
    }
    assert_eq!(c.stats().checksum_failures, 2);
    assert_eq!(srv.count("GetObject"), 4);
}

#[tokio::test]
async fn a_body_damaged_every_time_is_an_error_not_data() {
    let srv = TestServer::start().await;
    let c = probed_client(&srv).await;
    srv.put_object("k", data(1000, 6));
    srv.add_fault(Fault::new(FaultKind::CorruptResponse).op("GetObject"));
    let err = c.get_object("k", None, None).await.expect_err("damaged");
    assert!(matches!(err, S3Error::Corrupt(_)), "{err:?}");
    // a part of a larger object cannot be checked against the whole object's MD5: served
    let part = c.get_object("k", Some(0..10), None).await.expect("ranged");
    assert_eq!(part.body.len(), 10);
}

#[tokio::test]
async fn the_probe_finds_whether_crc32c_is_verified() {
    let srv = TestServer::start().await;
    let c = client(&srv);
    let caps = c.probe("").await.expect("probe");
    assert_eq!(caps.verifies_crc32c, Holds::Yes);
    assert_eq!(caps.etag_md5, Holds::Yes);
    // the probe's own refused PUT is not a damaged body
    assert_eq!(c.stats().checksum_failures, 0);
    srv.set_dialect(Dialect::ceph_rgw());
    let caps = c.probe("").await.expect("probe");
    assert_eq!(caps.verifies_crc32c, Holds::No);
    // once known, PutObject carries CRC32C instead of MD5
    c.set_capabilities(bucketfs::s3::profile::Capabilities::AWS);
    c.put_object("k", b"x".to_vec(), &PutOptions::default())
        .await
        .expect("put");
    let last = srv.requests_for("PutObject").pop().expect("a put");
    assert!(last
        .headers
        .iter()
        .any(|(n, _)| n == "x-amz-checksum-crc32c"));
    assert!(!last.headers.iter().any(|(n, _)| n == "content-md5"));
}

#[tokio::test]
async fn parts_carry_crc32c_where_the_server_verifies_it() {
    // the server verifies CRC32C (the probe would say so): the upload names the algorithm,
    // every part carries its CRC32C instead of an MD5 (a CPU hashes it at memory speed), the
    // Complete names each one (the server refuses it otherwise), a copied part's comes from
    // the server
    let srv = TestServer::start().await;
    let c = client(&srv);
    c.set_capabilities(bucketfs::s3::profile::Capabilities::AWS);
    let src = data(6 << 20, 9);
    c.put_object("src", src.clone(), &PutOptions::default())
        .await
        .expect("source");
    srv.add_fault(
        Fault::new(FaultKind::CorruptRequest)
            .op("UploadPart")
            .times(1),
    );
    let a = data(5 << 20, 3);
    let id = c
        .create_multipart_upload("mp", &PutOptions::default())
        .await
        .expect("create");
    let created = srv
        .requests_for("CreateMultipartUpload")
        .pop()
        .expect("create");
    assert!(created
        .headers
        .iter()
        .any(|(n, v)| n == "x-amz-checksum-algorithm" && v == "CRC32C"));
    let one = c.upload_part("mp", &id, 1, a.clone()).await.expect("part");
    assert!(one.crc32c.is_some());
    let two = c
        .upload_part_copy("mp", &id, 2, "src", 1000..(3 << 20), None)
        .await
        .expect("copied part");
    assert!(
        two.crc32c.is_some(),
        "the server names a copied part's CRC32C"
    );
    c.complete_multipart_upload("mp", &id, &[one, two], &PutOptions::default())
        .await
        .expect("complete");
    let mut want = a.clone();
    want.extend_from_slice(&src[1000..3 << 20]);
    assert!(srv.get_object("mp").as_deref() == Some(&want[..]));
    assert_eq!(
        c.stats().checksum_failures,
        1,
        "the damaged part was refused"
    );
    let parts = srv.requests_for("UploadPart");
    assert_eq!(parts.len(), 2);
    for p in &parts {
        assert!(p.headers.iter().any(|(n, _)| n == "x-amz-checksum-crc32c"));
        assert!(!p.headers.iter().any(|(n, _)| n == "content-md5"));
    }
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(b))
}

#[tokio::test]
async fn where_the_server_verifies_signed_payloads_bodies_are_signed_instead_of_md5ed() {
    // the server refuses a body whose SHA-256 is not the signed one (the probe finds it); on
    // a server that does not verify CRC32C, uploads are then signed with their SHA-256 (about
    // three times cheaper than MD5 where the CPU has SHA instructions) and carry no MD5
    let srv = TestServer::start().await;
    srv.set_dialect(Dialect::ceph_rgw());
    let c = client(&srv);
    let caps = c.probe("").await.expect("probe");
    assert_eq!(caps.verifies_crc32c, Holds::No);
    assert_eq!(caps.verifies_payload_sha256, Holds::Yes);
    assert_eq!(
        c.stats().checksum_failures,
        0,
        "the probe's refusal is no failure"
    );
    c.set_capabilities(caps);
    let hardware = std::arch::is_x86_feature_detected!("sha");
    srv.add_fault(
        Fault::new(FaultKind::CorruptRequest)
            .op("UploadPart")
            .times(1),
    );
    let body = data(300_000, 5);
    c.put_object("k", body.clone(), &PutOptions::default())
        .await
        .expect("put");
    let part = data(5 << 20, 6);
    let id = c
        .create_multipart_upload("mp", &PutOptions::default())
        .await
        .expect("create");
    let one = c
        .upload_part("mp", &id, 1, part.clone())
        .await
        .expect("part");
    c.complete_multipart_upload("mp", &id, &[one], &PutOptions::default())
        .await
        .expect("complete");
    assert_eq!(srv.get_object("k").as_deref(), Some(&body[..]));
    assert_eq!(srv.get_object("mp").as_deref(), Some(&part[..]));
    let put = srv.requests_for("PutObject").pop().expect("a put");
    let parts: Vec<_> = srv
        .requests_for("UploadPart")
        .into_iter()
        .filter(|r| r.key.as_deref() == Some("mp"))
        .collect();
    assert_eq!(
        parts.len(),
        2,
        "the damaged part was refused and sent again"
    );
    assert_eq!(parts[0].status, Some(400));
    assert_eq!(c.stats().checksum_failures, 1);
    for (r, b) in [(&put, &body), (&parts[1], &part)] {
        let signed = r
            .headers
            .iter()
            .any(|(n, v)| n == "x-amz-content-sha256" && *v == sha256_hex(b));
        let md5 = r.headers.iter().any(|(n, _)| n == "content-md5");
        assert_eq!(signed, hardware, "signed where the CPU hashes SHA-256 fast");
        assert_eq!(md5, !hardware, "else Content-MD5");
    }
}

//! Zeros nobody wrote are copied server-side, not sent (core, no mount): a hole in a new file,
//! a file or an object extended by truncate. Two zero parts or more: one hidden zeros object
//! (`PutObject`), one `UploadPartCopy` per zero part, its `DeleteObject` after the upload; a
//! server that refuses the copies gets the zeros sent; a mount that stops before the delete
//! leaves the zeros object to the next mount.

use std::path::PathBuf;
use std::sync::Arc;

use bucketfs::config::FsConfig;
use bucketfs::fs::zero_parts::ZEROS_NAME_PREFIX;
use bucketfs::fs::{Filesystem, SetAttr, ROOT_INO};
use bucketfs_test_server::{Fault, FaultKind, TestServer};

#[path = "common/core.rs"]
mod core_fs;
use core_fs::{dir_names, fs_with, ME};

const MIB: u64 = 1024 * 1024;
const PART: u64 = 5 * MIB;

fn staged(dir: &tempfile::TempDir) -> FsConfig {
    FsConfig {
        part_size: PART,
        cache_dir: Some(PathBuf::from(dir.path())),
        ..FsConfig::default()
    }
}

fn set_size(size: u64, fh: Option<u64>) -> SetAttr {
    SetAttr {
        size: Some(size),
        fh,
        ..SetAttr::default()
    }
}

fn pattern(len: u64, seed: u8) -> Vec<u8> {
    (0..len).map(|i| ((i % 251) as u8) ^ seed).collect()
}

/// Close `fh` as close(2) does (flush, then release).
async fn close(fs: &Filesystem, fh: u64) {
    fs.flush(fh, 0).await.expect("flush");
    fs.release(fh).await.expect("release");
}

/// Create `name` and write `data` at `offset` (nothing before it), without closing it.
async fn create_with_hole(fs: &Filesystem, name: &str, offset: u64, data: &[u8]) -> (u64, u64) {
    let (attr, o) = fs
        .create(ROOT_INO, name, 0o644, libc::O_WRONLY, ME)
        .await
        .expect("create");
    fs.write(o.fh, offset, data).await.expect("write far");
    (attr.ino, o.fh)
}

/// The object `key` is `zeros` zero bytes followed by `tail`.
fn assert_zeros_then(srv: &TestServer, key: &str, zeros: u64, tail: &[u8]) {
    let got = srv.get_object(key).expect("object");
    assert_eq!(got.len() as u64, zeros + tail.len() as u64, "size of {key}");
    let (head, rest) = got.split_at(zeros as usize);
    assert!(head.iter().all(|&b| b == 0), "{key}: zeros first");
    assert_eq!(rest, tail, "{key}: then the bytes written");
}

/// The bucket holds exactly `keys`: no zeros object, no upload left open.
fn assert_only(srv: &TestServer, keys: &[&str]) {
    assert_eq!(srv.keys(), keys, "{:?}", srv.counts());
    assert!(srv.multipart_uploads().is_empty(), "an upload left open");
}

/// The copies went from one zeros object of `len` bytes, each of the whole part or less.
fn assert_copied_from_zeros(srv: &TestServer, copies: u64, len: u64) {
    assert_eq!(srv.count("UploadPartCopy"), copies, "{:?}", srv.counts());
    for r in srv.requests_for("UploadPartCopy") {
        let source = r.header("x-amz-copy-source").expect("copy source");
        assert!(source.contains(ZEROS_NAME_PREFIX), "{source}");
        let range = r.header("x-amz-copy-source-range").expect("range");
        let end: u64 = range
            .strip_prefix("bytes=0-")
            .and_then(|e| e.parse().ok())
            .expect("bytes=0-N");
        assert!(end < len, "{range}");
    }
    let puts = srv.requests_for("PutObject");
    assert_eq!(puts.len(), 1, "the zeros object, once");
    let key = puts[0].key.clone().expect("key");
    assert!(key.starts_with(ZEROS_NAME_PREFIX), "{key}");
    let deletes = srv.requests_for("DeleteObject");
    assert_eq!(deletes.len(), 1, "the zeros object goes");
    assert_eq!(deletes[0].key.as_deref(), Some(key.as_str()));
}

#[tokio::test]
async fn one_byte_far_past_the_end_of_a_new_file_sends_no_hole() {
    let srv = TestServer::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let fs = fs_with(&srv, staged(&dir));
    // 12 parts of zeros (60 MiB), then a part of 4 MiB of zeros and the byte
    let (_, fh) = create_with_hole(&fs, "f", 64 * MIB, b"x").await;
    // the hole's part files take no room in the staging area (--cache-size)
    assert!(fs.staging_used() < 2 * PART, "{} staged", fs.staging_used());
    close(&fs, fh).await;
    assert_zeros_then(&srv, "f", 64 * MIB, b"x");
    assert_copied_from_zeros(&srv, 12, PART);
    assert_eq!(srv.count("UploadPart"), 1, "the part holding the byte");
    assert!(
        srv.bytes_received() < 2 * PART,
        "{} bytes received for a 64 MiB hole",
        srv.bytes_received()
    );
    assert_only(&srv, &["f"]);
}

#[tokio::test]
async fn a_new_file_extended_by_truncate_alone_is_copied_zeros() {
    let srv = TestServer::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let fs = fs_with(&srv, staged(&dir));
    let (attr, o) = fs
        .create(ROOT_INO, "sparse", 0o644, libc::O_WRONLY, ME)
        .await
        .expect("create");
    // `truncate -s 17M`: 3 parts and a short last one, all zeros
    fs.setattr(attr.ino, set_size(17 * MIB, Some(o.fh)), ME)
        .await
        .expect("ftruncate");
    close(&fs, o.fh).await;
    assert_zeros_then(&srv, "sparse", 17 * MIB, b"");
    assert_copied_from_zeros(&srv, 4, PART);
    assert_eq!(srv.count("UploadPart"), 0, "{:?}", srv.counts());
    assert_eq!(srv.count("CompleteMultipartUpload"), 1);
    assert!(srv.bytes_received() < 2 * PART);
    assert_only(&srv, &["sparse"]);
}

#[tokio::test]
async fn zeros_the_application_wrote_are_data_and_one_zero_part_is_sent() {
    let srv = TestServer::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let fs = fs_with(&srv, staged(&dir));
    // written zeros: three parts of them, sent as written
    let (_, o) = fs
        .create(ROOT_INO, "written", 0o644, libc::O_WRONLY, ME)
        .await
        .expect("create");
    let zeros = vec![0u8; MIB as usize];
    for i in 0..15 {
        fs.write(o.fh, i * MIB, &zeros).await.expect("write");
    }
    close(&fs, o.fh).await;
    assert_zeros_then(&srv, "written", 15 * MIB, b"");
    assert_eq!(srv.count("UploadPart"), 3, "{:?}", srv.counts());
    assert_eq!(srv.count("UploadPartCopy"), 0);
    assert_eq!(srv.count("PutObject"), 0);
    // one zero part only: not worth a zeros object, it is sent
    srv.reset_stats();
    let (_, fh) = create_with_hole(&fs, "one", PART + 7, b"y").await;
    close(&fs, fh).await;
    assert_zeros_then(&srv, "one", PART + 7, b"y");
    assert_eq!(srv.count("UploadPart"), 2, "{:?}", srv.counts());
    assert_eq!(srv.count("UploadPartCopy"), 0);
    assert_eq!(srv.count("PutObject"), 0);
    assert_only(&srv, &["one", "written"]);
}

#[tokio::test]
async fn a_write_into_a_hole_after_its_parts_went_makes_that_part_data() {
    let srv = TestServer::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let fs = fs_with(&srv, staged(&dir));
    let (_, fh) = create_with_hole(&fs, "f", 30 * MIB, b"end").await;
    // back into the hole (zip filling in a header): part 2 holds data now
    fs.write(fh, 7 * MIB, b"middle").await.expect("write back");
    close(&fs, fh).await;
    let got = srv.get_object("f").expect("object");
    let mut want = vec![0u8; 30 * MIB as usize];
    want[7 * MIB as usize..7 * MIB as usize + 6].copy_from_slice(b"middle");
    want.extend_from_slice(b"end");
    assert!(got[..] == want[..], "bytes differ");
    // parts 1, 3, 4, 5, 6 copied; 2 and 7 sent
    assert_copied_from_zeros(&srv, 5, PART);
    assert_eq!(srv.count("UploadPart"), 2, "{:?}", srv.counts());
    assert_only(&srv, &["f"]);
}

#[tokio::test]
async fn an_object_extended_in_place_copies_its_zero_parts() {
    let srv = TestServer::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let old = pattern(10 * MIB, 3);
    srv.put_object("big", old.clone());
    let fs = fs_with(&srv, staged(&dir));
    let attr = fs.lookup(ROOT_INO, "big").await.expect("lookup");
    srv.reset_stats();
    // open without O_TRUNC, ftruncate 25 MiB further (5 zero parts past the end), close
    let o = fs.open(attr.ino, libc::O_WRONLY, ME).await.expect("open");
    fs.setattr(attr.ino, set_size(35 * MIB, Some(o.fh)), ME)
        .await
        .expect("ftruncate");
    close(&fs, o.fh).await;
    let check = |size: u64| {
        let got = srv.get_object("big").expect("object");
        assert_eq!(got.len() as u64, size);
        assert!(got[..old.len()] == old[..], "the old bytes stay");
        assert!(got[old.len()..].iter().all(|&b| b == 0), "then zeros");
    };
    check(35 * MIB);
    // the old bytes: one copy; the zeros: 5 copies from the zeros object
    assert_eq!(srv.count("UploadPartCopy"), 6, "{:?}", srv.counts());
    assert_eq!(srv.count("UploadPart"), 0);
    assert_eq!(srv.count("PutObject"), 1, "the zeros object");
    assert_eq!(srv.count("DeleteObject"), 1);
    assert!(srv.bytes_received() < 2 * PART);
    assert_only(&srv, &["big"]);

    // truncate of the closed file: 3 zero parts more
    srv.reset_stats();
    fs.setattr(attr.ino, set_size(50 * MIB, None), ME)
        .await
        .expect("truncate");
    check(50 * MIB);
    assert_eq!(srv.count("UploadPartCopy"), 4, "{:?}", srv.counts());
    assert_eq!(srv.count("PutObject"), 1);
    assert_eq!(srv.count("UploadPart"), 0);
    assert!(srv.bytes_received() < 2 * PART);
    assert_only(&srv, &["big"]);
}

#[tokio::test]
async fn a_server_that_refuses_part_copies_gets_the_zeros_sent() {
    let srv = TestServer::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    srv.add_fault(Fault::new(FaultKind::not_implemented()).op("UploadPartCopy"));
    let fs = fs_with(&srv, staged(&dir));
    let (_, fh) = create_with_hole(&fs, "f", 20 * MIB, b"x").await;
    close(&fs, fh).await;
    assert_zeros_then(&srv, "f", 20 * MIB, b"x");
    assert!(srv.count("UploadPartCopy") >= 1, "{:?}", srv.counts());
    assert_eq!(srv.count("UploadPart"), 5, "every part sent");
    assert_eq!(srv.count("DeleteObject"), 1, "the zeros object goes");
    assert_only(&srv, &["f"]);

    // the refusal is remembered: an object extended in place sends its zeros, no zeros object
    srv.put_object("big", pattern(10 * MIB, 1));
    let attr = fs.lookup(ROOT_INO, "big").await.expect("lookup");
    srv.reset_stats();
    fs.setattr(attr.ino, set_size(30 * MIB, None), ME)
        .await
        .expect("truncate");
    let got = srv.get_object("big").expect("object");
    assert_eq!(got.len() as u64, 30 * MIB);
    assert!(got[..10 * MIB as usize] == pattern(10 * MIB, 1)[..]);
    assert!(got[10 * MIB as usize..].iter().all(|&b| b == 0));
    assert_eq!(srv.count("UploadPartCopy"), 0, "{:?}", srv.counts());
    assert_eq!(srv.count("PutObject"), 0);
    assert_only(&srv, &["big", "f"]);
}

#[tokio::test]
async fn a_zeros_object_a_mount_left_is_deleted_by_the_next_mount() {
    let srv = TestServer::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let fs: Arc<Filesystem> = fs_with(&srv, staged(&dir));
    // the copies fail, and so does the delete: the mount goes down with the zeros object
    // still in the bucket (as after a crash during the upload)
    srv.add_fault(Fault::new(FaultKind::internal_error()).op("UploadPartCopy"));
    srv.add_fault(
        Fault::new(FaultKind::internal_error())
            .op("DeleteObject")
            .key_prefix(ZEROS_NAME_PREFIX),
    );
    let (_, fh) = create_with_hole(&fs, "f", 20 * MIB, b"x").await;
    let err = fs.flush(fh, 0).await.expect_err("copies fail");
    assert_eq!(err.errno, libc::EIO);
    // the daemon dies before the release
    drop(fs);
    let left: Vec<String> = srv
        .keys()
        .into_iter()
        .filter(|k| k.starts_with(ZEROS_NAME_PREFIX))
        .collect();
    assert_eq!(left.len(), 1, "{:?}", srv.keys());
    srv.clear_faults();

    // the next mount deletes it (and finishes the closed file's upload from its part files)
    let fs = fs_with(&srv, staged(&dir));
    let report = fs.recover_uploads().await;
    assert_eq!(report.zeros_deleted, left);
    assert_zeros_then(&srv, "f", 20 * MIB, b"x");
    assert_only(&srv, &["f"]);
    // and only once
    drop(fs);
    let fs = fs_with(&srv, staged(&dir));
    assert!(fs.recover_uploads().await.zeros_deleted.is_empty());
}

#[tokio::test]
async fn a_hole_in_a_file_closed_with_write_back_is_copied_when_it_uploads() {
    let srv = TestServer::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let fs = fs_with(
        &srv,
        FsConfig {
            write_back: true,
            ..staged(&dir)
        },
    );
    let (_, fh) = create_with_hole(&fs, "wb", 20 * MIB, b"x").await;
    close(&fs, fh).await;
    assert!(
        fs.wait_uploads_landed(std::time::Duration::from_secs(30))
            .await,
        "still pending"
    );
    assert_zeros_then(&srv, "wb", 20 * MIB, b"x");
    assert_copied_from_zeros(&srv, 4, PART);
    assert_eq!(srv.count("UploadPart"), 1, "{:?}", srv.counts());
    assert_only(&srv, &["wb"]);
}

#[tokio::test]
async fn a_hole_staged_with_write_back_survives_a_crash_from_its_part_files() {
    let srv = TestServer::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = FsConfig {
        write_back: true,
        ..staged(&dir)
    };
    {
        let fs = fs_with(&srv, cfg.clone());
        srv.add_fault(Fault::new(FaultKind::slow_down()).op("CreateMultipartUpload"));
        let (_, fh) = create_with_hole(&fs, "wb", 20 * MIB, b"x").await;
        close(&fs, fh).await;
        // the daemon dies with the file staged and journaled, nothing uploaded
        drop(fs);
    }
    srv.clear_faults();
    let fs = fs_with(&srv, cfg);
    let report = fs.recover_uploads().await;
    assert_eq!(report.resumed, ["wb"]);
    assert_zeros_then(&srv, "wb", 20 * MIB, b"x");
    assert_only(&srv, &["wb"]);
}

#[tokio::test]
async fn listings_leave_zeros_objects_out() {
    let srv = TestServer::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    srv.put_object(
        &format!("{ZEROS_NAME_PREFIX}0123456789abcdef"),
        vec![0u8; 16],
    );
    srv.put_object("a", "a");
    let fs = fs_with(&srv, staged(&dir));
    assert_eq!(dir_names(&fs, ROOT_INO).await, [".", "..", "a"]);
}

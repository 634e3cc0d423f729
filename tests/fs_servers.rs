//! The core against servers that answer unlike AWS (Ceph RGW's dialect), answers that are
//! lost or late, and uploads that fail: a stored object is never reported lost, bytes that
//! could not be uploaded stay in the mount, and nothing is clobbered on a guess.

use std::sync::Arc;
use std::time::Duration;

use bucketfs::config::FsConfig;
use bucketfs::fs::{Filesystem, ROOT_INO};
use bucketfs::s3::profile::{Capabilities, Holds};
use bucketfs_test_server::{Dialect, Fault, FaultKind, TestServer};

#[path = "common/core.rs"]
mod core_fs;
use core_fs::{client, dir_names, fs_with, write_file, ME};

const MIB: usize = 1024 * 1024;

fn big_parts() -> FsConfig {
    FsConfig {
        part_size: 5 * MIB as u64,
        ..FsConfig::default()
    }
}

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
}

/// Read the whole file `ino` through a fresh read handle.
async fn read_all(fs: &Filesystem, ino: u64, len: usize) -> Vec<u8> {
    let o = fs
        .open(ino, libc::O_RDONLY, ME)
        .await
        .expect("open for read");
    let mut out = Vec::new();
    while out.len() < len {
        let got = fs
            .read(o.fh, out.len() as u64, 128 * 1024)
            .await
            .expect("read");
        if got.is_empty() {
            break;
        }
        out.extend_from_slice(&got);
    }
    fs.release(o.fh).await.expect("release");
    out
}

#[tokio::test]
async fn the_probe_finds_what_a_server_answering_like_rgw_does() {
    let srv = TestServer::start().await;
    let c = client(&srv);
    let aws = c.probe("").await.expect("probe");
    assert_eq!(aws, Capabilities::AWS);
    // what docs/SEMANTICS.md says a probe costs
    let want = [
        ("PutObject", 6),
        ("CreateMultipartUpload", 2),
        ("UploadPartCopy", 2),
        ("UploadPart", 1),
        ("CompleteMultipartUpload", 2),
        ("AbortMultipartUpload", 1),
        ("DeleteObject", 3),
    ];
    for (op, n) in want {
        assert_eq!(srv.count(op), n, "{op}: {:?}", srv.counts());
    }
    assert_eq!(srv.total_requests(), 17, "{:?}", srv.counts());
    srv.set_dialect(Dialect::ceph_rgw());
    let rgw = c.probe("p/").await.expect("probe");
    assert!(rgw.if_match_bare, "{rgw:?}");
    assert_eq!(rgw.conditional_replace, Holds::Yes);
    assert_eq!(rgw.conditional_create, Holds::Yes);
    assert_eq!(rgw.conditional_complete, Holds::No);
    assert_eq!(rgw.complete_etag, Holds::No);
    assert_eq!(rgw.upload_part_copy, Holds::Yes);
    assert_eq!(rgw.copy_source_condition, Holds::No);
    // what the ceph profile says is what the probe finds
    assert_eq!(
        rgw,
        bucketfs::s3::Provider::Ceph.profile().caps,
        "the ceph profile row"
    );
    // probe objects are gone, no upload is left open
    assert!(srv.keys().is_empty(), "{:?}", srv.keys());
    assert!(srv.multipart_uploads().is_empty());
}

#[tokio::test]
async fn large_files_appends_and_overwrites_work_on_a_server_answering_like_rgw() {
    let srv = TestServer::start().await;
    srv.set_dialect(Dialect::ceph_rgw());
    // no probe, no profile: everything is found out on first use
    let fs = fs_with(&srv, big_parts());

    // Complete answers an empty ETag: the object is there, close succeeds
    let big = data(12 * MIB + 5, 1);
    let ino = write_file(&fs, ROOT_INO, "big.bin", &big).await;
    assert_eq!(srv.get_object("big.bin").as_deref(), Some(&big[..]));
    assert!(srv.multipart_uploads().is_empty());
    // and the mount shows it with the ETag the HEAD found
    assert_eq!(read_all(&fs, ino, big.len()).await, big);

    // If-Match with the quoted ETag gets 412: learned, sent bare, the append lands
    srv.put_object("log.txt", "one\n");
    let attr = fs.lookup(ROOT_INO, "log.txt").await.expect("lookup");
    let o = fs
        .open(attr.ino, libc::O_WRONLY | libc::O_APPEND, ME)
        .await
        .expect("open");
    fs.write(o.fh, 4, b"two\n").await.expect("write");
    fs.flush(o.fh, 0).await.expect("append lands");
    fs.release(o.fh).await.expect("release");
    assert_eq!(
        srv.get_object("log.txt").as_deref(),
        Some(&b"one\ntwo\n"[..])
    );
    let ifm = srv.requests_for("PutObject");
    let last = ifm.last().expect("a PUT");
    assert!(
        last.header("if-match").is_some_and(|v| !v.starts_with('"')),
        "{:?}",
        last.header("if-match")
    );

    // a 4 KiB write in the middle of the large object (in-place patch)
    let o = fs.open(ino, libc::O_WRONLY, ME).await.expect("open");
    fs.write(o.fh, 6 * MIB as u64, &[9u8; 4096])
        .await
        .expect("write");
    fs.flush(o.fh, 0).await.expect("patch lands");
    fs.release(o.fh).await.expect("release");
    let mut want = big.clone();
    want[6 * MIB..6 * MIB + 4096].fill(9);
    assert_eq!(srv.get_object("big.bin").as_deref(), Some(&want[..]));
}

/// Ceph RGW decodes UploadPartCopy's source twice: an in-place change of `f%41` copied its
/// untouched parts from `fA`, another file, and nothing in the answers told (found against
/// RGW: the copy from `f%25` brought the bytes of `f%`). A key holding `%` sends its bytes.
/// Open `name` for writing (no truncate), write 4 KiB of 7s at 6 MiB, close.
async fn overwrite_4k_at_6_mib(fs: &Filesystem, name: &str) {
    let ino = fs.lookup(ROOT_INO, name).await.expect("lookup").ino;
    let o = fs.open(ino, libc::O_WRONLY, ME).await.expect("open");
    fs.write(o.fh, 6 * MIB as u64, &[7u8; 4096])
        .await
        .expect("write");
    fs.flush(o.fh, 0).await.expect("close");
    fs.release(o.fh).await.expect("release");
}

#[tokio::test]
async fn an_in_place_change_of_a_key_with_a_percent_keeps_its_own_bytes_on_rgw() {
    let srv = TestServer::start().await;
    srv.set_dialect(Dialect::ceph_rgw());
    let mine = data(12 * MIB + 5, 1);
    srv.put_object("f%41", mine.clone());
    srv.put_object("fA", data(12 * MIB + 5, 9));
    let fs = fs_with(&srv, big_parts());
    overwrite_4k_at_6_mib(&fs, "f%41").await;
    let mut want = mine;
    want[6 * MIB..6 * MIB + 4096].fill(7);
    assert!(
        srv.get_object("f%41").as_deref() == Some(&want[..]),
        "f%41 holds other bytes"
    );
    assert_eq!(srv.count("UploadPartCopy"), 0, "{:?}", srv.counts());
    // a key without one still copies its untouched parts server-side
    srv.put_object("plain", data(12 * MIB + 5, 3));
    overwrite_4k_at_6_mib(&fs, "plain").await;
    assert!(srv.count("UploadPartCopy") > 0, "{:?}", srv.counts());
}

#[tokio::test]
async fn a_server_ignoring_conditions_on_complete_still_never_clobbers_a_new_file() {
    let srv = TestServer::start().await;
    srv.set_dialect(Dialect::ceph_rgw());
    let c = client(&srv);
    c.set_capabilities(c.probe("").await.expect("probe"));
    let fs = Filesystem::new(core_fs::isolated(big_parts()), c);
    // another client creates the same name before this one closes
    refused_close(&srv, &fs, &data(11 * MIB, 2)).await;
    assert_eq!(srv.get_object("race.bin").as_deref(), Some(&b"theirs"[..]));
}

/// A close refused with ESTALE (another client created the key first) leaves its upload open
/// and journaled as closed, with every part in the staging area. The next mount's recovery
/// keeps the condition the close had: the other client's object stays, and the refused file
/// is kept next to it. On the test server's own dialect and on one that ignores conditions
/// on CompleteMultipartUpload (checked with a HEAD).
#[tokio::test]
async fn recovery_of_a_close_refused_with_estale_never_clobbers_the_other_clients_object() {
    for rgw in [false, true] {
        let srv = TestServer::start().await;
        if rgw {
            srv.set_dialect(Dialect::ceph_rgw());
        }
        let dir = tempfile::tempdir().expect("tmp");
        let cfg = || FsConfig {
            cache_dir: Some(dir.path().to_path_buf()),
            ..big_parts()
        };
        let probed = || async {
            let c = client(&srv);
            c.set_capabilities(c.probe("").await.expect("probe"));
            c
        };
        let mine = data(11 * MIB, 4);
        leave_a_refused_upload(&srv, Filesystem::new(cfg(), probed().await), &mine).await;
        assert_eq!(srv.multipart_uploads().len(), 1, "rgw {rgw}");
        let fs = Filesystem::new(cfg(), probed().await);
        let report = fs.recover_uploads().await;
        assert_eq!(
            srv.get_object("race.bin").as_deref(),
            Some(&b"theirs"[..]),
            "rgw {rgw}: clobbered by the recovery"
        );
        assert_eq!(report.resumed.len(), 1, "rgw {rgw}: {report:?}");
        let kept = &report.resumed[0];
        assert!(kept.starts_with("race.bin.conflict-"), "{kept}");
        assert_eq!(srv.get_object(kept).as_deref(), Some(&mine[..]));
        assert!(srv.multipart_uploads().is_empty(), "rgw {rgw}");
        // nothing left for a third mount
        drop(fs);
        let fs = Filesystem::new(cfg(), probed().await);
        assert_eq!(fs.recover_uploads().await, Default::default());
        assert_eq!(srv.keys().len(), 2, "rgw {rgw}");
    }
}

/// `race.bin` (`mine`) is created, another client creates it before the close, and the close
/// is refused with ESTALE: the data stays in the mount (and a large file's upload stays open,
/// journaled as closed).
async fn refused_close(srv: &TestServer, fs: &Filesystem, mine: &[u8]) {
    let (_, o) = fs
        .create(ROOT_INO, "race.bin", 0o644, libc::O_WRONLY, ME)
        .await
        .expect("create");
    for (i, chunk) in mine.chunks(MIB).enumerate() {
        fs.write(o.fh, (i * MIB) as u64, chunk)
            .await
            .expect("write");
    }
    srv.put_object("race.bin", "theirs");
    let err = fs.flush(o.fh, 0).await.expect_err("must not clobber");
    assert_eq!(err.errno, libc::ESTALE);
    assert!(fs.release(o.fh).await.is_err(), "kept, not uploaded");
}

/// The daemon stops (killed) after a close refused with ESTALE: its upload stays for the
/// next mount.
async fn leave_a_refused_upload(srv: &TestServer, fs: Arc<Filesystem>, mine: &[u8]) {
    refused_close(srv, &fs, mine).await;
    drop(fs);
}

/// Unmount after a close refused with ESTALE: tried once more, refused again, the file goes
/// next to the other client's object (with its attributes), small or large; nothing is left
/// for the next mount.
#[tokio::test]
async fn a_file_refused_with_estale_is_kept_beside_the_object_at_unmount() {
    for len in [100, 11 * MIB] {
        let srv = TestServer::start().await;
        let dir = tempfile::tempdir().expect("tmp");
        let cfg = || FsConfig {
            cache_dir: Some(dir.path().to_path_buf()),
            ..big_parts()
        };
        let mine = data(len, 6);
        let fs = fs_with(&srv, cfg());
        refused_close(&srv, &fs, &mine).await;
        let report = fs.shutdown().await;
        assert!(report.failed.is_empty(), "{report:?}");
        assert_eq!(report.finished.len(), 1, "{report:?}");
        let kept = &report.finished[0];
        assert!(kept.starts_with("race.bin.conflict-"), "{kept}");
        assert_eq!(srv.get_object(kept).as_deref(), Some(&mine[..]), "{len}");
        let meta = srv.object_meta(kept).expect("meta");
        assert!(meta.metadata.contains_key("mode"), "{meta:?}");
        assert_eq!(srv.get_object("race.bin").as_deref(), Some(&b"theirs"[..]));
        assert!(srv.multipart_uploads().is_empty(), "{len}");
        drop(fs);
        let fs = fs_with(&srv, cfg());
        assert_eq!(fs.recover_uploads().await, Default::default());
        assert_eq!(srv.keys().len(), 2, "{len}");
    }
}

/// A new file whose key an earlier run's upload still holds (recovery has not dealt with it)
/// waits for recovery at its close, at most `recovery_wait`; then it goes with the conditions
/// of a new file, so an object another client put there meanwhile stays.
#[tokio::test]
async fn a_close_that_gives_up_waiting_for_recovery_keeps_its_conditions() {
    let srv = TestServer::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = || FsConfig {
        cache_dir: Some(dir.path().to_path_buf()),
        recovery_wait: Duration::from_millis(200),
        ..big_parts()
    };
    leave_a_refused_upload(&srv, fs_with(&srv, cfg()), &data(11 * MIB, 5)).await;
    assert!(srv.delete_object("race.bin"));
    // the next mount, its recovery not run
    let fs = fs_with(&srv, cfg());
    let (_, o) = fs
        .create(ROOT_INO, "race.bin", 0o644, libc::O_WRONLY, ME)
        .await
        .expect("create");
    fs.write(o.fh, 0, b"mine").await.expect("write");
    srv.put_object("race.bin", "theirs again");
    let err = fs.flush(o.fh, 0).await.expect_err("must not clobber");
    assert_eq!(err.errno, libc::ESTALE);
    assert_eq!(
        srv.get_object("race.bin").as_deref(),
        Some(&b"theirs again"[..])
    );
    let _ = fs.release(o.fh).await;
}

#[tokio::test]
async fn a_complete_that_lands_after_its_answer_is_not_reported_lost() {
    let srv = TestServer::start().await;
    let fs = fs_with(&srv, big_parts());
    // the server answers NoSuchUpload at once and completes the upload 300 ms later
    srv.add_fault(
        Fault::new(FaultKind::LateApply {
            delay: Duration::from_millis(300),
            status: 404,
            code: "NoSuchUpload".into(),
        })
        .op("CompleteMultipartUpload")
        .times(1),
    );
    let big = data(11 * MIB, 3);
    write_file(&fs, ROOT_INO, "slow.bin", &big).await;
    assert_eq!(srv.get_object("slow.bin").as_deref(), Some(&big[..]));
    assert!(srv.count("HeadObject") >= 1);
}

#[tokio::test]
async fn an_upload_failing_at_close_keeps_the_data_here_until_a_later_close_sends_it() {
    let srv = TestServer::start().await;
    let fs: Arc<Filesystem> = fs_with(&srv, FsConfig::default());
    srv.add_fault(Fault::new(FaultKind::access_denied()).op("PutObject"));
    let (attr, o) = fs
        .create(ROOT_INO, "kept.txt", 0o644, libc::O_WRONLY, ME)
        .await
        .expect("create");
    fs.write(o.fh, 0, b"precious bytes").await.expect("write");
    let err = fs.flush(o.fh, 0).await.expect_err("denied");
    assert_eq!(err.errno, libc::EACCES);
    assert!(fs.release(o.fh).await.is_err());
    assert!(srv.get_object("kept.txt").is_none());

    // still there, with its bytes, and listed as unsaved
    let seen = fs
        .lookup(ROOT_INO, "kept.txt")
        .await
        .expect("still visible");
    assert_eq!(seen.ino, attr.ino);
    assert_eq!(seen.size, 14);
    assert_eq!(read_all(&fs, attr.ino, 14).await, b"precious bytes");
    assert_eq!(fs.unsaved_files(), vec!["kept.txt".to_string()]);
    let names = dir_names(&fs, ROOT_INO).await;
    assert!(names.contains(&"kept.txt".to_string()), "{names:?}");

    // the server accepts writes again: the next close sends the kept bytes plus the new ones
    srv.clear_faults();
    let o = fs
        .open(attr.ino, libc::O_WRONLY | libc::O_APPEND, ME)
        .await
        .expect("reopen");
    fs.write(o.fh, 14, b"!").await.expect("write");
    fs.flush(o.fh, 0).await.expect("uploaded now");
    fs.release(o.fh).await.expect("release");
    assert_eq!(
        srv.get_object("kept.txt").as_deref(),
        Some(&b"precious bytes!"[..])
    );
    assert!(fs.unsaved_files().is_empty());
}

#[tokio::test]
async fn a_large_upload_failing_keeps_its_parts_and_finishes_later() {
    large_upload_failing_then_finishing(None).await;
}

#[tokio::test]
async fn with_a_cache_dir_a_large_file_whose_upload_failed_reads_back_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    large_upload_failing_then_finishing(Some(dir.path().to_path_buf())).await;
}

/// A large file whose parts fail to upload: kept, listed as unsaved, readable where its parts
/// are on disk (`cache_dir`), and complete in the bucket after a later fsync.
async fn large_upload_failing_then_finishing(cache_dir: Option<std::path::PathBuf>) {
    let srv = TestServer::start().await;
    let readable = cache_dir.is_some();
    let cfg = FsConfig {
        cache_dir,
        ..big_parts()
    };
    let fs = fs_with(&srv, cfg);
    srv.add_fault(Fault::new(FaultKind::internal_error()).op("UploadPart"));
    let (attr, o) = fs
        .create(ROOT_INO, "later.bin", 0o644, libc::O_WRONLY, ME)
        .await
        .expect("create");
    let chunk = data(MIB, 4);
    let mut accepted = Vec::new();
    for i in 0..11u64 {
        match fs.write(o.fh, i * MIB as u64, &chunk).await {
            Ok(_) => accepted.extend_from_slice(&chunk),
            Err(e) => {
                assert_eq!(e.errno, libc::EIO);
                break;
            }
        }
    }
    assert!(fs.flush(o.fh, 0).await.is_err());
    let _ = fs.release(o.fh).await;
    assert!(srv.get_object("later.bin").is_none());
    assert_eq!(srv.multipart_uploads().len(), 1, "the upload is kept open");
    assert_eq!(fs.unsaved_files(), vec!["later.bin".to_string()]);
    if readable {
        assert_eq!(read_all(&fs, attr.ino, accepted.len()).await, accepted);
    } else {
        let o = fs.open(attr.ino, libc::O_RDONLY, ME).await.expect("open");
        let err = fs.read(o.fh, 0, 4096).await.expect_err("sent, not kept");
        assert_eq!(err.errno, libc::EIO);
        fs.release(o.fh).await.expect("release");
    }

    srv.clear_faults();
    let o = fs.open(attr.ino, libc::O_WRONLY, ME).await.expect("reopen");
    fs.fsync(o.fh).await.expect("fsync sends what is missing");
    fs.release(o.fh).await.expect("release");
    assert_eq!(srv.get_object("later.bin").as_deref(), Some(&accepted[..]));
    assert!(srv.multipart_uploads().is_empty());
    assert!(fs.unsaved_files().is_empty());
}

#[tokio::test]
async fn unlinking_a_file_whose_upload_failed_drops_it_and_its_upload() {
    let srv = TestServer::start().await;
    let fs = fs_with(&srv, big_parts());
    srv.add_fault(Fault::new(FaultKind::access_denied()).op("CompleteMultipartUpload"));
    let (_, o) = fs
        .create(ROOT_INO, "gone.bin", 0o644, libc::O_WRONLY, ME)
        .await
        .expect("create");
    let big = data(6 * MIB, 5);
    fs.write(o.fh, 0, &big).await.expect("write");
    assert_eq!(
        fs.flush(o.fh, 0).await.expect_err("denied").errno,
        libc::EACCES
    );
    let _ = fs.release(o.fh).await;
    assert_eq!(srv.multipart_uploads().len(), 1);
    fs.unlink(ROOT_INO, "gone.bin").await.expect("unlink");
    assert!(fs.lookup(ROOT_INO, "gone.bin").await.is_err());
    assert!(srv.multipart_uploads().is_empty());
    assert!(fs.unsaved_files().is_empty());
    srv.clear_faults();
    assert!(srv.get_object("gone.bin").is_none());
}

#[tokio::test]
async fn a_later_open_of_a_file_whose_upload_failed_never_clobbers_a_newer_object() {
    // what destroyed a file on RGW: a failed write "vanished", a later in-place write then
    // took the name for a new file and replaced the real object
    let srv = TestServer::start().await;
    srv.set_dialect(Dialect::ceph_rgw());
    let c = client(&srv);
    c.set_capabilities(c.probe("").await.expect("probe"));
    let fs = fs_with(&srv, big_parts());
    let v1 = data(12 * MIB, 6);
    srv.put_object("db.bin", v1.clone());
    let attr = fs.lookup(ROOT_INO, "db.bin").await.expect("lookup");

    srv.add_fault(Fault::new(FaultKind::access_denied()).op("CompleteMultipartUpload"));
    let o = fs.open(attr.ino, libc::O_WRONLY, ME).await.expect("open");
    fs.write(o.fh, 0, b"mine").await.expect("write");
    assert!(fs.flush(o.fh, 0).await.is_err());
    let _ = fs.release(o.fh).await;
    srv.clear_faults();
    assert_eq!(fs.unsaved_files(), vec!["db.bin".to_string()]);

    // another client replaces the object meanwhile
    srv.put_object("db.bin", "v2 from elsewhere");
    // a later writer picks up the kept state, with the version it was based on
    let o = fs.open(attr.ino, libc::O_WRONLY, ME).await.expect("reopen");
    fs.write(o.fh, 50 * 1024, &[1u8; 4096])
        .await
        .expect("write");
    let err = fs
        .flush(o.fh, 0)
        .await
        .expect_err("based on v1: must not clobber v2");
    assert_eq!(err.errno, libc::ESTALE);
    let _ = fs.release(o.fh).await;
    assert_eq!(
        srv.get_object("db.bin").as_deref(),
        Some(&b"v2 from elsewhere"[..])
    );
    // removing the file here is the way out
    fs.unlink(ROOT_INO, "db.bin").await.expect("unlink");
    assert!(srv.multipart_uploads().is_empty());
}

#[tokio::test]
async fn truncate_of_a_closed_file_never_clobbers_a_version_written_elsewhere() {
    let srv = TestServer::start().await;
    let fs = fs_with(&srv, big_parts());
    srv.put_object("small.txt", "v1");
    srv.put_object("large.bin", data(12 * MIB, 7));
    let small = fs.lookup(ROOT_INO, "small.txt").await.expect("lookup");
    let large = fs.lookup(ROOT_INO, "large.bin").await.expect("lookup");
    // another client replaces both after this mount saw them
    srv.put_object("small.txt", "v2 from elsewhere");
    srv.put_object("large.bin", data(12 * MIB, 8));
    for (attr, size) in [(small, 0u64), (large, 6 * MIB as u64)] {
        let req = bucketfs::fs::SetAttr {
            size: Some(size),
            ..Default::default()
        };
        let err = fs
            .setattr(attr.ino, req, ME)
            .await
            .expect_err("must not clobber");
        assert_eq!(err.errno, libc::ESTALE);
    }
    assert_eq!(
        srv.get_object("small.txt").as_deref(),
        Some(&b"v2 from elsewhere"[..])
    );
    assert_eq!(
        srv.get_object("large.bin").as_deref(),
        Some(&data(12 * MIB, 8)[..])
    );
    assert!(srv.multipart_uploads().is_empty());
    // and the mount shows the bucket's version again
    let seen = fs.getattr(small.ino).await.expect("stat");
    assert_eq!(seen.size, 17);
}

//! An open file behaves like a file (core, no mount): writes anywhere with the parts staged on
//! disk, fsync in the middle of a large file, reads while writing, writers sharing a file,
//! unlink while open, a rename or unlink while the kernel's release is still uploading.

use std::path::PathBuf;
use std::sync::Arc;

use bucketfs::config::FsConfig;
use bucketfs::fs::{Filesystem, SetAttr, ROOT_INO};
use bucketfs_test_server::{Dialect, Fault, FaultKind, Gate, TestServer};

#[path = "common/core.rs"]
mod core_fs;
use core_fs::{fs_with, ME};

const MIB: usize = 1024 * 1024;

fn staged(dir: &tempfile::TempDir) -> FsConfig {
    FsConfig {
        part_size: 5 * MIB as u64,
        cache_dir: Some(PathBuf::from(dir.path())),
        ..FsConfig::default()
    }
}

/// ftruncate(fh, size).
fn truncate_to(size: u64, fh: u64) -> SetAttr {
    SetAttr {
        size: Some(size),
        fh: Some(fh),
        ..SetAttr::default()
    }
}

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| ((i % 253) as u8) ^ seed).collect()
}

async fn write_all(fs: &Filesystem, fh: u64, offset: usize, bytes: &[u8]) {
    for (i, chunk) in bytes.chunks(128 * 1024).enumerate() {
        fs.write(fh, (offset + i * 128 * 1024) as u64, chunk)
            .await
            .expect("write");
    }
}

async fn read_range(fs: &Filesystem, fh: u64, offset: usize, len: usize) -> Vec<u8> {
    let mut out = Vec::new();
    while out.len() < len {
        let want = (len - out.len()).min(128 * 1024) as u32;
        let got = fs
            .read(fh, (offset + out.len()) as u64, want)
            .await
            .expect("read");
        if got.is_empty() {
            break;
        }
        out.extend_from_slice(&got);
    }
    out
}

#[tokio::test]
async fn a_write_back_into_parts_already_sent_resends_just_those_parts() {
    // zip: stream the entries, then go back and fill in a header at the start
    let srv = TestServer::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let fs = fs_with(&srv, staged(&dir));
    let (_, o) = fs
        .create(ROOT_INO, "a.zip", 0o644, libc::O_WRONLY, ME)
        .await
        .expect("create");
    let mut want = data(17 * MIB, 1);
    write_all(&fs, o.fh, 0, &want).await;
    assert_eq!(
        srv.count("CreateMultipartUpload"),
        1,
        "parts stream while writing"
    );
    fs.write(o.fh, 100, b"HEADER").await.expect("write back");
    want[100..106].copy_from_slice(b"HEADER");
    // a write across the end of the sent bytes and into the unsent ones
    let at = 10 * MIB - 3;
    fs.write(o.fh, at as u64, b"straddle").await.expect("write");
    want[at..at + 8].copy_from_slice(b"straddle");
    // and reading back through the writer sees it all
    assert_eq!(read_range(&fs, o.fh, 0, want.len()).await, want);
    fs.flush(o.fh, 0).await.expect("close");
    fs.release(o.fh).await.expect("release");
    assert_eq!(srv.get_object("a.zip").as_deref(), Some(&want[..]));
    // 4 parts (5+5+5+2 MiB); parts 1 (the header), 2 and 3 (the straddling write) sent twice
    assert_eq!(srv.count("UploadPart"), 7, "{:?}", srv.counts());
    assert_eq!(srv.count("CompleteMultipartUpload"), 1);
    assert!(srv.multipart_uploads().is_empty());
}

/// A sequential writer's bytes, 256 KiB at a time, each first offered to `try_write_now` (as
/// the FUSE adapter does) and written the long way when it declines: (taken at once, not).
async fn write_as_the_adapter_does(fs: &Filesystem, fh: u64, bytes: &[u8]) -> (usize, usize) {
    let (mut now, mut later) = (0, 0);
    for (i, chunk) in bytes.chunks(256 * 1024).enumerate() {
        let at = (i * 256 * 1024) as u64;
        match fs.try_write_now(fh, at, chunk) {
            Some(r) => {
                assert_eq!(r.expect("write now"), chunk.len() as u32);
                now += 1;
            }
            None => {
                fs.write(fh, at, chunk).await.expect("write");
                later += 1;
            }
        }
    }
    (now, later)
}

#[tokio::test]
async fn a_write_that_continues_the_part_being_filled_is_taken_at_once_and_others_wait() {
    for staging in [true, false] {
        let srv = TestServer::start().await;
        let dir = tempfile::tempdir().expect("tmp");
        let config = if staging {
            staged(&dir)
        } else {
            FsConfig {
                part_size: 5 * MIB as u64,
                ..FsConfig::default()
            }
        };
        let fs = fs_with(&srv, config);
        let (attr, o) = fs
            .create(ROOT_INO, "seq.bin", 0o644, libc::O_RDWR, ME)
            .await
            .expect("create");
        let want = data(12 * MIB + 1000, 5);
        let (now, later) = write_as_the_adapter_does(&fs, o.fh, &want).await;
        // 49 writes; the two that fill a 5 MiB part send it, which may wait: the long way
        assert_eq!((now, later), (47, 2), "staging {staging}");
        assert_eq!(srv.count("CreateMultipartUpload"), 1, "parts stream");
        // never a write anywhere but at the end
        assert!(fs.try_write_now(o.fh, 100, b"x").is_none());
        assert!(fs
            .try_write_now(o.fh, want.len() as u64 + 1, b"x")
            .is_none());
        assert!(fs.try_write_now(o.fh, want.len() as u64, b"").is_none());
        // nor a handle that does not write
        assert!(fs.try_write_now(o.fh + 1000, 0, b"x").is_none());
        // what was taken at once is read back, and the size says it
        assert_eq!(
            read_range(&fs, o.fh, 10 * MIB, 2 * MIB + 1000).await,
            want[10 * MIB..]
        );
        let now_attr = fs.getattr(attr.ino).await.expect("getattr");
        assert_eq!(now_attr.size, want.len() as u64);
        fs.flush(o.fh, 0).await.expect("close");
        fs.release(o.fh).await.expect("release");
        assert_eq!(srv.get_object("seq.bin").as_deref(), Some(&want[..]));
        assert_eq!(srv.count("UploadPart"), 3, "{:?}", srv.counts());
        assert_eq!(srv.count("CompleteMultipartUpload"), 1);
    }
}

#[tokio::test]
async fn without_a_staging_dir_a_write_back_into_sent_parts_is_refused() {
    let srv = TestServer::start().await;
    let fs = fs_with(
        &srv,
        FsConfig {
            part_size: 5 * MIB as u64,
            ..FsConfig::default()
        },
    );
    let (_, o) = fs
        .create(ROOT_INO, "m.bin", 0o644, libc::O_WRONLY, ME)
        .await
        .expect("create");
    write_all(&fs, o.fh, 0, &data(11 * MIB, 2)).await;
    let err = fs.write(o.fh, 0, b"x").await.expect_err("sent, not kept");
    assert_eq!(err.errno, libc::EINVAL);
    fs.flush(o.fh, 0).await.expect("close");
    fs.release(o.fh).await.expect("release");
}

#[tokio::test]
async fn fsync_in_the_middle_of_a_large_file_then_more_writes() {
    // a database: writes, fsync, more writes anywhere, fsync
    let srv = TestServer::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let fs = fs_with(&srv, staged(&dir));
    let (_, o) = fs
        .create(ROOT_INO, "db", 0o644, libc::O_RDWR, ME)
        .await
        .expect("create");
    let mut want = data(12 * MIB, 3);
    write_all(&fs, o.fh, 0, &want).await;
    fs.fsync(o.fh).await.expect("fsync");
    assert_eq!(srv.get_object("db").as_deref(), Some(&want[..]));
    // more writes: in the middle and past the end
    fs.write(o.fh, (6 * MIB) as u64, &[7u8; 4096])
        .await
        .expect("write in place");
    want[6 * MIB..6 * MIB + 4096].fill(7);
    let tail = data(MIB, 4);
    write_all(&fs, o.fh, want.len(), &tail).await;
    want.extend_from_slice(&tail);
    assert_eq!(read_range(&fs, o.fh, 6 * MIB, 4096).await, vec![7u8; 4096]);
    fs.fsync(o.fh).await.expect("second fsync");
    fs.flush(o.fh, 0).await.expect("close");
    fs.release(o.fh).await.expect("release");
    assert_eq!(srv.get_object("db").as_deref(), Some(&want[..]));
}

#[tokio::test]
async fn a_reader_of_a_file_being_written_sees_the_bytes_so_far() {
    let srv = TestServer::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let fs: Arc<Filesystem> = fs_with(&srv, staged(&dir));
    let (attr, w) = fs
        .create(ROOT_INO, "log.txt", 0o644, libc::O_WRONLY, ME)
        .await
        .expect("create");
    fs.write(w.fh, 0, b"line 1\n").await.expect("write");
    let r = fs.open(attr.ino, libc::O_RDONLY, ME).await.expect("open");
    assert_eq!(&fs.read(r.fh, 0, 100).await.expect("read")[..], b"line 1\n");
    fs.write(w.fh, 7, b"line 2\n").await.expect("write");
    // `tail -f`: the same descriptor reads on from where it was
    assert_eq!(&fs.read(r.fh, 7, 100).await.expect("read")[..], b"line 2\n");
    assert_eq!(fs.getattr(attr.ino).await.expect("stat").size, 14);
    // a large file: the parts already sent are read from the staging area
    let big = data(11 * MIB, 5);
    write_all(&fs, w.fh, 14, &big).await;
    assert_eq!(read_range(&fs, r.fh, 14, big.len()).await, big);
    fs.release(r.fh).await.expect("release reader");
    fs.flush(w.fh, 0).await.expect("close");
    fs.release(w.fh).await.expect("release");
    let mut want = b"line 1\nline 2\n".to_vec();
    want.extend_from_slice(&big);
    assert_eq!(srv.get_object("log.txt").as_deref(), Some(&want[..]));
}

#[tokio::test]
async fn two_writers_share_the_file_and_the_last_close_uploads() {
    let srv = TestServer::start().await;
    let fs = fs_with(&srv, FsConfig::default());
    let (attr, a) = fs
        .create(ROOT_INO, "shared.log", 0o644, libc::O_WRONLY, ME)
        .await
        .expect("create");
    let b = fs
        .open(attr.ino, libc::O_WRONLY | libc::O_APPEND, ME)
        .await
        .expect("second writer");
    fs.write(a.fh, 0, b"from a\n").await.expect("a");
    fs.write(b.fh, 7, b"from b\n").await.expect("b");
    fs.flush(a.fh, 0).await.expect("a closes");
    fs.release(a.fh).await.expect("a released");
    assert!(srv.get_object("shared.log").is_none());
    fs.write(b.fh, 14, b"b again\n").await.expect("b");
    fs.flush(b.fh, 0).await.expect("b closes");
    assert_eq!(
        srv.get_object("shared.log").as_deref(),
        Some(&b"from a\nfrom b\nb again\n"[..])
    );
    fs.release(b.fh).await.expect("b released");
    assert_eq!(srv.count("PutObject"), 1);
}

#[tokio::test]
async fn an_unlinked_open_file_keeps_its_bytes_and_uploads_nothing() {
    let srv = TestServer::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let fs = fs_with(&srv, staged(&dir));
    let (attr, o) = fs
        .create(ROOT_INO, "scratch", 0o644, libc::O_RDWR, ME)
        .await
        .expect("create");
    let before = data(11 * MIB, 6);
    write_all(&fs, o.fh, 0, &before).await;
    fs.unlink(ROOT_INO, "scratch").await.expect("unlink");
    assert!(srv.multipart_uploads().is_empty(), "its upload is aborted");
    assert_eq!(read_range(&fs, o.fh, 0, before.len()).await, before);
    let after = data(6 * MIB, 7);
    write_all(&fs, o.fh, before.len(), &after).await;
    assert_eq!(
        read_range(&fs, o.fh, before.len(), after.len()).await,
        after
    );
    // cut back into its first part: the upload aborted at the unlink is not aborted again
    // (that second abort got 404 NoSuchUpload and logged a warning)
    fs.setattr(attr.ino, truncate_to(MIB as u64, o.fh), ME)
        .await
        .expect("ftruncate");
    assert_eq!(read_range(&fs, o.fh, 0, MIB).await, &before[..MIB]);
    fs.flush(o.fh, 0).await.expect("close");
    fs.release(o.fh).await.expect("release");
    assert!(srv.keys().is_empty(), "{:?}", srv.keys());
    assert!(srv.multipart_uploads().is_empty());
    assert_eq!(srv.count("AbortMultipartUpload"), 1, "{:?}", srv.counts());
    // the staging area is clean again
    let left: Vec<_> = walk(dir.path());
    assert!(
        left.iter()
            .all(|p| !p.contains("/parts/") || p.ends_with("/.lock")),
        "{left:?}"
    );
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p.display().to_string());
        }
    }
    out
}

/// Ceph RGW completes an upload only when the completion names every part it holds ("total
/// parts mismatch", `InvalidPart`): after a truncate cut off parts already sent, the close
/// failed with EIO there, at every try (found by the soak against RGW). The upload now starts
/// over from the part files when that refusal comes, and only then.
#[tokio::test]
async fn a_truncate_cutting_off_sent_parts_lands_on_a_server_that_wants_every_part_named() {
    for rgw in [false, true] {
        let srv = TestServer::start().await;
        if rgw {
            srv.set_dialect(Dialect::ceph_rgw());
        }
        let dir = tempfile::tempdir().expect("tmp");
        let fs = fs_with(&srv, staged(&dir));
        let (attr, o) = fs
            .create(ROOT_INO, "cut.bin", 0o644, libc::O_RDWR, ME)
            .await
            .expect("create");
        let bytes = data(22 * MIB, 4);
        // parts go while the file is written; the third to reach the server is stored, its
        // answer held: still in flight for the mount when the truncate cuts it off
        let gate = Gate::new();
        srv.add_fault(
            Fault {
                skip: 2,
                ..Fault::new(FaultKind::HoldResponse(gate.clone()))
            }
            .op("UploadPart")
            .times(1),
        );
        write_all(&fs, o.fh, 0, &bytes).await;
        gate.held().await;
        let size = 7 * MIB + 5;
        fs.setattr(attr.ino, truncate_to(size as u64, o.fh), ME)
            .await
            .expect("ftruncate into part 2");
        gate.open();
        fs.flush(o.fh, 0).await.expect("close lands");
        fs.release(o.fh).await.expect("release");
        assert_eq!(
            srv.get_object("cut.bin").as_deref(),
            Some(&bytes[..size]),
            "rgw: {rgw}"
        );
        assert!(srv.multipart_uploads().is_empty(), "rgw: {rgw}");
        let (completes, aborts) = (
            srv.count("CompleteMultipartUpload"),
            srv.count("AbortMultipartUpload"),
        );
        // refused once, then a new upload; elsewhere the first completion lands
        let want = if rgw { (2, 1) } else { (1, 0) };
        assert_eq!((completes, aborts), want, "rgw: {rgw}: {:?}", srv.counts());
    }
}

#[tokio::test]
async fn truncate_down_into_parts_already_sent_then_write_on() {
    let srv = TestServer::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let fs = fs_with(&srv, staged(&dir));
    let (attr, o) = fs
        .create(ROOT_INO, "t.bin", 0o644, libc::O_RDWR, ME)
        .await
        .expect("create");
    let mut want = data(17 * MIB, 8);
    write_all(&fs, o.fh, 0, &want).await;
    // into the second part, then on
    fs.setattr(attr.ino, truncate_to((7 * MIB) as u64, o.fh), ME)
        .await
        .expect("truncate");
    want.truncate(7 * MIB);
    let more = data(3 * MIB, 9);
    write_all(&fs, o.fh, want.len(), &more).await;
    want.extend_from_slice(&more);
    assert_eq!(read_range(&fs, o.fh, 0, want.len() + 10).await, want);
    fs.fsync(o.fh).await.expect("fsync");
    assert_eq!(srv.get_object("t.bin").as_deref(), Some(&want[..]));
    fs.flush(o.fh, 0).await.expect("close");
    fs.release(o.fh).await.expect("release");

    // back under one part: a single PutObject, no multipart upload left open
    let (attr, o) = fs
        .create(ROOT_INO, "u.bin", 0o644, libc::O_RDWR, ME)
        .await
        .expect("create");
    write_all(&fs, o.fh, 0, &data(12 * MIB, 10)).await;
    fs.setattr(attr.ino, truncate_to(1000, o.fh), ME)
        .await
        .expect("truncate");
    srv.reset_counts();
    fs.flush(o.fh, 0).await.expect("close");
    fs.release(o.fh).await.expect("release");
    assert_eq!(
        srv.get_object("u.bin").as_deref(),
        Some(&data(12 * MIB, 10)[..1000])
    );
    assert_eq!(srv.count("PutObject"), 1, "{:?}", srv.counts());
    assert!(srv.multipart_uploads().is_empty());
}

#[tokio::test]
async fn sizes_past_the_largest_object_are_efbig_at_once() {
    let srv = TestServer::start().await;
    let fs = fs_with(&srv, FsConfig::default());
    let (attr, o) = fs
        .create(ROOT_INO, "huge", 0o644, libc::O_RDWR, ME)
        .await
        .expect("create");
    let err = fs
        .setattr(attr.ino, truncate_to(900 << 40, o.fh), ME)
        .await
        .expect_err("900 TiB");
    assert_eq!(err.errno, libc::EFBIG);
    let err = fs.write(o.fh, 6 << 40, b"x").await.expect_err("at 6 TiB");
    assert_eq!(err.errno, libc::EFBIG);
    fs.write(o.fh, 0, b"fine").await.expect("write");
    fs.flush(o.fh, 0).await.expect("close");
    fs.release(o.fh).await.expect("release");
    assert_eq!(srv.get_object("huge").as_deref(), Some(&b"fine"[..]));
    assert!(srv.multipart_uploads().is_empty());
}

#[tokio::test]
async fn renaming_a_large_file_while_it_streams_lands_it_under_the_new_name() {
    let srv = TestServer::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let fs = fs_with(&srv, staged(&dir));
    let (_, o) = fs
        .create(ROOT_INO, "part.tmp", 0o644, libc::O_WRONLY, ME)
        .await
        .expect("create");
    let first = data(12 * MIB, 11);
    write_all(&fs, o.fh, 0, &first).await;
    fs.rename(ROOT_INO, "part.tmp", ROOT_INO, "final.bin", 0)
        .await
        .expect("rename while streaming");
    let rest = data(3 * MIB, 12);
    write_all(&fs, o.fh, first.len(), &rest).await;
    fs.flush(o.fh, 0).await.expect("close");
    fs.release(o.fh).await.expect("release");
    let mut want = first;
    want.extend_from_slice(&rest);
    assert_eq!(srv.get_object("final.bin").as_deref(), Some(&want[..]));
    assert!(srv.get_object("part.tmp").is_none());
    assert!(srv.multipart_uploads().is_empty());
}

/// A file written and not flushed (closed by a child, or written through a mapping), whose
/// release is uploading it and is held there by `gate` (its PutObject made and held back).
async fn a_release_held_in_its_upload(
    srv: &TestServer,
    fs: &Arc<Filesystem>,
    name: &str,
    bytes: &'static [u8],
) -> (Gate, tokio::task::JoinHandle<bucketfs::fs::FsResult<()>>) {
    let (_, o) = fs
        .create(ROOT_INO, name, 0o644, libc::O_WRONLY, ME)
        .await
        .expect("create");
    fs.write(o.fh, 0, bytes).await.expect("write");
    let gate = Gate::new();
    srv.add_fault(
        Fault::new(FaultKind::HoldResponse(gate.clone()))
            .op("PutObject")
            .times(1),
    );
    let release = tokio::spawn({
        let fs = fs.clone();
        async move { fs.release(o.fh).await }
    });
    gate.held().await;
    (gate, release)
}

/// Spawn `op` (a rename or unlink) and return once it waits for a file's release; it must
/// not end before that.
async fn waiting_for_a_release(
    fs: &Arc<Filesystem>,
    op: impl std::future::Future<Output = bucketfs::fs::FsResult<()>> + Send + 'static,
) -> tokio::task::JoinHandle<bucketfs::fs::FsResult<()>> {
    let mut task = tokio::spawn(op);
    tokio::select! {
        _ = fs.an_operation_waits_for_a_release() => {}
        r = &mut task => panic!("it ended without waiting for the release: {r:?}"),
    }
    task
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rename_right_after_close_waits_for_the_release_still_uploading_the_file() {
    // rsync renames its temporary file as soon as close returns, and the kernel sends the
    // release on its own: a rename between the two found no writer and no settled file, moved
    // nothing and deleted the object the release had uploaded (files lost after rsync)
    let srv = TestServer::start().await;
    let fs = fs_with(&srv, FsConfig::default());
    let (gate, release) = a_release_held_in_its_upload(&srv, &fs, ".f.x1", b"rsync's bytes").await;
    let rename = waiting_for_a_release(&fs, {
        let fs = fs.clone();
        async move { fs.rename(ROOT_INO, ".f.x1", ROOT_INO, "f", 0).await }
    })
    .await;
    gate.open();
    release.await.expect("task").expect("release");
    rename.await.expect("task").expect("rename");
    assert_eq!(srv.get_object("f").as_deref(), Some(&b"rsync's bytes"[..]));
    assert!(srv.get_object(".f.x1").is_none(), "{:?}", srv.keys());
    let f = fs.lookup(ROOT_INO, "f").await.expect("lookup");
    let o = fs.open(f.ino, libc::O_RDONLY, ME).await.expect("open");
    assert_eq!(read_range(&fs, o.fh, 0, 100).await, b"rsync's bytes");
    fs.release(o.fh).await.expect("release");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_for_writing_while_the_release_uploads_the_file_waits_for_it() {
    // `echo a > f; echo b >> f` with the first release still uploading: the second open found
    // the file written with no writer to join, and failed with EBUSY
    let srv = TestServer::start().await;
    let fs = fs_with(&srv, FsConfig::default());
    let (gate, release) = a_release_held_in_its_upload(&srv, &fs, "f", b"a\n").await;
    let ino = fs.lookup(ROOT_INO, "f").await.expect("lookup").ino;
    let open = waiting_for_a_release(&fs, {
        let fs = fs.clone();
        async move {
            let o = fs.open(ino, libc::O_WRONLY | libc::O_APPEND, ME).await?;
            fs.write(o.fh, 2, b"b\n").await?;
            fs.flush(o.fh, 0).await?;
            fs.release(o.fh).await
        }
    })
    .await;
    gate.open();
    release.await.expect("task").expect("release");
    open.await.expect("task").expect("open, append, close");
    assert_eq!(srv.get_object("f").as_deref(), Some(&b"a\nb\n"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rename_after_close_and_before_the_release_copies_the_uploaded_object() {
    // rsync: close (the object is uploaded), rename at once, the kernel's release after that.
    // Pointing the writer at the new name deleted the uploaded object and sent the bytes again
    // at the release: in between, a file whose close had succeeded was under no key. An
    // older version under the new name (rsync updating a file) stays until the copy replaces it
    let srv = TestServer::start().await;
    srv.put_object("g", "older version");
    let fs = fs_with(&srv, FsConfig::default());
    let (_, o) = fs
        .create(ROOT_INO, ".g.x2", 0o644, libc::O_WRONLY, ME)
        .await
        .expect("create");
    fs.write(o.fh, 0, b"closed bytes").await.expect("write");
    fs.flush(o.fh, 0).await.expect("close");
    srv.reset_counts();
    let rename = waiting_for_a_release(&fs, {
        let fs = fs.clone();
        async move { fs.rename(ROOT_INO, ".g.x2", ROOT_INO, "g", 0).await }
    })
    .await;
    assert_eq!(
        srv.get_object(".g.x2").as_deref(),
        Some(&b"closed bytes"[..]),
        "the closed file left the bucket"
    );
    assert_eq!(
        srv.get_object("g").as_deref(),
        Some(&b"older version"[..]),
        "the target went before the copy"
    );
    fs.release(o.fh).await.expect("release");
    rename.await.expect("task").expect("rename");
    assert_eq!(srv.count("PutObject"), 0, "sent again: {:?}", srv.counts());
    assert_eq!(srv.count("CopyObject"), 1, "{:?}", srv.counts());
    assert_eq!(srv.count("DeleteObject"), 1, "{:?}", srv.counts());
    assert_eq!(srv.keys(), vec!["g".to_string()]);
    assert_eq!(srv.get_object("g").as_deref(), Some(&b"closed bytes"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unlink_right_after_close_waits_for_the_release_still_uploading_the_file() {
    // else the release's object lands after the unlink, and the removed file is back
    let srv = TestServer::start().await;
    let fs = fs_with(&srv, FsConfig::default());
    let (gate, release) = a_release_held_in_its_upload(&srv, &fs, "gone", b"bytes").await;
    let unlink = waiting_for_a_release(&fs, {
        let fs = fs.clone();
        async move { fs.unlink(ROOT_INO, "gone").await }
    })
    .await;
    gate.open();
    release.await.expect("task").expect("release");
    unlink.await.expect("task").expect("unlink");
    assert!(srv.keys().is_empty(), "{:?}", srv.keys());
    let err = fs.lookup(ROOT_INO, "gone").await.expect_err("removed");
    assert_eq!(err.errno, libc::ENOENT);
}

#[tokio::test]
async fn a_directory_renamed_while_a_file_in_it_is_written_takes_the_file_along() {
    let srv = TestServer::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let fs = fs_with(&srv, staged(&dir));
    let d = fs.mkdir(ROOT_INO, "d", 0o755, ME).await.expect("mkdir");
    let (_, o) = fs
        .create(d.ino, "f", 0o644, libc::O_WRONLY, ME)
        .await
        .expect("create");
    let first = data(11 * MIB, 13);
    write_all(&fs, o.fh, 0, &first).await;
    fs.rename(ROOT_INO, "d", ROOT_INO, "e", 0)
        .await
        .expect("rename the directory");
    let rest = data(MIB, 14);
    write_all(&fs, o.fh, first.len(), &rest).await;
    fs.flush(o.fh, 0).await.expect("close");
    fs.release(o.fh).await.expect("release");
    let mut want = first;
    want.extend_from_slice(&rest);
    assert_eq!(srv.get_object("e/f").as_deref(), Some(&want[..]));
    assert!(
        srv.keys().iter().all(|k| !k.starts_with("d/")),
        "{:?}",
        srv.keys()
    );
    assert!(srv.multipart_uploads().is_empty());
}

#[tokio::test]
async fn a_small_cache_size_holds_while_large_files_are_written() {
    let srv = TestServer::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let limit = 12 * MIB as u64;
    let fs = fs_with(
        &srv,
        FsConfig {
            cache_size: limit,
            ..staged(&dir)
        },
    );
    let (attr, o) = fs
        .create(ROOT_INO, "big.bin", 0o644, libc::O_RDWR, ME)
        .await
        .expect("create");
    let want = data(40 * MIB, 15);
    let mut peak = 0;
    for (i, chunk) in want.chunks(MIB).enumerate() {
        fs.write(o.fh, (i * MIB) as u64, chunk)
            .await
            .expect("write");
        peak = peak.max(fs.staging_used());
    }
    // the sent parts were dropped from the staging area to make room
    assert!(peak <= limit, "staged {peak} > {limit}");
    assert_eq!(fs.staging_overruns(), 0);
    let err = fs.write(o.fh, 10, b"x").await.expect_err("part 1 is gone");
    assert_eq!(err.errno, libc::EINVAL);
    let err = fs.read(o.fh, 10, 10).await.expect_err("part 1 is gone");
    assert_eq!(err.errno, libc::EIO);
    fs.flush(o.fh, 0).await.expect("close");
    fs.release(o.fh).await.expect("release");
    assert_eq!(srv.get_object("big.bin").as_deref(), Some(&want[..]));
    assert_eq!(fs.staging_used(), 0);
    // after the upload completed, the file is read and written as usual
    let o = fs.open(attr.ino, libc::O_RDWR, ME).await.expect("reopen");
    fs.write(o.fh, 10, b"x").await.expect("write");
    fs.flush(o.fh, 0).await.expect("close");
    fs.release(o.fh).await.expect("release");
    let mut changed = want.clone();
    changed[10] = b'x';
    assert_eq!(srv.get_object("big.bin").as_deref(), Some(&changed[..]));
    assert_eq!(
        fs.staging_used(),
        0,
        "the in-place change gave its room back"
    );
}

#[tokio::test]
async fn writers_beyond_the_cache_size_wait_for_uploads_then_go_on() {
    let srv = TestServer::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let fs = fs_with(
        &srv,
        FsConfig {
            cache_size: 12 * MIB as u64,
            ..staged(&dir)
        },
    );
    let mut tasks = Vec::new();
    for w in 0..4u8 {
        let fs = fs.clone();
        tasks.push(tokio::spawn(async move {
            let name = format!("w{w}");
            let (_, o) = fs
                .create(ROOT_INO, &name, 0o644, libc::O_WRONLY, ME)
                .await
                .expect("create");
            write_all(&fs, o.fh, 0, &data(20 * MIB, 20 + w)).await;
            fs.flush(o.fh, 0).await.expect("close");
            fs.release(o.fh).await.expect("release");
        }));
    }
    for t in tasks {
        t.await.expect("writer");
    }
    for w in 0..4u8 {
        assert_eq!(
            srv.get_object(&format!("w{w}")).as_deref(),
            Some(&data(20 * MIB, 20 + w)[..])
        );
    }
    assert_eq!(fs.staging_used(), 0);
    assert_eq!(
        fs.staging_overruns(),
        0,
        "the writers waited for room, never in vain"
    );
}

#[tokio::test]
async fn a_reader_of_a_file_fsynced_and_kept_open_does_not_wait_for_its_release() {
    // `tail -f` of a log whose writer fsyncs each line: the writer is clean (committed) but
    // still open, so a reader's open must not wait for a release that is not coming
    let srv = TestServer::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let fs = fs_with(
        &srv,
        FsConfig {
            // the wait for a closing writer's release, made longer than the test's deadline
            release_wait: std::time::Duration::from_secs(3600),
            ..staged(&dir)
        },
    );
    let (attr, w) = fs
        .create(ROOT_INO, "app.log", 0o644, libc::O_WRONLY, ME)
        .await
        .expect("create");
    fs.write(w.fh, 0, b"line one\n").await.expect("write");
    fs.fsync(w.fh).await.expect("fsync");
    let open = fs.open(attr.ino, libc::O_RDONLY, ME);
    let r = tokio::time::timeout(std::time::Duration::from_secs(20), open)
        .await
        .expect("the reader's open waited for the writer's release")
        .expect("open for reading");
    assert_eq!(read_range(&fs, r.fh, 0, 100).await, b"line one\n");
    fs.release(r.fh).await.expect("release reader");
    fs.flush(w.fh, 0).await.expect("close");
    fs.release(w.fh).await.expect("release");
}

#[tokio::test]
async fn reads_of_a_file_open_for_writing_go_through_the_data_cache() {
    // a database opened read-write reads its pages from untouched ranges of the object
    let srv = TestServer::start().await;
    let dir = tempfile::tempdir().expect("cache dir");
    let fs = fs_with(&srv, staged(&dir));
    // larger than a part: changed in place, untouched ranges read from the object
    let old = data(12 * MIB, 9);
    srv.put_object("db", old.clone());
    let ino = fs.lookup(ROOT_INO, "db").await.expect("lookup").ino;
    let o = fs.open(ino, libc::O_RDWR, ME).await.expect("open rw");
    let gets = srv.count("GetObject");
    assert!(read_range(&fs, o.fh, MIB + 100, 4096).await == old[MIB + 100..MIB + 4196]);
    assert_eq!(srv.count("GetObject"), gets + 1, "one GET, of the block");
    // the rest of that block: kept from the first GET
    fs.settle_data_cache().await;
    assert!(read_range(&fs, o.fh, MIB + 200_000, 4096).await == old[MIB + 200_000..MIB + 204_096]);
    assert_eq!(
        srv.count("GetObject"),
        gets + 1,
        "no GET: the block was kept"
    );
    fs.release(o.fh).await.expect("release");
}

#[tokio::test]
async fn a_close_is_routed_by_one_size_rule_a_part_s_size() {
    // the adapter answers a reader's close and a small file's on its own thread, and sends a
    // close that waits for part files or an upload's completion to the runtime; writes past
    // the first part go there too, by the same rule
    use bucketfs::fs::CloseRoute;
    let srv = TestServer::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let fs = fs_with(&srv, staged(&dir));
    let part = 5 * MIB;
    let (attr, o) = fs
        .create(ROOT_INO, "f", 0o644, libc::O_WRONLY, ME)
        .await
        .expect("create");
    assert_eq!(fs.close_route(o.fh), CloseRoute::Here, "an empty file");
    assert!(!fs.write_goes_away(part as u64 - 1));
    write_all(&fs, o.fh, 0, &data(part - 1, 3)).await;
    assert_eq!(
        fs.close_route(o.fh),
        CloseRoute::Here,
        "one byte short of a part"
    );
    assert!(
        fs.write_goes_away(part as u64),
        "the write that fills a part sends it"
    );
    fs.write(o.fh, part as u64 - 1, b"x").await.expect("write");
    assert_eq!(
        srv.count("CreateMultipartUpload"),
        1,
        "the full part went out"
    );
    assert_eq!(fs.close_route(o.fh), CloseRoute::Away, "a part's size");
    let r = fs.open(attr.ino, libc::O_RDONLY, ME).await.expect("open");
    assert_eq!(fs.close_route(r.fh), CloseRoute::Reader);
    fs.flush(r.fh, 0).await.expect("reader's close");
    fs.flush(o.fh, 0).await.expect("close");
    assert_eq!(srv.count("CompleteMultipartUpload"), 1);

    let wb = tempfile::tempdir().expect("tmp");
    let fs = fs_with(
        &srv,
        FsConfig {
            write_back: true,
            ..staged(&wb)
        },
    );
    let (_, o) = fs
        .create(ROOT_INO, "g", 0o644, libc::O_WRONLY, ME)
        .await
        .expect("create");
    assert_eq!(
        fs.close_route(o.fh),
        CloseRoute::Away,
        "--write-back fsyncs at close"
    );
    assert!(
        !fs.write_goes_away(4 * part as u64),
        "--write-back writes stay"
    );
}

#[tokio::test]
async fn a_writer_short_of_memory_goes_on_when_any_part_in_flight_is_done() {
    // a server whose parts take uneven times (Ceph RGW): the first part's UploadPart is held;
    // the parts after it are done, and their room lets the writer go on. Waiting for the
    // oldest part instead kept the writer standing still until the first came back.
    let srv = TestServer::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = FsConfig {
        max_memory: 24 * MIB as u64,
        ..staged(&dir)
    };
    // the held part must not time out and go again (that would let a waiting writer go on)
    let client = core_fs::client_with(&srv, |c| {
        c.read_timeout = std::time::Duration::from_secs(600)
    });
    let fs = Filesystem::new(core_fs::isolated(cfg), client);
    let gate = Gate::new();
    srv.add_fault(
        Fault::new(FaultKind::HoldRequest(gate.clone()))
            .op("UploadPart")
            .times(1),
    );
    let (_, o) = fs
        .create(ROOT_INO, "big", 0o644, libc::O_WRONLY, ME)
        .await
        .expect("create");
    let want = data(12 * 5 * MIB, 7);
    let writer = tokio::spawn({
        let (fs, want) = (fs.clone(), want.clone());
        async move { write_all(&fs, o.fh, 0, &want).await }
    });
    gate.held().await;
    // a failure guard, not a wait: with the first part held for good, the writes end only if
    // the writer does not wait for that part (12 parts of 5 MiB through a 24 MiB budget)
    tokio::time::timeout(std::time::Duration::from_secs(120), writer)
        .await
        .expect("the writer stood still behind the held first part")
        .expect("writer task");
    assert!(
        srv.count("UploadPart") >= 8,
        "the later parts went out meanwhile: {}",
        srv.count("UploadPart")
    );
    gate.open();
    fs.flush(o.fh, 0).await.expect("close");
    fs.release(o.fh).await.expect("release");
    assert_eq!(srv.get_object("big").as_deref(), Some(&want[..]));
}

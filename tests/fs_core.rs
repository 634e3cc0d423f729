//! The filesystem core driven directly (no kernel mount) against the SigV4-checking test server:
//! what each operation does in the bucket and how many requests it costs.

use std::sync::Arc;
use std::time::Duration;

use bucketfs::config::FsConfig;
use bucketfs::fs::{Attr, FileKind, Filesystem, ROOT_INO};
use bucketfs::s3::{S3Client, S3Config, StaticCredentials};
use bucketfs_test_server::{Fault, FaultKind, Gate, TestServer};

#[path = "common/core.rs"]
mod core_fs;
use core_fs::{dir_names, fs_with, journaled, read_rest, write_file, ME};

fn fs(srv: &TestServer) -> Arc<Filesystem> {
    fs_with(srv, FsConfig::default())
}

#[tokio::test]
async fn cold_lookup_costs_head_and_list_and_listed_names_cost_less() {
    let srv = TestServer::start().await;
    srv.put_object("d/f1", "one");
    srv.put_object("d/f2", "two");
    let fs = fs(&srv);
    srv.reset_counts();
    let d = fs.lookup(ROOT_INO, "d").await.expect("lookup d");
    assert_eq!(d.kind, FileKind::Directory);
    // HEAD (one attempt) and LIST go out together
    assert!(srv.count("HeadObject") <= 1);
    assert_eq!(srv.count("ListObjectsV2"), 1);

    let fh = fs.opendir(d.ino).await.expect("opendir");
    let entries = fs.readdir(d.ino, fh, 0).await.expect("readdir");
    let names: Vec<_> = entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, vec![".", "..", "f1", "f2"]);
    fs.releasedir(fh);

    srv.reset_counts();
    // a name absent from a fresh listing: no request at all
    let err = fs.lookup(d.ino, "nope").await.expect_err("missing");
    assert_eq!(err.errno, libc::ENOENT);
    assert_eq!(srv.total_requests(), 0, "{:?}", srv.counts());
    // a listed file: one request for its metadata (a small one's is a GET: see below), no LIST
    let f1 = fs.lookup(d.ino, "f1").await.expect("f1");
    assert_eq!(f1.size, 3);
    assert_eq!(metadata_requests(&srv), 1, "{:?}", srv.counts());
    assert_eq!(srv.count("ListObjectsV2"), 0);
    // and a second lookup within the TTL is free
    srv.reset_counts();
    fs.lookup(d.ino, "f1").await.expect("f1 again");
    assert_eq!(srv.total_requests(), 0);
}

/// Look up the directory `name` in the root and list it once, as `ls` would.
async fn listed_dir(fs: &Filesystem, name: &str) -> bucketfs::fs::Attr {
    let d = fs.lookup(ROOT_INO, name).await.expect("lookup dir");
    let fh = fs.opendir(d.ino).await.expect("opendir");
    fs.readdir(d.ino, fh, 0).await.expect("readdir");
    fs.releasedir(fh);
    d
}

/// `len` bytes that are not all alike.
fn common_pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

/// HEADs and GETs: a small listed file's metadata comes with a GET of its body.
fn metadata_requests(srv: &TestServer) -> u64 {
    srv.count("HeadObject") + srv.count("GetObject")
}

#[tokio::test]
async fn a_small_listed_file_is_read_with_the_request_for_its_attributes() {
    let srv = TestServer::start().await;
    let small = common_pattern(20_000);
    let big = common_pattern(200_000);
    srv.put_object("d/small.bin", small.clone());
    srv.put_object("d/big.bin", big.clone());
    let fs = fs(&srv);
    let d = listed_dir(&fs, "d").await;

    // small: lookup + open + read = one GET, no HEAD
    srv.reset_counts();
    let f = fs.lookup(d.ino, "small.bin").await.expect("small");
    let o = fs.open(f.ino, libc::O_RDONLY, ME).await.expect("open");
    let got = fs.read(o.fh, 0, 1 << 20).await.expect("read");
    fs.release(o.fh).await.expect("release");
    assert_eq!(&got[..], &small[..]);
    assert_eq!(srv.count("GetObject"), 1, "{:?}", srv.counts());
    assert_eq!(srv.total_requests(), 1, "{:?}", srv.counts());

    // big: a HEAD at lookup, the bytes when read
    srv.reset_counts();
    let f = fs.lookup(d.ino, "big.bin").await.expect("big");
    // (a small file's attributes come with a GET of its body, which the read then uses)
    assert_eq!(srv.total_requests(), 1, "{:?}", srv.counts());
    assert_eq!(srv.count("GetObject"), 0, "{:?}", srv.counts());
    let o = fs.open(f.ino, libc::O_RDONLY, ME).await.expect("open");
    let got = fs.read(o.fh, 0, 1 << 20).await.expect("read");
    fs.release(o.fh).await.expect("release");
    assert_eq!(&got[..], &big[..]);
}

#[tokio::test]
async fn a_listed_symlink_is_resolved_with_the_request_for_its_attributes() {
    let srv = TestServer::start().await;
    let writer = fs(&srv);
    let d = writer.mkdir(ROOT_INO, "d", 0o755, ME).await.expect("mkdir");
    writer
        .symlink(d.ino, "link", "../some/target", ME)
        .await
        .expect("symlink");
    // a fresh mount lists the directory, then `ls -l` stats and reads the link
    let fs = fs(&srv);
    let d = listed_dir(&fs, "d").await;
    srv.reset_counts();
    let link = fs.lookup(d.ino, "link").await.expect("lookup link");
    assert_eq!(link.kind, FileKind::Symlink);
    let target = fs.readlink(link.ino).await.expect("readlink");
    assert_eq!(target, b"../some/target");
    assert_eq!(srv.total_requests(), 1, "{:?}", srv.counts());
}

#[tokio::test]
async fn a_small_listed_file_that_grew_meanwhile_is_read_whole() {
    let srv = TestServer::start().await;
    srv.put_object("d/grows.bin", "tiny");
    let fs = fs(&srv);
    let d = listed_dir(&fs, "d").await;
    // another client replaces it with a big object after the listing
    let big = common_pattern(300_000);
    srv.put_object("d/grows.bin", big.clone());
    let f = fs.lookup(d.ino, "grows.bin").await.expect("lookup");
    assert_eq!(f.size, 300_000);
    let o = fs.open(f.ino, libc::O_RDONLY, ME).await.expect("open");
    let mut got = Vec::new();
    while got.len() < big.len() {
        let part = fs
            .read(o.fh, got.len() as u64, 128 * 1024)
            .await
            .expect("read");
        assert!(!part.is_empty());
        got.extend_from_slice(&part);
    }
    fs.release(o.fh).await.expect("release");
    assert_eq!(got, big);
}

#[tokio::test]
async fn a_small_file_replaced_elsewhere_is_read_in_its_new_version_once_attributes_expire() {
    let srv = TestServer::start().await;
    srv.put_object("d/s.txt", "first");
    let fs = fs_with(
        &srv,
        FsConfig {
            metadata_ttl: Duration::ZERO,
            ..FsConfig::default()
        },
    );
    let d = listed_dir(&fs, "d").await;
    let f = fs.lookup(d.ino, "s.txt").await.expect("lookup");
    // replaced by another client: the open sees the new version, never the kept body
    srv.put_object("d/s.txt", "second");
    let o = fs.open(f.ino, libc::O_RDONLY, ME).await.expect("open");
    let got = fs.read(o.fh, 0, 100).await.expect("read");
    assert_eq!(&got[..], b"second");
}

#[tokio::test]
async fn small_file_is_one_put_with_s3fs_metadata() {
    let srv = TestServer::start().await;
    let fs = fs(&srv);
    srv.reset_counts();
    write_file(&fs, ROOT_INO, "notes.txt", b"hello world").await;
    assert_eq!(srv.count("PutObject"), 1, "{:?}", srv.counts());
    assert_eq!(srv.count("CreateMultipartUpload"), 0);
    assert_eq!(
        srv.get_object("notes.txt").as_deref(),
        Some(&b"hello world"[..])
    );
    let meta = srv.object_meta("notes.txt").expect("meta");
    assert_eq!(meta.content_type.as_deref(), Some("text/plain"));
    let m = &meta.metadata;
    assert_eq!(m.get("mode").map(String::as_str), Some("33184")); // 0100640
    assert_eq!(m.get("uid").map(String::as_str), Some("1000"));
    assert_eq!(m.get("gid").map(String::as_str), Some("1000"));
    assert!(m.get("mtime").is_some_and(|t| t.parse::<u64>().is_ok()));
}

#[tokio::test]
async fn empty_file_exists_after_close() {
    let srv = TestServer::start().await;
    let fs = fs(&srv);
    write_file(&fs, ROOT_INO, "empty", b"").await;
    assert_eq!(srv.get_object("empty").map(|b| b.len()), Some(0));
}

#[tokio::test]
async fn large_file_streams_parts_while_writing() {
    let srv = TestServer::start().await;
    let cfg = FsConfig {
        part_size: 5 * 1024 * 1024,
        ..FsConfig::default()
    };
    let fs = fs_with(&srv, cfg);
    let data: Vec<u8> = (0..(12 * 1024 * 1024 + 7))
        .map(|i| (i % 251) as u8)
        .collect();
    srv.reset_counts();
    write_file(&fs, ROOT_INO, "big.bin", &data).await;
    assert_eq!(srv.count("CreateMultipartUpload"), 1);
    assert_eq!(srv.count("UploadPart"), 3);
    assert_eq!(srv.count("CompleteMultipartUpload"), 1);
    assert_eq!(srv.count("PutObject"), 0);
    let meta = srv.object_meta("big.bin").expect("meta");
    assert!(
        meta.etag.ends_with("-3") || meta.etag.ends_with("-3\""),
        "{}",
        meta.etag
    );
    assert_eq!(srv.get_object("big.bin").as_deref(), Some(&data[..]));
    // the attributes now are those of the uploaded object
    let attr = fs.lookup(ROOT_INO, "big.bin").await.expect("lookup");
    assert_eq!(attr.size, data.len() as u64);
    assert_eq!(attr.perm, 0o640);
}

#[tokio::test]
async fn failing_upload_part_gives_eio_at_close_and_no_object() {
    let srv = TestServer::start().await;
    let cfg = FsConfig {
        part_size: 5 * 1024 * 1024,
        ..FsConfig::default()
    };
    let fs = fs_with(&srv, cfg);
    srv.add_fault(Fault::new(FaultKind::internal_error()).op("UploadPart"));
    let (_, o) = fs
        .create(ROOT_INO, "doomed.bin", 0o644, libc::O_WRONLY, ME)
        .await
        .expect("create");
    let chunk = vec![7u8; 1024 * 1024];
    let mut write_err = None;
    for i in 0..11u64 {
        if let Err(e) = fs.write(o.fh, i * chunk.len() as u64, &chunk).await {
            write_err = Some(e);
            break;
        }
    }
    let close = fs.flush(o.fh, 0).await;
    let errno = write_err.or(close.err()).expect("an error").errno;
    assert_eq!(errno, libc::EIO);
    let _ = fs.release(o.fh).await;
    srv.clear_faults();
    assert!(srv.get_object("doomed.bin").is_none());
    // the failed file stays in the mount (tests/fs_servers.rs); removing it aborts its upload
    fs.unlink(ROOT_INO, "doomed.bin").await.expect("unlink");
    assert!(srv.multipart_uploads().is_empty(), "upload not aborted");
}

#[tokio::test]
async fn access_denied_on_write_is_eacces() {
    let srv = TestServer::start().await;
    let fs = fs(&srv);
    srv.add_fault(Fault::new(FaultKind::access_denied()).op("PutObject"));
    let (_, o) = fs
        .create(ROOT_INO, "secret.txt", 0o644, libc::O_WRONLY, ME)
        .await
        .expect("create");
    fs.write(o.fh, 0, b"x").await.expect("write is buffered");
    let err = fs.flush(o.fh, 0).await.expect_err("denied");
    assert_eq!(err.errno, libc::EACCES);
    let _ = fs.release(o.fh).await;
    assert!(srv.get_object("secret.txt").is_none());
}

#[tokio::test]
async fn mkdir_rmdir_unlink_and_enotempty() {
    let srv = TestServer::start().await;
    let fs = fs(&srv);
    let d = fs.mkdir(ROOT_INO, "dir", 0o750, ME).await.expect("mkdir");
    assert!(srv.get_object("dir/").is_some(), "marker written");
    assert_eq!(
        srv.object_meta("dir/")
            .and_then(|m| m.metadata.get("mode").cloned()),
        Some((libc::S_IFDIR | 0o750).to_string())
    );
    let exists = fs
        .mkdir(ROOT_INO, "dir", 0o750, ME)
        .await
        .expect_err("exists");
    assert_eq!(exists.errno, libc::EEXIST);
    write_file(&fs, d.ino, "f", b"data").await;
    let err = fs.rmdir(ROOT_INO, "dir").await.expect_err("not empty");
    assert_eq!(err.errno, libc::ENOTEMPTY);
    let err = fs.unlink(ROOT_INO, "dir").await.expect_err("is dir");
    assert_eq!(err.errno, libc::EISDIR);
    fs.unlink(d.ino, "f").await.expect("unlink");
    assert!(srv.get_object("dir/f").is_none());
    fs.rmdir(ROOT_INO, "dir").await.expect("rmdir");
    assert!(srv.keys().is_empty(), "{:?}", srv.keys());
    let err = fs.lookup(ROOT_INO, "dir").await.expect_err("gone");
    assert_eq!(err.errno, libc::ENOENT);
}

#[tokio::test]
async fn names_over_255_bytes_are_refused() {
    let srv = TestServer::start().await;
    let fs = fs(&srv);
    let long = "n".repeat(256);
    let err = fs.lookup(ROOT_INO, &long).await.expect_err("too long");
    assert_eq!(err.errno, libc::ENAMETOOLONG);
    let err = fs
        .create(ROOT_INO, &long, 0o644, libc::O_WRONLY, ME)
        .await
        .expect_err("too long");
    assert_eq!(err.errno, libc::ENAMETOOLONG);
}

fn patch_fs(srv: &TestServer) -> Arc<Filesystem> {
    fs_with(
        srv,
        FsConfig {
            part_size: 5 * 1024 * 1024,
            ..FsConfig::default()
        },
    )
}

#[tokio::test]
async fn overwrite_in_the_middle_of_a_large_object_copies_the_rest_server_side() {
    let srv = TestServer::start().await;
    let mut data: Vec<u8> = (0..(100 * 1024 * 1024)).map(|i| (i % 253) as u8).collect();
    srv.put_object("big", data.clone());
    let fs = patch_fs(&srv);
    let attr = fs.lookup(ROOT_INO, "big").await.expect("lookup");
    srv.reset_bytes();
    srv.reset_counts();
    let o = fs.open(attr.ino, libc::O_WRONLY, ME).await.expect("open");
    let off = 50 * 1024 * 1024 + 123;
    fs.write(o.fh, off as u64, &[0xAB; 4096])
        .await
        .expect("write");
    fs.flush(o.fh, 0).await.expect("flush");
    fs.release(o.fh).await.expect("release");
    data[off..off + 4096].fill(0xAB);
    assert_eq!(srv.get_object("big").as_deref(), Some(&data[..]));
    let moved = srv.bytes_received() + srv.bytes_sent();
    assert!(moved < 20 * 1024 * 1024, "moved {moved} bytes");
    // the untouched runs before and after the changed part: one copy each
    assert_eq!(srv.count("UploadPartCopy"), 2, "{:?}", srv.counts());
    assert_eq!(srv.count("UploadPart"), 1);
}

#[tokio::test]
async fn append_truncate_and_sparse_writes_on_large_objects() {
    let srv = TestServer::start().await;
    let mut data: Vec<u8> = (0..(20 * 1024 * 1024 + 17))
        .map(|i| (i % 241) as u8)
        .collect();
    srv.put_object("f", data.clone());
    let fs = patch_fs(&srv);
    let attr = fs.lookup(ROOT_INO, "f").await.expect("lookup");
    srv.reset_counts();
    // append
    let o = fs
        .open(attr.ino, libc::O_WRONLY | libc::O_APPEND, ME)
        .await
        .expect("open");
    fs.write(o.fh, data.len() as u64, b"x\n")
        .await
        .expect("append");
    fs.flush(o.fh, 0).await.expect("flush");
    fs.release(o.fh).await.expect("release");
    data.extend_from_slice(b"x\n");
    assert_eq!(srv.get_object("f").as_deref(), Some(&data[..]));
    // everything before the last part is one server-side copy; the last part goes up again
    assert_eq!(srv.count("UploadPartCopy"), 1, "{:?}", srv.counts());
    assert_eq!(srv.count("UploadPart"), 1, "{:?}", srv.counts());
    // a write past the end leaves a hole of zeros
    let o = fs.open(attr.ino, libc::O_RDWR, ME).await.expect("open");
    let hole_at = data.len() + 1000;
    fs.write(o.fh, hole_at as u64, b"tail")
        .await
        .expect("sparse write");
    let back = fs
        .read(o.fh, hole_at as u64 - 2, 6)
        .await
        .expect("read back");
    assert_eq!(&back[..], b"\0\0tail");
    fs.flush(o.fh, 0).await.expect("flush");
    fs.release(o.fh).await.expect("release");
    data.resize(hole_at, 0);
    data.extend_from_slice(b"tail");
    assert_eq!(srv.get_object("f").as_deref(), Some(&data[..]));
    // truncate a closed large object: shrink, then grow with zeros
    let setsize = |size| bucketfs::fs::SetAttr {
        size: Some(size),
        ..Default::default()
    };
    fs.setattr(attr.ino, setsize(7 * 1024 * 1024 + 5), ME)
        .await
        .expect("shrink");
    data.truncate(7 * 1024 * 1024 + 5);
    assert_eq!(srv.get_object("f").as_deref(), Some(&data[..]));
    fs.setattr(attr.ino, setsize(12 * 1024 * 1024), ME)
        .await
        .expect("grow");
    data.resize(12 * 1024 * 1024, 0);
    assert_eq!(srv.get_object("f").as_deref(), Some(&data[..]));
}

#[tokio::test]
async fn refused_upload_part_copy_falls_back_to_read_and_upload() {
    let srv = TestServer::start().await;
    let mut data: Vec<u8> = (0..(16 * 1024 * 1024)).map(|i| (i % 239) as u8).collect();
    srv.put_object("ev2", data.clone());
    srv.add_fault(Fault::new(FaultKind::not_implemented()).op("UploadPartCopy"));
    let fs = patch_fs(&srv);
    let attr = fs.lookup(ROOT_INO, "ev2").await.expect("lookup");
    let o = fs.open(attr.ino, libc::O_WRONLY, ME).await.expect("open");
    fs.write(o.fh, 0, b"HEAD").await.expect("write");
    fs.flush(o.fh, 0).await.expect("flush");
    fs.release(o.fh).await.expect("release");
    data[..4].copy_from_slice(b"HEAD");
    assert_eq!(srv.get_object("ev2").as_deref(), Some(&data[..]));
    // the refusal is remembered for the mount: the next edit asks for no copy at all
    let refused = srv.requests_for("UploadPartCopy").len();
    assert!(refused >= 1);
    let o = fs.open(attr.ino, libc::O_WRONLY, ME).await.expect("open");
    fs.write(o.fh, 4, b"MORE").await.expect("write");
    fs.flush(o.fh, 0).await.expect("flush");
    fs.release(o.fh).await.expect("release");
    data[4..8].copy_from_slice(b"MORE");
    assert_eq!(srv.get_object("ev2").as_deref(), Some(&data[..]));
    assert_eq!(srv.requests_for("UploadPartCopy").len(), refused);
}

#[tokio::test]
async fn a_write_over_an_object_changed_underneath_fails_instead_of_clobbering() {
    let srv = TestServer::start().await;
    srv.put_object("shared.txt", "v1");
    let fs = fs(&srv);
    let attr = fs.lookup(ROOT_INO, "shared.txt").await.expect("lookup");
    let o = fs
        .open(attr.ino, libc::O_WRONLY | libc::O_TRUNC, ME)
        .await
        .expect("open");
    fs.write(o.fh, 0, b"mine").await.expect("write");
    srv.put_object("shared.txt", "theirs");
    let err = fs.flush(o.fh, 0).await.expect_err("must not clobber");
    assert_eq!(err.errno, libc::ESTALE);
    let _ = fs.release(o.fh).await;
    assert_eq!(
        srv.get_object("shared.txt").as_deref(),
        Some(&b"theirs"[..])
    );

    // a new file whose name another client took meanwhile
    let (_, o) = fs
        .create(ROOT_INO, "race.txt", 0o644, libc::O_WRONLY, ME)
        .await
        .expect("create");
    fs.write(o.fh, 0, b"mine").await.expect("write");
    srv.put_object("race.txt", "theirs");
    let err = fs.flush(o.fh, 0).await.expect_err("must not clobber");
    assert_eq!(err.errno, libc::ESTALE);
    let _ = fs.release(o.fh).await;
    assert_eq!(srv.get_object("race.txt").as_deref(), Some(&b"theirs"[..]));
    // and PUTs carried the conditions
    let puts = srv.requests_for("PutObject");
    assert!(puts.iter().any(|r| r.header("if-none-match") == Some("*")));
    assert!(puts.iter().any(|r| r.header("if-match").is_some()));
}

#[tokio::test]
async fn rename_truncate_and_o_trunc_change_ctime() {
    let srv = TestServer::start().await;
    let fs = fs(&srv);
    let ino = write_file(&fs, ROOT_INO, "a.txt", b"hello world").await;
    let nap = || tokio::time::sleep(Duration::from_millis(20));
    let t0 = fs.getattr(ino).await.expect("stat");
    nap().await;
    fs.rename(ROOT_INO, "a.txt", ROOT_INO, "b.txt", 0)
        .await
        .expect("rename");
    let t1 = fs.getattr(ino).await.expect("stat");
    assert!(t1.ctime > t0.ctime, "rename left ctime alone");
    assert_eq!(t1.mtime, t0.mtime, "rename changed mtime");
    nap().await;
    // truncate(2) of a closed file
    let size = |n| bucketfs::fs::SetAttr {
        size: Some(n),
        ..Default::default()
    };
    let t2 = fs.setattr(ino, size(5), ME).await.expect("truncate");
    assert!(
        t2.ctime > t1.ctime && t2.mtime > t1.mtime,
        "truncate: {t2:?}"
    );
    nap().await;
    // open(O_TRUNC) of an existing file
    let opened = fs
        .open(ino, libc::O_WRONLY | libc::O_TRUNC, ME)
        .await
        .expect("open");
    let t3 = fs.getattr(ino).await.expect("stat");
    assert!(
        t3.ctime > t2.ctime && t3.mtime > t2.mtime,
        "O_TRUNC: {t3:?}"
    );
    nap().await;
    // ftruncate(2) through the open handle
    let mut ftrunc = size(3);
    ftrunc.fh = Some(opened.fh);
    let t4 = fs.setattr(ino, ftrunc, ME).await.expect("ftruncate");
    assert!(
        t4.ctime > t3.ctime && t4.mtime > t3.mtime,
        "ftruncate: {t4:?}"
    );
    fs.flush(opened.fh, 0).await.expect("flush");
    fs.release(opened.fh).await.expect("release");
    assert_eq!(srv.get_object("b.txt").as_deref(), Some(&[0u8; 3][..]));
}

#[tokio::test]
async fn mknod_stores_fifos_sockets_and_devices_as_s3fs_does() {
    let srv = TestServer::start().await;
    let fs = fs(&srv);
    let fifo = fs
        .mknod(ROOT_INO, "fifo", libc::S_IFIFO | 0o640, 0, ME)
        .await
        .expect("mkfifo");
    assert_eq!(
        (fifo.kind, fifo.perm, fifo.uid),
        (FileKind::Fifo, 0o640, 1000)
    );
    let dev = fs
        .mknod(ROOT_INO, "tty", libc::S_IFCHR | 0o600, 0x0102, ME)
        .await
        .expect("mknod c");
    assert_eq!((dev.kind, dev.rdev), (FileKind::CharDevice, 0x0102));
    fs.mknod(ROOT_INO, "sock", libc::S_IFSOCK | 0o755, 0, ME)
        .await
        .expect("mknod s");
    let err = fs
        .mknod(ROOT_INO, "fifo", libc::S_IFIFO | 0o640, 0, ME)
        .await
        .expect_err("exists");
    assert_eq!(err.errno, libc::EEXIST);
    // empty objects with the type in x-amz-meta-mode and the device in x-amz-meta-rdev
    let meta = srv.object_meta("fifo").expect("fifo object");
    assert_eq!(meta.metadata["mode"], (libc::S_IFIFO | 0o640).to_string());
    assert_eq!(srv.get_object("fifo").map(|b| b.len()), Some(0));
    assert_eq!(srv.object_meta("tty").expect("tty").metadata["rdev"], "258");
    // a fresh mount sees them as they were made
    let again = fs_with(&srv, FsConfig::default());
    let fifo = again.lookup(ROOT_INO, "fifo").await.expect("lookup");
    assert_eq!((fifo.kind, fifo.perm), (FileKind::Fifo, 0o640));
    let dev = again.lookup(ROOT_INO, "tty").await.expect("lookup");
    assert_eq!((dev.kind, dev.rdev), (FileKind::CharDevice, 0x0102));
    let sock = again.lookup(ROOT_INO, "sock").await.expect("lookup");
    assert_eq!(sock.kind, FileKind::Socket);
    // and they rename and unlink like files
    again
        .rename(ROOT_INO, "fifo", ROOT_INO, "fifo2", 0)
        .await
        .expect("rename");
    let meta = srv.object_meta("fifo2").expect("renamed fifo");
    assert_eq!(meta.metadata["mode"], (libc::S_IFIFO | 0o640).to_string());
    again.unlink(ROOT_INO, "tty").await.expect("unlink");
    assert!(srv.get_object("tty").is_none());
}

#[tokio::test]
async fn paths_over_the_s3_key_limit_are_enametoolong() {
    let srv = TestServer::start().await;
    let fs = fs(&srv);
    let name = "d".repeat(250);
    let mut parent = ROOT_INO;
    for _ in 0..4 {
        // keys of 251, 502, 753, 1004 bytes
        parent = fs.mkdir(parent, &name, 0o755, ME).await.expect("mkdir").ino;
    }
    srv.reset_counts();
    let err = fs
        .mkdir(parent, &name, 0o755, ME)
        .await
        .expect_err("key too long");
    assert_eq!(err.errno, libc::ENAMETOOLONG);
    let err = fs.lookup(parent, &name).await.expect_err("key too long");
    assert_eq!(err.errno, libc::ENAMETOOLONG);
    let err = fs
        .symlink(parent, &name, "target", ME)
        .await
        .expect_err("key too long");
    assert_eq!(err.errno, libc::ENAMETOOLONG);
    assert_eq!(srv.total_requests(), 0, "{:?}", srv.counts());
}

#[tokio::test]
async fn sequential_reads_arriving_out_of_order_fetch_each_byte_about_once() {
    let srv = TestServer::start().await;
    let size = 40 * 1024 * 1024;
    let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    srv.put_object("seq.bin", data.clone());
    let fs = fs(&srv);
    let attr = fs.lookup(ROOT_INO, "seq.bin").await.expect("lookup");
    let o = fs.open(attr.ino, libc::O_RDONLY, ME).await.expect("open");
    srv.reset_bytes();
    let req = 128 * 1024;
    let mut out = vec![0u8; size];
    // the kernel's read-ahead sends several reads at once; they may be served out of order
    for batch in (0..size / req).collect::<Vec<_>>().chunks(4) {
        let reads: Vec<_> = batch
            .iter()
            .rev()
            .map(|&i| {
                let fs = fs.clone();
                async move { (i, fs.read(o.fh, (i * req) as u64, req as u32).await) }
            })
            .collect();
        for (i, r) in futures::future::join_all(reads).await {
            out[i * req..(i + 1) * req].copy_from_slice(&r.expect("read"));
        }
    }
    assert!(out == data, "wrong bytes");
    let sent = srv.bytes_sent();
    assert!(
        sent < size as u64 * 11 / 10,
        "{sent} bytes fetched to read {size}"
    );
    fs.release(o.fh).await.expect("release");
}

#[tokio::test]
async fn rename_above_the_copy_limit_uses_a_multipart_copy() {
    use bucketfs::s3::profile::{profile, Profile, Provider};
    let srv = TestServer::start().await;
    srv.set_min_part_size(64 * 1024);
    let small: &'static Profile = Box::leak(Box::new(Profile {
        min_part_size: 64 * 1024,
        max_copy_object_size: 256 * 1024,
        ..profile(Provider::Other).clone()
    }));
    let mut cfg = S3Config::new(
        srv.endpoint(),
        "us-east-1",
        srv.bucket(),
        Arc::new(StaticCredentials {
            credentials: bucketfs::s3::Credentials {
                access_key_id: srv.access_key(),
                secret_access_key: srv.secret_key(),
                session_token: None,
            },
            origin: "test".into(),
        }),
    );
    cfg.profile = small;
    let fs = Filesystem::new(
        core_fs::isolated(FsConfig {
            part_size: 64 * 1024,
            ..FsConfig::default()
        }),
        S3Client::new(cfg).expect("client"),
    );
    let big: Vec<u8> = (0..(1024 * 1024 + 5)).map(|i| (i % 13) as u8).collect();
    srv.put_object("big", big.clone());
    srv.put_object("d/inner", big.clone());
    srv.put_object("d/small", "s");
    fs.lookup(ROOT_INO, "big").await.expect("lookup");
    srv.reset_counts();
    fs.rename(ROOT_INO, "big", ROOT_INO, "moved", 0)
        .await
        .expect("rename");
    assert!(srv.count("UploadPartCopy") >= 16, "{:?}", srv.counts());
    assert_eq!(srv.get_object("moved").as_deref(), Some(&big[..]));
    assert!(srv.get_object("big").is_none());
    fs.rename(ROOT_INO, "d", ROOT_INO, "e", 0)
        .await
        .expect("rename dir");
    assert_eq!(srv.get_object("e/inner").as_deref(), Some(&big[..]));
    assert_eq!(srv.get_object("e/small").as_deref(), Some(&b"s"[..]));
    assert!(srv.keys().iter().all(|k| !k.starts_with("d/")));
}

#[tokio::test]
async fn reopen_for_writing_right_after_close_waits_for_the_release() {
    let srv = TestServer::start().await;
    let fs = fs(&srv);
    let (attr, first) = fs
        .create(ROOT_INO, "f.txt", 0o644, libc::O_WRONLY, ME)
        .await
        .expect("create");
    fs.write(first.fh, 0, b"one").await.expect("write");
    // a second writer while the first has unflushed bytes shares them; its close does not
    // upload while the first still has the file open
    let other = fs
        .open(attr.ino, libc::O_WRONLY, ME)
        .await
        .expect("second writer");
    let seen = fs.read(other.fh, 0, 10).await.expect("read through it");
    assert_eq!(&seen[..], b"one");
    fs.flush(other.fh, 0).await.expect("flush");
    fs.release(other.fh).await.expect("release");
    assert!(
        srv.get_object("f.txt").is_none(),
        "uploaded before the last close"
    );
    // close(2) returned (FLUSH answered); the kernel's RELEASE comes a little later
    fs.flush(first.fh, 0).await.expect("flush");
    let late = fs.clone();
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        late.release(first.fh).await
    });
    let second = fs
        .open(attr.ino, libc::O_WRONLY | libc::O_APPEND, ME)
        .await
        .expect("reopen right after close");
    release.await.expect("join").expect("release");
    fs.write(second.fh, 3, b"two").await.expect("append");
    fs.flush(second.fh, 0).await.expect("flush");
    fs.release(second.fh).await.expect("release");
    assert_eq!(srv.get_object("f.txt").as_deref(), Some(&b"onetwo"[..]));
}

#[tokio::test]
async fn read_right_after_close_waits_for_the_release() {
    let srv = TestServer::start().await;
    let fs = fs(&srv);
    let (attr, w) = fs
        .create(ROOT_INO, "copied.txt", 0o644, libc::O_WRONLY, ME)
        .await
        .expect("create");
    fs.write(w.fh, 0, b"copied bytes").await.expect("write");
    // `cp a b && cat b`: close(2) returned, the RELEASE comes a little later
    fs.flush(w.fh, 0).await.expect("flush");
    let late = fs.clone();
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        late.release(w.fh).await
    });
    let r = fs
        .open(attr.ino, libc::O_RDONLY, ME)
        .await
        .expect("open for reading right after close");
    release.await.expect("join").expect("release");
    let data = fs.read(r.fh, 0, 100).await.expect("read");
    assert_eq!(&data[..], b"copied bytes");
    fs.release(r.fh).await.expect("release reader");
}

/// Let background HEADs finish before counting (waits for them, not for a time).
async fn settle(fs: &Filesystem) {
    assert!(
        fs.wait_stat_ahead_idle(Duration::from_secs(10)).await,
        "stat-ahead HEADs still in flight after 10 s"
    );
}

#[tokio::test]
async fn a_walk_through_a_listing_fetches_metadata_ahead_once_per_entry() {
    let srv = TestServer::start().await;
    for i in 0..100u32 {
        let mut meta = std::collections::BTreeMap::new();
        meta.insert("mode".into(), (0o100600 + i % 8).to_string());
        srv.put_object_with_meta(&format!("d/f{i:03}"), "x", meta, None);
    }
    srv.put_object("d/sub/inner", "y");
    let fs = fs(&srv);
    let d = fs.lookup(ROOT_INO, "d").await.expect("lookup d");
    let fh = fs.opendir(d.ino).await.expect("opendir");
    let listed = fs.readdir(d.ino, fh, 0).await.expect("readdir").len();
    fs.releasedir(fh);
    assert_eq!(listed, 2 + 101);

    // a lookup here and there fetches nothing ahead
    srv.reset_counts();
    fs.lookup(d.ino, "f050").await.expect("f050");
    fs.lookup(d.ino, "f010").await.expect("f010");
    settle(&fs).await;
    assert_eq!(metadata_requests(&srv), 2, "{:?}", srv.counts());

    // two lookups in listing order: the next entries' HEADs go out ahead of the walk
    srv.reset_counts();
    fs.lookup(d.ino, "f000").await.expect("f000");
    fs.lookup(d.ino, "f001").await.expect("f001");
    settle(&fs).await;
    let ahead = metadata_requests(&srv);
    assert!(ahead >= 2 + 8, "{ahead} fetches after two lookups in a row");

    // the whole walk (as `ls -l` does it): each entry fetched once, with its own attributes
    for i in 2..100u32 {
        let attr = fs.lookup(d.ino, &format!("f{i:03}")).await.expect("lookup");
        assert_eq!(u32::from(attr.perm), 0o600 + i % 8, "f{i:03}");
    }
    let sub = fs.lookup(d.ino, "sub").await.expect("sub");
    assert_eq!(sub.kind, FileKind::Directory);
    settle(&fs).await;
    // 100 files + the marker HEAD of `sub`, less f010 and f050 (fetched before the walk)
    assert_eq!(metadata_requests(&srv), 99, "{:?}", srv.counts());
    assert_eq!(srv.count("ListObjectsV2"), 0, "{:?}", srv.counts());
}

#[tokio::test]
async fn a_walk_follows_a_listing_still_under_way_and_what_it_fetched_is_answered_at_once() {
    // `ls -l` stats each entry as it reads it, long before a big listing is complete: the
    // walk is followed through what the listing has shown so far
    let srv = TestServer::start().await;
    for i in 0..2500u32 {
        srv.put_object(&format!("d/f{i:04}"), "x");
    }
    let fs = fs(&srv);
    let d = fs.lookup(ROOT_INO, "d").await.expect("lookup d");
    let fh = fs.opendir(d.ino).await.expect("opendir");
    let mut names = Vec::new();
    fs.readdir_into(d.ino, fh, 0, |_, _, _, name| {
        names.push(name.to_string());
        names.len() > 100
    })
    .await
    .expect("readdir");
    srv.reset_counts();
    for n in names.iter().filter(|n| n.starts_with('f')).take(50) {
        fs.lookup(d.ino, n).await.expect("lookup");
    }
    settle(&fs).await;
    let fetched = metadata_requests(&srv);
    assert!(
        fetched >= 50 + 64,
        "{fetched} fetches for 50 lookups: nothing was fetched ahead"
    );
    assert!(
        fs.lookup_now(d.ino, "f0000").is_some(),
        "the listing is under way"
    );
    // an entry fetched ahead is answered at once, without waiting on anything
    let before = srv.total_requests();
    let attr = fs
        .lookup_now(d.ino, "f0060")
        .expect("fetched ahead: answered at once");
    assert_eq!(attr.size, 1);
    assert_eq!(srv.total_requests(), before);
    // the walk goes on: each entry fetched once
    for i in 61..400u32 {
        fs.lookup(d.ino, &format!("f{i:04}")).await.expect("lookup");
    }
    settle(&fs).await;
    let fetched = metadata_requests(&srv);
    assert!(
        (400..=400 + 128).contains(&fetched),
        "{fetched} fetches for a walk of 400 entries"
    );
    fs.releasedir(fh);
}

#[tokio::test]
async fn a_walk_in_inode_order_is_a_walk_in_listing_order_and_is_fetched_ahead() {
    // gnulib's fts (`find`, `chown -R`, `rm -rf`, `du`) sorts a directory of more than
    // 10,000 entries by readdir's inode numbers before it stats them: those numbers must
    // follow the listing, or each stat waits on its own HEAD
    let srv = TestServer::start().await;
    for i in 1..=1500u32 {
        srv.put_object(&format!("d/f{i}"), "x");
    }
    let fs = fs(&srv);
    let d = listed_dir(&fs, "d").await;
    let fh = fs.opendir(d.ino).await.expect("opendir");
    let mut entries = read_rest(&fs, d.ino, fh, 0).await;
    entries.retain(|e| e.name.starts_with('f'));
    fs.releasedir(fh);
    assert_eq!(entries.len(), 1500);
    let listed: Vec<String> = entries.iter().map(|e| e.name.clone()).collect();
    let mut by_ino = entries.clone();
    by_ino.sort_by_key(|e| e.ino);
    let by_ino: Vec<String> = by_ino.into_iter().map(|e| e.name).collect();
    assert_eq!(by_ino, listed, "inode order is not the listing's");
    srv.reset_counts();
    for n in by_ino.iter().take(300) {
        fs.lookup(d.ino, n).await.expect("lookup");
    }
    settle(&fs).await;
    let fetched = metadata_requests(&srv);
    assert!(
        (300 + 64..=300 + 128).contains(&fetched),
        "{fetched} fetches for 300 lookups: nothing was fetched ahead"
    );
    assert!(
        fs.lookup_now(d.ino, &by_ino[300]).is_some(),
        "the next entry in inode order was fetched ahead"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_keeps_what_this_mount_changed_while_its_pages_were_on_the_way() {
    // a page made before a create or an unlink here, and received after it, must neither
    // hide the new file nor bring back the removed one (`ls` beside a program writing files)
    let srv = TestServer::start().await;
    for i in 0..1500u32 {
        srv.put_object(&format!("r/f{i:04}"), "x");
    }
    let fs = fs(&srv);
    let r = fs.lookup(ROOT_INO, "r").await.expect("lookup r");
    let gate = Gate::new();
    srv.add_fault(
        Fault::new(FaultKind::HoldResponse(gate.clone()))
            .op("ListObjectsV2")
            .times(1),
    );
    let fh = fs.opendir(r.ino).await.expect("opendir");
    let first = tokio::spawn({
        let fs = fs.clone();
        async move { fs.readdir(r.ino, fh, 0).await }
    });
    // the first page is made, without `a_new` and with `f0001`, and held back
    gate.held().await;
    write_file(&fs, r.ino, "a_new", b"new").await;
    fs.lookup(r.ino, "f0001").await.expect("lookup f0001");
    fs.unlink(r.ino, "f0001").await.expect("unlink");
    gate.open();
    let offset = first
        .await
        .expect("task")
        .expect("readdir")
        .last()
        .map(|e| e.next_offset)
        .expect("entries");
    read_rest(&fs, r.ino, fh, offset).await;
    fs.releasedir(fh);
    // the complete listing, now cached, answers lookups and the next readdir
    srv.reset_counts();
    let names = dir_names(&fs, r.ino).await;
    assert_eq!(srv.count("ListObjectsV2"), 0, "served from the listing");
    assert!(names.iter().any(|n| n == "a_new"), "the new file is hidden");
    assert!(
        !names.iter().any(|n| n == "f0001"),
        "the removed file is back"
    );
    assert_eq!(names.len(), 2 + 1500);
}

#[tokio::test]
async fn lookups_that_keep_probing_one_directory_have_it_listed_again() {
    // a long rsync past the TTL looks up a new name or two per file: once that costs more
    // than listing the directory, the directory is listed and its lookups cost nothing
    let srv = TestServer::start().await;
    for i in 0..1500u32 {
        srv.put_object(&format!("d/f{i}"), "x");
    }
    let fs = fs(&srv);
    let d = fs.lookup(ROOT_INO, "d").await.expect("lookup d");
    srv.reset_counts();
    for i in 0..40u32 {
        let missing = fs.lookup(d.ino, &format!(".f{i}.tmp")).await;
        assert_eq!(missing.err().map(|e| e.errno), Some(libc::ENOENT));
    }
    assert!(fs.wait_relist_idle(Duration::from_secs(10)).await);
    let lists = srv.requests_for("ListObjectsV2").len();
    assert!(
        lists < 40 + 4,
        "{lists} LISTs: probes went on while the directory was listed"
    );
    let full = srv
        .requests_for("ListObjectsV2")
        .iter()
        .filter(|r| !r.query.contains("max-keys=1"))
        .count();
    assert_eq!(full, 2, "the directory is listed once, 2 pages");
    srv.reset_counts();
    for i in 40..140u32 {
        let missing = fs.lookup(d.ino, &format!(".f{i}.tmp")).await;
        assert_eq!(missing.err().map(|e| e.errno), Some(libc::ENOENT));
    }
    let f = fs.lookup(d.ino, "f1499").await.expect("a listed file");
    assert_eq!(f.size, 1);
    assert_eq!(
        srv.total_requests(),
        1,
        "only the listed file's HEAD: the listing answers the missing names"
    );
}

#[tokio::test]
async fn a_walk_through_directories_only_fetches_no_files_ahead() {
    let srv = TestServer::start().await;
    for i in 0..30 {
        // a file beside each directory: `aNN` and `aNN.txt` are neighbours in the listing
        srv.put_object(&format!("m/a{i:02}/x"), "x");
        srv.put_object(&format!("m/a{i:02}.txt"), "t");
    }
    let fs = fs(&srv);
    let m = listed_dir(&fs, "m").await;
    srv.reset_stats();
    // `find` descends into each directory and never stats the files
    for i in 0..30 {
        let d = fs.lookup(m.ino, &format!("a{i:02}")).await.expect("dir");
        assert_eq!(d.kind, FileKind::Directory);
    }
    settle(&fs).await;
    let heads = srv.requests_for("HeadObject");
    let files: Vec<_> = heads
        .iter()
        .filter_map(|r| r.key.clone())
        .filter(|k| !k.ends_with('/'))
        .collect();
    assert!(files.is_empty(), "files fetched ahead: {files:?}");
    assert_eq!(heads.len(), 30, "{:?}", srv.counts());
}

#[tokio::test]
async fn a_fresh_open_of_a_file_replaced_elsewhere_reads_the_new_object() {
    let srv = TestServer::start().await;
    let old: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    srv.put_object("f.bin", old.clone());
    let fs = fs(&srv);
    let attr = fs.lookup(ROOT_INO, "f.bin").await.expect("lookup");
    let o = fs.open(attr.ino, libc::O_RDONLY, ME).await.expect("open");
    let got = fs.read(o.fh, 0, 4096).await.expect("read v1");
    assert!(got[..] == old[..4096], "first version");
    fs.release(o.fh).await.expect("release");
    // another client replaces it while its attributes are cached here (60 s TTL)
    let newer: Vec<u8> = (0..300_000u32).map(|i| (i % 13) as u8).collect();
    srv.put_object("f.bin", newer.clone());
    srv.reset_counts();
    // a fresh open reads the new object (one HEAD), not ESTALE until the TTL runs out
    let o = fs.open(attr.ino, libc::O_RDONLY, ME).await.expect("reopen");
    let got = fs.read(o.fh, 0, 4096).await;
    assert!(
        got.as_ref().is_ok_and(|b| b[..] == newer[..4096]),
        "read after reopen: {:?}",
        got.map(|b| b.len())
    );
    let got = fs.read(o.fh, 200_000, 4096).await.expect("read further");
    assert!(got[..] == newer[200_000..204_096], "further on");
    fs.release(o.fh).await.expect("release");
    assert_eq!(
        srv.count("HeadObject"),
        1,
        "one HEAD to learn the new version"
    );
}

/// A directory `big` of 2,500 files, in a core whose listing cache keeps 1,000 entries.
async fn directory_past_the_listing_bound() -> (TestServer, Arc<Filesystem>, Attr) {
    directory_past_the_listing_bound_with(FsConfig::default()).await
}

/// The same, with `cfg`'s other settings.
async fn directory_past_the_listing_bound_with(
    cfg: FsConfig,
) -> (TestServer, Arc<Filesystem>, Attr) {
    let srv = TestServer::start().await;
    for i in 0..2_500 {
        srv.put_object(&format!("big/f{i:05}"), "x");
    }
    let fs = fs_with(
        &srv,
        FsConfig {
            listing_cache_entries: 1_000,
            ..cfg
        },
    );
    let d = fs.lookup(ROOT_INO, "big").await.expect("lookup");
    (srv, fs, d)
}

#[tokio::test]
async fn a_directory_larger_than_the_listing_cache_lists_in_full() {
    let (srv, fs, d) = directory_past_the_listing_bound().await;
    srv.reset_counts();
    let fh = fs.opendir(d.ino).await.expect("opendir");
    let names: Vec<String> = read_rest(&fs, d.ino, fh, 0)
        .await
        .into_iter()
        .map(|e| e.name)
        .collect();
    fs.releasedir(fh);
    assert_eq!(names.len(), 2 + 2_500, "every entry, once");
    // (a file last on a page waits for the next one, in case a directory of its name follows)
    let unique: std::collections::BTreeSet<&String> = names[2..].iter().collect();
    let want: Vec<String> = (0..2_500).map(|i| format!("f{i:05}")).collect();
    assert!(unique.into_iter().eq(want.iter()), "every name once");
    assert_eq!(srv.count("ListObjectsV2"), 3, "pages of 1,000");
    // too large to keep: a name's lookup asks the bucket (a listed one is not answered
    // from a listing that was not kept)
    srv.reset_counts();
    let err = fs.lookup(d.ino, "nope").await.expect_err("missing");
    assert_eq!(err.errno, libc::ENOENT);
    assert!(srv.total_requests() >= 1, "{:?}", srv.counts());
}

#[tokio::test]
async fn what_a_listing_past_the_bound_shows_lookups_stops_at_the_bound() {
    let (srv, fs, d) = directory_past_the_listing_bound().await;
    let fh = fs.opendir(d.ino).await.expect("opendir");
    let (mut seen, mut offset) = (0, 0);
    // read into the second page (the listing under way has shown up to 2,000 names; the
    // third page is still to come)
    while seen < 1_100 {
        let page = fs.readdir(d.ino, fh, offset).await.expect("readdir");
        let Some(last) = page.last() else { break };
        offset = last.next_offset;
        seen += page.len();
    }
    srv.reset_counts();
    // within the bound: the listing under way has shown it, so its lookup needs no probe
    // (a listed object this small is one GET, kept for its reads)
    fs.lookup(d.ino, "f00010").await.expect("f00010");
    assert_eq!(srv.count("GetObject"), 1, "{:?}", srv.counts());
    assert_eq!(srv.count("HeadObject"), 0, "{:?}", srv.counts());
    // past it: not kept (memory stays bounded for a directory of a million keys), probed
    srv.reset_counts();
    fs.lookup(d.ino, "f01500").await.expect("f01500");
    assert_eq!(srv.count("HeadObject"), 1, "{:?}", srv.counts());
    fs.releasedir(fh);
}

/// Up to `max` entries from `offset` (a small kernel buffer), as (next offset, name).
async fn read_some(
    fs: &Filesystem,
    ino: u64,
    fh: u64,
    offset: u64,
    max: usize,
) -> Vec<(u64, String)> {
    let mut got = Vec::new();
    fs.readdir_into(ino, fh, offset, |next, _, _, name| {
        got.push((next, name.to_string()));
        got.len() >= max
    })
    .await
    .expect("readdir");
    got
}

#[tokio::test]
async fn a_big_listing_read_in_small_pieces_and_seeked_back_lists_each_name_once() {
    let (_srv, fs, d) = directory_past_the_listing_bound().await;
    // a listed file being written is also one of the directory's local entries
    let f = fs.lookup(d.ino, "f00010").await.expect("lookup");
    let w = fs.open(f.ino, libc::O_WRONLY, ME).await.expect("open");
    fs.write(w.fh, 0, b"y").await.expect("write");
    let fh = fs.opendir(d.ino).await.expect("opendir");
    let mut seen: Vec<(u64, String)> = Vec::new();
    let mut offset = 0;
    let mut changed = false;
    loop {
        let got = read_some(&fs, d.ino, fh, offset, 97).await;
        let Some(last) = got.last() else { break };
        offset = last.0;
        seen.extend(got);
        if !changed && seen.len() > 1_200 {
            // meanwhile: a file created, one already listed and one to come removed
            changed = true;
            write_file(&fs, d.ino, "f99999-new", b"n").await;
            fs.unlink(d.ino, "f00005").await.expect("unlink listed");
            fs.unlink(d.ino, "f02400").await.expect("unlink to come");
        }
    }
    let names: Vec<&str> = seen.iter().map(|(_, n)| n.as_str()).collect();
    let unique: std::collections::BTreeSet<&str> = names.iter().copied().collect();
    assert_eq!(unique.len(), names.len(), "a name listed twice");
    for i in (0..2_500).filter(|i| *i != 2_400) {
        let name = format!("f{i:05}");
        assert!(unique.contains(name.as_str()), "{name} skipped");
    }
    // offsets stay valid: a seek back to an offset handed out earlier (telldir) reads the
    // same entries again, from the handle's own entries
    for at in [0usize, 500, 1_000, 2_000] {
        let (offset, _) = seen[at].clone();
        let again = read_some(&fs, d.ino, fh, offset, 50).await;
        let want: Vec<String> = seen[at + 1..at + 51]
            .iter()
            .map(|(_, n)| n.clone())
            .collect();
        let got: Vec<String> = again.into_iter().map(|(_, n)| n).collect();
        assert_eq!(got, want, "after the entry at {at}");
    }
    fs.releasedir(fh);
    fs.release(w.fh).await.expect("release");
}

#[tokio::test]
async fn a_listing_past_the_bound_keeps_a_bounded_tail_and_lists_again_on_a_seek_before_it() {
    // a handle keeps at most 1,000 + 200 entries behind its reader
    let (srv, fs, d) = directory_past_the_listing_bound_with(FsConfig {
        readdir_keep_behind: 200,
        ..FsConfig::default()
    })
    .await;
    srv.reset_counts();
    let fh = fs.opendir(d.ino).await.expect("opendir");
    let mut seen: Vec<(u64, String)> = Vec::new();
    let mut offset = 0;
    loop {
        let got = read_some(&fs, d.ino, fh, offset, 97).await;
        let Some(last) = got.last() else { break };
        offset = last.0;
        seen.extend(got);
    }
    let names: Vec<&str> = seen.iter().map(|(_, n)| n.as_str()).collect();
    let unique: std::collections::BTreeSet<&str> = names.iter().copied().collect();
    assert_eq!(unique.len(), names.len(), "a name listed twice");
    assert_eq!(names.len(), 2 + 2_500, "every entry once");
    assert_eq!(srv.count("ListObjectsV2"), 3, "pages of 1,000");
    // an offset still held (just behind the end) reads the same entries without a request
    let (near, _) = seen[2_400].clone();
    let again: Vec<String> = read_some(&fs, d.ino, fh, near, 50)
        .await
        .into_iter()
        .map(|(_, n)| n)
        .collect();
    let want: Vec<String> = seen[2_401..2_451].iter().map(|(_, n)| n.clone()).collect();
    assert_eq!(again, want);
    assert_eq!(
        srv.count("ListObjectsV2"),
        3,
        "served from what the handle kept"
    );
    // a seek back before what it kept (rewinddir, telldir): listed again, the same entries
    for at in [0usize, 500] {
        let (offset, _) = seen[at].clone();
        let again: Vec<String> = read_some(&fs, d.ino, fh, offset, 50)
            .await
            .into_iter()
            .map(|(_, n)| n)
            .collect();
        let want: Vec<String> = seen[at + 1..at + 51]
            .iter()
            .map(|(_, n)| n.clone())
            .collect();
        assert_eq!(again, want, "after the entry at {at}");
    }
    assert!(
        srv.count("ListObjectsV2") > 3,
        "the first entries were dropped behind the reader: {:?}",
        srv.counts()
    );
    fs.releasedir(fh);
}

/// What a core reads of `name` in the root: its bytes, or the errno.
async fn read_back(fs: &Filesystem, name: &str) -> Result<Vec<u8>, i32> {
    let attr = fs.lookup(ROOT_INO, name).await.map_err(|e| e.errno)?;
    let o = fs
        .open(attr.ino, libc::O_RDONLY, ME)
        .await
        .map_err(|e| e.errno)?;
    let got = fs.read(o.fh, 0, 1 << 20).await.map_err(|e| e.errno);
    let _ = fs.release(o.fh).await;
    fs.forget(attr.ino, 1);
    got.map(|b| b.to_vec())
}

#[tokio::test]
async fn two_mounts_with_metadata_ttl_0_see_each_others_changes_at_once() {
    let srv = TestServer::start().await;
    let coherent = || FsConfig {
        metadata_ttl: Duration::ZERO,
        negative_ttl: Duration::ZERO,
        ..FsConfig::default()
    };
    let (a, b) = (fs_with(&srv, coherent()), fs_with(&srv, coherent()));
    assert_eq!(read_back(&b, "x").await, Err(libc::ENOENT));
    // created through one mount, read through the other
    write_file(&a, ROOT_INO, "x", b"one").await;
    assert_eq!(read_back(&b, "x").await.as_deref(), Ok(&b"one"[..]));
    // overwritten through the other, read back through the first
    let x = b.lookup(ROOT_INO, "x").await.expect("lookup");
    let o = b
        .open(x.ino, libc::O_WRONLY | libc::O_TRUNC, ME)
        .await
        .expect("open");
    b.write(o.fh, 0, b"second").await.expect("write");
    b.flush(o.fh, 0).await.expect("flush");
    b.release(o.fh).await.expect("release");
    assert_eq!(read_back(&a, "x").await.as_deref(), Ok(&b"second"[..]));
    // renamed through the first
    a.rename(ROOT_INO, "x", ROOT_INO, "y", 0)
        .await
        .expect("rename");
    assert_eq!(read_back(&b, "x").await, Err(libc::ENOENT));
    assert_eq!(read_back(&b, "y").await.as_deref(), Ok(&b"second"[..]));
    // removed through the other
    b.unlink(ROOT_INO, "y").await.expect("unlink");
    assert_eq!(read_back(&a, "y").await, Err(libc::ENOENT));
    assert_eq!(dir_names(&a, ROOT_INO).await, [".", ".."]);
}

#[tokio::test]
async fn stat_from_listing_walks_foreign_objects_with_list_requests_only() {
    let srv = TestServer::start().await;
    for i in 0..50u32 {
        let mut meta = std::collections::BTreeMap::new();
        meta.insert("mode".into(), (0o100600).to_string());
        meta.insert("other-tool".into(), format!("v{i}"));
        // (none empty: an empty object may be an older directory object, which gets a HEAD)
        let len = i as usize + 1;
        srv.put_object_with_meta(&format!("d/f{i:03}"), vec![7u8; len], meta, None);
    }
    let fs = fs_with(
        &srv,
        FsConfig {
            stat_from_listing: true,
            ..FsConfig::default()
        },
    );
    let d = fs.lookup(ROOT_INO, "d").await.expect("lookup d");
    srv.reset_counts();
    // `ls -l d`: the listing, then a lookup and a stat of every entry
    let fh = fs.opendir(d.ino).await.expect("opendir");
    assert_eq!(
        fs.readdir(d.ino, fh, 0).await.expect("readdir").len(),
        2 + 50
    );
    fs.releasedir(fh);
    let mut inos = Vec::new();
    for i in 0..50u32 {
        // what the listing says is answered at once, without waiting on anything (the FUSE
        // thread answers it)
        let attr = match i % 2 {
            0 => fs
                .lookup_now(d.ino, &format!("f{i:03}"))
                .expect("answered at once"),
            _ => fs.lookup(d.ino, &format!("f{i:03}")).await.expect("lookup"),
        };
        assert_eq!(attr.size, u64::from(i) + 1, "size from the listing");
        let stored = srv.object_meta(&format!("d/f{i:03}")).expect("object");
        let skew = attr
            .mtime
            .duration_since(stored.last_modified)
            .unwrap_or_else(|e| e.duration());
        assert!(skew < Duration::from_secs(1), "time from the listing");
        assert_eq!(attr.perm, 0o644, "the default mode until opened");
        assert_eq!(
            fs.getattr(attr.ino).await.expect("stat").size,
            u64::from(i) + 1
        );
        inos.push(attr.ino);
    }
    settle(&fs).await;
    assert_eq!(metadata_requests(&srv), 0, "{:?}", srv.counts());
    assert_eq!(srv.total_requests(), srv.count("ListObjectsV2"));
    // opening one fetches its real attributes (one request)
    srv.reset_counts();
    let o = fs.open(inos[5], libc::O_RDONLY, ME).await.expect("open");
    assert_eq!(fs.read(o.fh, 0, 100).await.expect("read").len(), 6);
    fs.release(o.fh).await.expect("release");
    // (a small file's attributes come with a GET of its body, which the read then uses)
    assert_eq!(srv.total_requests(), 1, "{:?}", srv.counts());
    assert_eq!(fs.getattr(inos[5]).await.expect("stat").perm, 0o600);
    // changing the mode of another keeps the metadata other tools wrote (fetched first)
    let attr = fs
        .setattr(
            inos[7],
            bucketfs::fs::SetAttr {
                mode: Some(0o640),
                ..Default::default()
            },
            ME,
        )
        .await
        .expect("chmod");
    assert_eq!(attr.perm, 0o640);
    assert!(fs.wait_metadata_written(Duration::from_secs(10)).await);
    let meta = srv.object_meta("d/f007").expect("object").metadata;
    assert_eq!(meta.get("other-tool").map(String::as_str), Some("v7"));
    assert_eq!(
        meta.get("mode").map(String::as_str),
        Some("33184"),
        "{meta:?}"
    );
}

#[tokio::test]
async fn an_open_for_update_fetches_a_small_object_only_when_read_or_changed() {
    let srv = TestServer::start().await;
    srv.put_object("t.txt", "old bytes");
    let fs = fs(&srv);
    let attr = fs.lookup(ROOT_INO, "t.txt").await.expect("lookup");
    // touch: an open for writing, new times, a close: no GET, no upload of the body
    let h = fs.open(attr.ino, libc::O_WRONLY, ME).await.expect("open");
    let when = std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let times = bucketfs::fs::SetAttr {
        mtime: Some(when),
        atime: Some(when),
        fh: Some(h.fh),
        ..Default::default()
    };
    fs.setattr(attr.ino, times, ME).await.expect("touch");
    assert_eq!(fs.getattr(attr.ino).await.expect("stat").size, 9);
    fs.flush(h.fh, 0).await.expect("flush");
    fs.release(h.fh).await.expect("release");
    assert_eq!(srv.count("GetObject"), 0, "{:?}", srv.counts());
    assert_eq!(srv.count("PutObject"), 0, "{:?}", srv.counts());
    // a write in the middle fetches it once, and keeps the bytes around the write
    let h = fs.open(attr.ino, libc::O_RDWR, ME).await.expect("open");
    fs.write(h.fh, 4, b"NEW").await.expect("write");
    assert_eq!(&fs.read(h.fh, 0, 64).await.expect("read")[..], b"old NEWes");
    fs.flush(h.fh, 0).await.expect("flush");
    fs.release(h.fh).await.expect("release");
    assert_eq!(srv.count("GetObject"), 1, "{:?}", srv.counts());
    assert_eq!(srv.get_object("t.txt").as_deref(), Some(&b"old NEWes"[..]));
    // replaced by another client after the open: the first change is ESTALE, theirs stays
    let h = fs.open(attr.ino, libc::O_WRONLY, ME).await.expect("open");
    srv.put_object("t.txt", "theirs");
    let e = fs.write(h.fh, 0, b"x").await.expect_err("stale");
    assert_eq!(e.errno, libc::ESTALE, "{e:?}");
    fs.flush(h.fh, 0).await.expect("flush");
    fs.release(h.fh).await.expect("release");
    assert_eq!(srv.get_object("t.txt").as_deref(), Some(&b"theirs"[..]));
}

/// Regular files under `dir` (part files of the staging area), recursively.
fn staged_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for e in entries.flatten() {
        let path = e.path();
        if path.is_dir() {
            found.extend(staged_files(&path));
        } else if e.file_name() != ".lock" {
            found.push(path);
        }
    }
    found
}

/// Issue #16: every open for writing made a part file (and its directory) in the staging area,
/// removed at close, and ext4 slows with every file created and removed in a row: `touch` of
/// 20,000 files cost twice as much per file as of 2,000. A part file is made when a byte goes
/// to it; an open that writes nothing makes none.
#[tokio::test]
async fn an_open_for_writing_that_writes_nothing_stages_no_file() {
    let srv = TestServer::start().await;
    srv.put_object("old", "kept");
    let cache = tempfile::tempdir().expect("tempdir");
    let fs = journaled(&srv, cache.path());
    let parts = cache.path().join("parts");

    // `touch new`: created, closed empty
    let (_, created) = fs
        .create(ROOT_INO, "new", 0o644, libc::O_WRONLY, ME)
        .await
        .expect("create");
    assert_eq!(staged_files(&parts), Vec::<std::path::PathBuf>::new());
    fs.flush(created.fh, 0).await.expect("flush");
    fs.release(created.fh).await.expect("release");
    assert_eq!(srv.get_object("new").as_deref(), Some(&b""[..]));

    // `touch old`: an existing file opened for writing, closed unchanged
    let old = fs.lookup(ROOT_INO, "old").await.expect("lookup");
    let opened = fs.open(old.ino, libc::O_WRONLY, ME).await.expect("open");
    assert_eq!(staged_files(&parts), Vec::<std::path::PathBuf>::new());
    fs.flush(opened.fh, 0).await.expect("flush");
    fs.release(opened.fh).await.expect("release");
    assert_eq!(srv.get_object("old").as_deref(), Some(&b"kept"[..]));

    // a small file's bytes, held in memory, are sent from there: no part file either
    let (_, small) = fs
        .create(ROOT_INO, "small", 0o644, libc::O_WRONLY, ME)
        .await
        .expect("create");
    fs.write(small.fh, 0, b"bytes").await.expect("write");
    fs.flush(small.fh, 0).await.expect("flush");
    assert_eq!(srv.get_object("small").as_deref(), Some(&b"bytes"[..]));
    assert_eq!(staged_files(&parts), Vec::<std::path::PathBuf>::new());
    // and the file can still grow after that upload
    fs.write(small.fh, 5, b" more").await.expect("write");
    fs.release(small.fh).await.expect("release");
    assert_eq!(srv.get_object("small").as_deref(), Some(&b"bytes more"[..]));
}

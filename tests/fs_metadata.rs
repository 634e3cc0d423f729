//! Attribute changes (chmod, chown, utimens) on files and directories, driven through the
//! filesystem core: seen at once, written to S3 a moment later as one copy, carried by a
//! rename's copy, written at once by fsync and at unmount, dropped with the file, and reverted
//! when S3 refuses them.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use bucketfs::config::FsConfig;
use bucketfs::fs::{Filesystem, SetAttr, ROOT_INO};
use bucketfs_test_server::{Fault, FaultKind, TestServer};

#[path = "common/core.rs"]
mod core_fs;
use core_fs::{read_all, write_file, ME};

/// The delay after which a closed file's attribute changes are written (1 s by default): long
/// enough for the changes each test makes together to go in one copy.
const DELAY: Duration = Duration::from_millis(200);

fn fs(srv: &TestServer) -> Arc<Filesystem> {
    core_fs::fs_with(
        srv,
        FsConfig {
            metadata_write_delay: DELAY,
            ..FsConfig::default()
        },
    )
}

/// Wait until the deferred changes have been written (an event, not a sleep).
async fn written(fs: &Filesystem) {
    assert!(
        fs.wait_metadata_written(Duration::from_secs(10)).await,
        "deferred attribute changes still waiting after 10 s"
    );
}

fn chmod(mode: u32) -> SetAttr {
    SetAttr {
        mode: Some(mode),
        ..Default::default()
    }
}

fn touch(secs: u64) -> SetAttr {
    let t = UNIX_EPOCH + Duration::from_secs(secs);
    SetAttr {
        atime: Some(t),
        mtime: Some(t),
        ..Default::default()
    }
}

/// The permission bits stored in `key`'s metadata.
fn stored_perm(srv: &TestServer, key: &str) -> u32 {
    let mode: u32 = meta(srv, key, "mode")
        .unwrap_or_else(|| panic!("{key} has no stored mode"))
        .parse()
        .expect("a number");
    mode & 0o7777
}

/// The stored `x-amz-meta-NAME` of `key`.
fn meta(srv: &TestServer, key: &str, name: &str) -> Option<String> {
    srv.object_meta(key)?.metadata.get(name).cloned()
}

#[tokio::test]
async fn rsync_pattern_costs_one_put_one_copy_and_one_delete() {
    let srv = TestServer::start().await;
    let fs = fs(&srv);
    // what rsync -a does per file: temporary file, times, mode, rename over the real name
    let ino = write_file(&fs, ROOT_INO, ".notes.txt.Ab12Cd", b"some text").await;
    fs.setattr(ino, touch(1_000_000_000), ME)
        .await
        .expect("utimens");
    let attr = fs.setattr(ino, chmod(0o644), ME).await.expect("chmod");
    assert_eq!(attr.perm, 0o644);
    fs.rename(ROOT_INO, ".notes.txt.Ab12Cd", ROOT_INO, "notes.txt", 0)
        .await
        .expect("rename");
    written(&fs).await;
    assert_eq!(srv.count("PutObject"), 1, "{:?}", srv.counts());
    assert_eq!(srv.count("CopyObject"), 1, "{:?}", srv.counts());
    assert_eq!(srv.count("DeleteObject"), 1, "{:?}", srv.counts());
    assert_eq!(srv.keys(), vec!["notes.txt".to_string()]);
    assert_eq!(stored_perm(&srv, "notes.txt"), 0o644);
    assert_eq!(
        meta(&srv, "notes.txt", "mtime").as_deref(),
        Some("1000000000")
    );
    // the content type follows the final name, not the temporary one
    let ct = srv.object_meta("notes.txt").and_then(|m| m.content_type);
    assert_eq!(ct.as_deref(), Some("text/plain"));
    assert_eq!(
        srv.get_object("notes.txt").as_deref(),
        Some(&b"some text"[..])
    );
}

#[tokio::test]
async fn chmod_is_seen_at_once_and_written_once_a_moment_later() {
    let srv = TestServer::start().await;
    srv.put_object("a.bin", "data");
    let fs = fs(&srv);
    let ino = fs.lookup(ROOT_INO, "a.bin").await.expect("lookup").ino;
    srv.reset_counts();
    fs.setattr(ino, chmod(0o600), ME).await.expect("chmod");
    fs.setattr(ino, touch(1_234_567_890), ME)
        .await
        .expect("touch");
    fs.setattr(ino, chmod(0o640), ME)
        .await
        .expect("chmod again");
    let attr = fs.getattr(ino).await.expect("getattr");
    assert_eq!(attr.perm, 0o640);
    assert_eq!(attr.mtime, UNIX_EPOCH + Duration::from_secs(1_234_567_890));
    assert_eq!(srv.count("CopyObject"), 0, "written at once");
    written(&fs).await;
    assert_eq!(srv.count("CopyObject"), 1, "{:?}", srv.counts());
    assert_eq!(stored_perm(&srv, "a.bin"), 0o640);
    assert_eq!(meta(&srv, "a.bin", "mtime").as_deref(), Some("1234567890"));
    assert_eq!(srv.get_object("a.bin").as_deref(), Some(&b"data"[..]));
}

#[tokio::test]
async fn fsync_and_unmount_write_pending_changes_at_once() {
    let srv = TestServer::start().await;
    srv.put_object("f", "x");
    srv.put_object("g", "y");
    let fs = fs(&srv);
    let f = fs.lookup(ROOT_INO, "f").await.expect("lookup").ino;
    let g = fs.lookup(ROOT_INO, "g").await.expect("lookup").ino;
    srv.reset_counts();
    let opened = fs.open(f, libc::O_RDONLY, ME).await.expect("open");
    fs.setattr(f, chmod(0o604), ME).await.expect("chmod");
    fs.fsync(opened.fh).await.expect("fsync");
    assert_eq!(srv.count("CopyObject"), 1, "{:?}", srv.counts());
    assert_eq!(stored_perm(&srv, "f"), 0o604);
    fs.release(opened.fh).await.expect("release");

    fs.setattr(g, chmod(0o611), ME).await.expect("chmod");
    let report = fs.shutdown().await;
    assert!(report.failed.is_empty());
    assert_eq!(srv.count("CopyObject"), 2, "{:?}", srv.counts());
    assert_eq!(stored_perm(&srv, "g"), 0o611);
}

#[tokio::test]
async fn a_file_removed_or_replaced_before_the_write_costs_no_copy() {
    let srv = TestServer::start().await;
    srv.put_object("gone", "1");
    srv.put_object("old", "2");
    srv.put_object("new", "3");
    let fs = fs(&srv);
    let gone = fs.lookup(ROOT_INO, "gone").await.expect("lookup").ino;
    let old = fs.lookup(ROOT_INO, "old").await.expect("lookup").ino;
    fs.lookup(ROOT_INO, "new").await.expect("lookup");
    srv.reset_counts();
    fs.setattr(gone, chmod(0o600), ME).await.expect("chmod");
    fs.unlink(ROOT_INO, "gone").await.expect("unlink");
    // `old` is replaced by `new` (renamed over it): its pending change must not land on `new`
    fs.setattr(old, chmod(0o600), ME).await.expect("chmod");
    fs.rename(ROOT_INO, "new", ROOT_INO, "old", 0)
        .await
        .expect("rename");
    written(&fs).await;
    // one copy: the rename's
    assert_eq!(srv.count("CopyObject"), 1, "{:?}", srv.counts());
    assert!(srv.object_meta("gone").is_none());
    assert_eq!(srv.get_object("old").as_deref(), Some(&b"3"[..]));
    assert_ne!(meta(&srv, "old", "mode").as_deref(), Some("33152"));
}

#[tokio::test]
async fn a_refused_write_reverts_to_what_the_bucket_holds() {
    let srv = TestServer::start().await;
    srv.put_object("locked", "z");
    let fs = fs(&srv);
    let ino = fs.lookup(ROOT_INO, "locked").await.expect("lookup").ino;
    let before = fs.getattr(ino).await.expect("getattr").perm;
    srv.add_fault(Fault::new(FaultKind::access_denied()).op("CopyObject"));
    let attr = fs.setattr(ino, chmod(0o600), ME).await.expect("chmod");
    assert_eq!(attr.perm, 0o600);
    written(&fs).await;
    assert!(srv.count("CopyObject") >= 1);
    srv.clear_faults();
    let after = fs.getattr(ino).await.expect("getattr");
    assert_eq!(
        after.perm, before,
        "the refused change is not shown as if stored"
    );
    assert!(meta(&srv, "locked", "mode").is_none());
}

#[tokio::test]
async fn a_directory_change_is_written_once_a_moment_later() {
    let srv = TestServer::start().await;
    let fs = fs(&srv);
    let d = fs.mkdir(ROOT_INO, "d", 0o755, ME).await.expect("mkdir");
    srv.reset_counts();
    // rsync -a on a directory: mode, then times
    let attr = fs.setattr(d.ino, chmod(0o700), ME).await.expect("chmod");
    assert_eq!(attr.perm, 0o700);
    fs.setattr(d.ino, touch(1_200_000_000), ME)
        .await
        .expect("utimens");
    assert_eq!(srv.count("CopyObject") + srv.count("PutObject"), 0);
    assert_eq!(fs.getattr(d.ino).await.expect("stat").perm, 0o700);
    written(&fs).await;
    assert_eq!(srv.count("CopyObject"), 1, "{:?}", srv.counts());
    assert_eq!(srv.count("PutObject"), 0, "{:?}", srv.counts());
    assert_eq!(stored_perm(&srv, "d/"), 0o700);
    assert_eq!(meta(&srv, "d/", "mtime").as_deref(), Some("1200000000"));
}

#[tokio::test]
async fn a_directory_without_marker_gets_one_at_once() {
    let srv = TestServer::start().await;
    srv.put_object("x/f", "f");
    let fs = fs(&srv);
    let x = fs.lookup(ROOT_INO, "x").await.expect("lookup x");
    srv.reset_counts();
    fs.setattr(x.ino, chmod(0o711), ME).await.expect("chmod");
    assert_eq!(srv.count("PutObject"), 1, "{:?}", srv.counts());
    assert_eq!(stored_perm(&srv, "x/"), 0o711);
}

#[tokio::test]
async fn a_directory_removed_before_its_change_is_written_stays_removed() {
    let srv = TestServer::start().await;
    let fs = fs(&srv);
    let d = fs.mkdir(ROOT_INO, "gone", 0o755, ME).await.expect("mkdir");
    fs.setattr(d.ino, chmod(0o700), ME).await.expect("chmod");
    fs.rmdir(ROOT_INO, "gone").await.expect("rmdir");
    written(&fs).await;
    assert!(srv.keys().is_empty(), "{:?}", srv.keys());
    assert_eq!(srv.count("CopyObject"), 0, "{:?}", srv.counts());
}

#[tokio::test]
async fn renaming_a_directory_carries_its_own_waiting_change() {
    let srv = TestServer::start().await;
    let fs = fs(&srv);
    let d = fs.mkdir(ROOT_INO, "d", 0o755, ME).await.expect("mkdir");
    fs.setattr(d.ino, chmod(0o750), ME).await.expect("chmod");
    fs.rename(ROOT_INO, "d", ROOT_INO, "e", 0)
        .await
        .expect("rename dir");
    assert_eq!(stored_perm(&srv, "e/"), 0o750);
    written(&fs).await;
    assert_eq!(srv.keys(), vec!["e/".to_string()]);
}

#[tokio::test]
async fn a_change_waiting_when_a_writer_opens_goes_with_its_upload() {
    let srv = TestServer::start().await;
    srv.put_object("log.txt", "one\n");
    let fs = fs(&srv);
    let ino = fs.lookup(ROOT_INO, "log.txt").await.expect("lookup").ino;
    fs.setattr(ino, chmod(0o600), ME).await.expect("chmod");
    // `chmod 600 f; echo two >> f` within the delay: one upload carries both, no copy
    let w = fs
        .open(ino, libc::O_WRONLY | libc::O_APPEND, ME)
        .await
        .expect("open for append");
    fs.write(w.fh, 4, b"two\n").await.expect("append");
    fs.flush(w.fh, 0).await.expect("close");
    fs.release(w.fh).await.expect("release");
    assert_eq!(
        srv.get_object("log.txt").as_deref(),
        Some(&b"one\ntwo\n"[..])
    );
    assert_eq!(stored_perm(&srv, "log.txt"), 0o600);
    written(&fs).await;
    assert_eq!(srv.count("CopyObject"), 0, "{:?}", srv.counts());
}

#[tokio::test]
async fn a_change_before_an_open_without_writes_is_still_written() {
    let srv = TestServer::start().await;
    srv.put_object("quiet", "q");
    let fs = fs(&srv);
    let ino = fs.lookup(ROOT_INO, "quiet").await.expect("lookup").ino;
    // open for writing while a change waits, then close without writing anything
    let w = fs.open(ino, libc::O_RDWR, ME).await.expect("open");
    fs.setattr(ino, chmod(0o640), ME).await.expect("chmod");
    // still open when the change is due: it waits for the writer (still waiting after four
    // times the delay)
    assert!(!fs.wait_metadata_written(DELAY * 4).await);
    assert!(meta(&srv, "quiet", "mode").is_none());
    fs.flush(w.fh, 0).await.expect("close");
    fs.release(w.fh).await.expect("release");
    written(&fs).await;
    assert_eq!(stored_perm(&srv, "quiet"), 0o640);
    assert_eq!(srv.get_object("quiet").as_deref(), Some(&b"q"[..]));
}

#[tokio::test]
async fn renaming_a_directory_carries_its_files_waiting_changes() {
    let srv = TestServer::start().await;
    srv.put_object("d/f", "f");
    let fs = fs(&srv);
    let d = fs.lookup(ROOT_INO, "d").await.expect("lookup d");
    let f = fs.lookup(d.ino, "f").await.expect("lookup f");
    fs.setattr(f.ino, chmod(0o604), ME).await.expect("chmod");
    fs.rename(ROOT_INO, "d", ROOT_INO, "e", 0)
        .await
        .expect("rename dir");
    assert!(srv.object_meta("d/f").is_none());
    assert_eq!(stored_perm(&srv, "e/f"), 0o604);
    written(&fs).await;
    assert_eq!(srv.keys(), vec!["e/f".to_string()]);
}

#[tokio::test]
async fn chmod_of_many_files_sends_their_copies_in_parallel() {
    let srv = TestServer::start().await;
    let fs = fs(&srv);
    let mut inos = Vec::new();
    for i in 0..24 {
        inos.push(write_file(&fs, ROOT_INO, &format!("f{i}"), b"data").await);
    }
    // each copy takes a while on the server: one after another they would never overlap
    srv.add_fault(Fault::new(FaultKind::Delay(Duration::from_millis(100))).op("CopyObject"));
    srv.reset_counts();
    for &ino in &inos {
        fs.setattr(ino, chmod(0o600), ME).await.expect("chmod");
    }
    written(&fs).await;
    assert_eq!(srv.count("CopyObject"), 24, "one copy per file");
    let peak = srv.peak_in_flight("CopyObject");
    assert!(peak >= 8, "at most {peak} copies at once");
    for i in 0..24 {
        assert_eq!(stored_perm(&srv, &format!("f{i}")), 0o600);
    }
}

#[tokio::test]
async fn the_bucket_root_keeps_chmod_and_times_for_the_mount() {
    let srv = TestServer::start().await;
    let fs = fs(&srv);
    srv.reset_counts();
    let attr = fs
        .setattr(ROOT_INO, chmod(0o700), ME)
        .await
        .expect("chmod of the root");
    assert_eq!(attr.perm, 0o700);
    let attr = fs
        .setattr(ROOT_INO, touch(1_500_000_000), ME)
        .await
        .expect("touch");
    assert_eq!(attr.mtime, UNIX_EPOCH + Duration::from_secs(1_500_000_000));
    written(&fs).await;
    assert_eq!(fs.getattr(ROOT_INO).await.expect("stat").perm, 0o700);
    assert_eq!(
        srv.total_requests(),
        0,
        "nothing to store it in: {:?}",
        srv.counts()
    );
}

#[tokio::test]
async fn an_xattr_change_changes_ctime() {
    let srv = TestServer::start().await;
    let fs = fs(&srv);
    let ino = write_file(&fs, ROOT_INO, "x.txt", b"data").await;
    let before = fs.getattr(ino).await.expect("stat").ctime;
    fs.setxattr(ino, "user.tag", b"v", 0)
        .await
        .expect("setxattr");
    let after = fs.getattr(ino).await.expect("stat").ctime;
    assert!(after > before, "setxattr left ctime alone");
    fs.removexattr(ino, "user.tag").await.expect("removexattr");
    assert!(fs.getattr(ino).await.expect("stat").ctime > after);
}

/// Requests the server has served so far, all kinds together.
fn requests(srv: &TestServer) -> u64 {
    srv.counts().values().sum()
}

#[tokio::test]
async fn what_memory_holds_is_answered_without_waiting_and_only_while_fresh() {
    let srv = TestServer::start().await;
    let fs = fs(&srv);
    let ino = write_file(&fs, ROOT_INO, "x.txt", b"data").await;
    fs.setxattr(ino, "user.tag", b"v", 0)
        .await
        .expect("setxattr");
    written(&fs).await;

    // a fresh mount: the first lookup asks the bucket, then memory answers
    let fs = fs_with_ttl(&srv, Duration::from_secs(3600));
    assert!(
        fs.lookup_now(ROOT_INO, "x.txt").is_none(),
        "nothing known yet"
    );
    let ino = fs.lookup(ROOT_INO, "x.txt").await.expect("lookup").ino;
    let before = requests(&srv);
    let attr = fs.lookup_now(ROOT_INO, "x.txt").expect("a known name");
    assert_eq!((attr.ino, attr.size), (ino, 4));
    assert_eq!(fs.getattr_now(ino).map(|a| a.size), Some(4));
    let tag = fs.getxattr_now(ino, "user.tag").expect("known metadata");
    assert_eq!(tag.expect("the tag"), b"v");
    let label = fs
        .getxattr_now(ino, "security.selinux")
        .expect("known metadata");
    assert_eq!(label.expect_err("no label").errno, libc::ENODATA);
    assert_eq!(requests(&srv), before, "answered from memory");
    // each lookup answered counts as a kernel reference: two lookups, two forgets
    fs.forget(ino, 1);
    assert!(fs.getattr_now(ino).is_some(), "still referenced once");
    fs.forget(ino, 1);
    assert!(fs.getattr_now(ino).is_none(), "forgotten");

    // expired attributes are never answered from memory; the async path fetches them
    let fs = fs_with_ttl(&srv, Duration::ZERO);
    let ino = fs.lookup(ROOT_INO, "x.txt").await.expect("lookup").ino;
    assert!(fs.lookup_now(ROOT_INO, "x.txt").is_none());
    assert!(fs.getattr_now(ino).is_none());
    assert!(fs.getxattr_now(ino, "user.tag").is_none());
    let before = requests(&srv);
    assert_eq!(fs.getxattr(ino, "user.tag").await.expect("the tag"), b"v");
    assert!(
        requests(&srv) > before,
        "the expired metadata was fetched again"
    );
}

fn fs_with_ttl(srv: &TestServer, ttl: Duration) -> Arc<Filesystem> {
    core_fs::fs_with(
        srv,
        FsConfig {
            metadata_ttl: ttl,
            metadata_write_delay: DELAY,
            ..FsConfig::default()
        },
    )
}

/// A lookup whose HEAD was answered before this mount rewrote (or chmod-ed) the file, and
/// whose answer arrived after: the mount keeps what it made. The late answer replaced it, and
/// until the attributes expired `stat` showed the older size and mode and reads gave the older
/// bytes.
#[tokio::test]
async fn an_answer_older_than_a_change_made_here_does_not_replace_it() {
    for change in ["rewrite", "chmod"] {
        let srv = TestServer::start().await;
        srv.put_object("f", "first");
        let fs = fs(&srv);
        // the first HEAD of `f` is answered now and held on its way back
        let gate = bucketfs_test_server::Gate::new();
        srv.add_fault(
            Fault::new(FaultKind::HoldResponse(gate.clone()))
                .op("HeadObject")
                .times(1),
        );
        let slow = tokio::spawn({
            let fs = fs.clone();
            async move { fs.lookup(ROOT_INO, "f").await }
        });
        gate.held().await;
        let f = fs.lookup(ROOT_INO, "f").await.expect("lookup");
        let want: &[u8] = match change {
            "rewrite" => {
                let o = fs
                    .open(f.ino, libc::O_WRONLY | libc::O_TRUNC, ME)
                    .await
                    .expect("open");
                fs.write(o.fh, 0, b"second!!").await.expect("write");
                fs.flush(o.fh, 0).await.expect("close");
                fs.release(o.fh).await.expect("release");
                b"second!!"
            }
            _ => {
                fs.setattr(f.ino, chmod(0o600), ME).await.expect("chmod");
                written(&fs).await;
                b"first"
            }
        };
        let mode = fs.getattr(f.ino).await.expect("stat").perm;
        gate.open();
        slow.await.expect("task").expect("slow lookup");
        let attr = fs.getattr(f.ino).await.expect("stat");
        assert_eq!(attr.size, want.len() as u64, "{change}");
        assert_eq!(attr.perm, mode, "{change}");
        assert_eq!(read_all(&fs, f.ino).await, want, "{change}");
    }
}

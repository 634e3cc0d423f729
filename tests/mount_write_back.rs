//! Write-back (`--write-back`) on real mounts: `cp -r` returns before the uploads, which land
//! byte-identical with their s3fs metadata; kill -9 with uploads pending (also with the server
//! away until after the remount) loses nothing, duplicates nothing and leaves no upload open;
//! a change made elsewhere keeps both versions; fsync and `sync DIR` wait for the bucket;
//! unmount sends everything; rename and unlink of waiting files end with the right keys.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use bucketfs_test_server::{Fault, FaultKind};
use common::*;

fn cache_dir() -> (tempfile::TempDir, String) {
    let cache = tempfile::tempdir().expect("cache");
    let arg = cache.path().to_string_lossy().into_owned();
    (cache, arg)
}

/// Until `cond` holds (polled; 120 s at most).
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A figure of the mount's stats file.
fn stat(m: &Mount, name: &str) -> u64 {
    let text = std::fs::read_to_string(m.p(".bucketfs/stats")).expect("stats");
    text.lines()
        .find_map(|l| {
            let (n, v) = l.split_once(' ')?;
            (n == name).then(|| v.trim().parse().ok())?
        })
        .unwrap_or_else(|| panic!("no {name} in the stats:\n{text}"))
}

/// `n` files of 4 KiB in `dir/tree`, each different.
fn small_tree(dir: &Path, n: usize) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    for i in 0..n {
        let rel = format!("d{:02}/f{i:04}", i % 20);
        let data = pattern(4096, i as u64);
        let path = dir.join("tree").join(&rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, &data).expect("write");
        files.push((rel, data));
    }
    files
}

/// The bucket's objects, directory markers left out.
fn object_keys(srv: &Server) -> Vec<String> {
    srv.keys()
        .into_iter()
        .filter(|k| !k.ends_with('/'))
        .collect()
}

/// Every upload refused (the server unable to take them) until the faults are cleared.
fn refuse_uploads(srv: &Server) {
    for op in [
        "PutObject",
        "CreateMultipartUpload",
        "CompleteMultipartUpload",
    ] {
        srv.add_fault(Fault::new(FaultKind::status(503, "ServiceUnavailable")).op(op));
    }
}

#[test]
fn cp_r_of_2000_small_files_returns_first_and_lands_byte_identical() {
    if !fuse_available() {
        return;
    }
    let srv = server();
    let src = tempfile::tempdir().expect("src");
    let files = small_tree(src.path(), 2000);
    let m = Mount::new(&srv, &["--write-back"]);
    sh(&format!(
        "cp -r {}/tree {}",
        src.path().display(),
        m.p("").display()
    ));
    wait_for("the uploads", || stat(&m, "write_back_pending_files") == 0);
    for (rel, data) in &files {
        let key = format!("tree/{rel}");
        let got = srv
            .get_object(&key)
            .unwrap_or_else(|| panic!("{key} missing"));
        assert_eq!(sha256(&got), sha256(data), "{key}");
    }
    let meta = srv.object_meta("tree/d00/f0000").expect("meta");
    for name in ["mode", "uid", "gid", "mtime"] {
        assert!(meta.metadata.contains_key(name), "{name} missing: {meta:?}");
    }
    if let Some(counting) = srv.counting() {
        // one per file, and one per directory marker (tree and its 20 directories)
        assert_eq!(counting.count("PutObject"), 2021, "{:?}", counting.counts());
    }
}

#[test]
fn kill_9_with_uploads_pending_then_remount_loses_nothing() {
    if !fuse_available() {
        return;
    }
    let srv = server();
    // the in-process server's faults (SKIP against another server)
    let _ = srv.counting().expect(SKIP_EXTERNAL);
    let (_cache, cache_arg) = cache_dir();
    let src = tempfile::tempdir().expect("src");
    let mut files = small_tree(src.path(), 200);
    let big = pattern(12 << 20, 77);
    std::fs::write(src.path().join("tree/big.bin"), &big).expect("big");
    files.push(("big.bin".into(), big));
    let mut m = Mount::new(&srv, &["--write-back", "--cache-dir", &cache_arg]);
    // the uploads go slowly: most still wait when cp returns
    srv.add_fault(Fault::new(FaultKind::Delay(Duration::from_millis(200))).op("PutObject"));
    sh(&format!(
        "cp -r {}/tree {}",
        src.path().display(),
        m.p("").display()
    ));
    assert!(
        stat(&m, "write_back_pending_files") > 0,
        "nothing was pending"
    );
    m.kill();
    srv.clear_faults();
    let m = Mount::new(&srv, &["--write-back", "--cache-dir", &cache_arg]);
    let mut want: Vec<String> = files.iter().map(|(r, _)| format!("tree/{r}")).collect();
    want.sort();
    wait_for("every file in the bucket", || {
        object_keys(&srv) == want && srv.multipart_uploads().is_empty()
    });
    assert_eq!(object_keys(&srv), want, "a missing or duplicate object");
    for (rel, data) in &files {
        let got = srv.get_object(&format!("tree/{rel}")).expect("object");
        assert_eq!(sha256(&got), sha256(data), "{rel}");
    }
    assert!(
        m.log_text().contains("resuming"),
        "the log does not say what was resumed:\n{}",
        m.log_text()
    );
}

#[test]
fn the_server_away_from_the_copy_until_after_the_remount() {
    if !fuse_available() {
        return;
    }
    let srv = server();
    // the in-process server's faults (SKIP against another server)
    let _ = srv.counting().expect(SKIP_EXTERNAL);
    let (_cache, cache_arg) = cache_dir();
    let src = tempfile::tempdir().expect("src");
    let files = small_tree(src.path(), 50);
    let args = [
        "--write-back",
        "--cache-dir",
        &cache_arg,
        "--retry-timeout",
        "2",
    ];
    let mut m = Mount::new(&srv, &args);
    refuse_uploads(&srv);
    sh(&format!(
        "cp -r {}/tree {}",
        src.path().display(),
        m.p("").display()
    ));
    // the mount shows what it holds
    assert_eq!(
        std::fs::read(m.p("tree/d03/f0003")).expect("read back"),
        files[3].1
    );
    m.kill();
    let m = Mount::new(&srv, &args);
    assert!(srv.keys().is_empty());
    // the server comes back after the remount
    srv.clear_faults();
    wait_for("every file in the bucket", || {
        object_keys(&srv).len() == files.len()
    });
    // the directory markers too (mode and owner of the directories)
    wait_for("the markers", || srv.keys().len() == files.len() + 21);
    for (rel, data) in &files {
        let got = srv.get_object(&format!("tree/{rel}")).expect("object");
        assert_eq!(sha256(&got), sha256(data), "{rel}");
    }
    drop(m);
}

#[test]
fn a_change_made_elsewhere_while_waiting_keeps_both_versions() {
    if !fuse_available() {
        return;
    }
    let srv = server();
    // the in-process server's faults (SKIP against another server)
    let _ = srv.counting().expect(SKIP_EXTERNAL);
    srv.put_object("notes.txt", "first version");
    let m = Mount::new(&srv, &["--write-back", "--retry-timeout", "2"]);
    assert_eq!(
        std::fs::read_to_string(m.p("notes.txt")).expect("read"),
        "first version"
    );
    refuse_uploads(&srv);
    write_checked(m.p("notes.txt"), "edited on the mount").expect("write");
    srv.put_object("notes.txt", "edited by another client");
    srv.clear_faults();
    wait_for("the upload", || stat(&m, "write_back_pending_files") == 0);
    assert_eq!(
        srv.get_object("notes.txt").expect("notes").as_ref(),
        b"edited by another client"
    );
    let conflict: Vec<String> = srv
        .keys()
        .into_iter()
        .filter(|k| k.starts_with("notes.txt.conflict-"))
        .collect();
    let log: Vec<String> = srv
        .counting()
        .map(|c| {
            c.request_log()
                .iter()
                .map(|r| format!("{} {} {:?}", r.op, r.path, r.status))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        conflict.len(),
        1,
        "{:?}\n{log:#?}\n{}",
        srv.keys(),
        m.log_text()
    );
    assert_eq!(
        srv.get_object(&conflict[0]).expect("conflict").as_ref(),
        b"edited on the mount"
    );
    assert!(m.log_text().contains("both are kept"), "{}", m.log_text());
}

#[test]
fn fsync_and_sync_dir_wait_for_the_bucket_and_unmount_sends_the_rest() {
    if !fuse_available() {
        return;
    }
    let srv = server();
    // the in-process server's faults (SKIP against another server)
    let _ = srv.counting().expect(SKIP_EXTERNAL);
    let mut m = Mount::new(&srv, &["--write-back", "--retry-timeout", "2"]);
    // uploads of "later*" wait (refused); the others go when asked
    srv.add_fault(
        Fault::new(FaultKind::status(503, "ServiceUnavailable"))
            .op("PutObject")
            .key_prefix("later"),
    );
    std::fs::create_dir(m.p("sub")).expect("mkdir");
    for i in 0..5 {
        write_checked(m.p(&format!("later{i}")), format!("later {i}")).expect("write");
        write_checked(m.p(&format!("sub/s{i}")), format!("sub {i}")).expect("write");
    }
    // fsync of one file: in the bucket when it returns
    sh(&format!(
        "python3 -c \"import os; f=os.open('{}', os.O_WRONLY|os.O_CREAT); \
         os.write(f, b'synced'); os.fsync(f); os.close(f)\"",
        m.p("synced").display()
    ));
    assert_eq!(
        srv.get_object("synced").expect("synced").as_ref(),
        b"synced"
    );
    // `sync DIR`: every file under it
    sh(&format!("sync {}", m.p("sub").display()));
    for i in 0..5 {
        assert!(srv.get_object(&format!("sub/s{i}")).is_some(), "sub/s{i}");
    }
    assert!(srv.get_object("later0").is_none());
    // unmount returns once the rest is in the bucket
    srv.clear_faults();
    assert!(m.unmount(), "unmount failed:\n{}", m.log_text());
    for i in 0..5 {
        assert_eq!(
            srv.get_object(&format!("later{i}"))
                .expect("later")
                .as_ref(),
            format!("later {i}").as_bytes()
        );
    }
}

#[test]
fn rename_and_unlink_of_waiting_files_end_with_the_right_keys() {
    if !fuse_available() {
        return;
    }
    let srv = server();
    // the in-process server's faults (SKIP against another server)
    let _ = srv.counting().expect(SKIP_EXTERNAL);
    let m = Mount::new(&srv, &["--write-back", "--retry-timeout", "2"]);
    refuse_uploads(&srv);
    write_checked(m.p("draft.tmp"), "final text").expect("write");
    write_checked(m.p("scratch"), "never uploaded").expect("write");
    std::fs::write(m.p("big.tmp"), pattern(7 << 20, 3)).expect("big");
    sh(&format!(
        "mv {d}/draft.tmp {d}/final.txt && mv {d}/big.tmp {d}/big.bin && rm {d}/scratch",
        d = m.p("").display()
    ));
    srv.clear_faults();
    wait_for("the uploads", || stat(&m, "write_back_pending_files") == 0);
    assert_eq!(
        srv.keys(),
        vec!["big.bin".to_string(), "final.txt".to_string()]
    );
    assert_eq!(
        sha256(&srv.get_object("big.bin").expect("big")),
        sha256(&pattern(7 << 20, 3))
    );
    assert!(srv.multipart_uploads().is_empty());
}

//! Never lose data: random faults, a server that goes away, crashes (kill -9) mid-write and
//! mid-close, the part cache on disk, hostile keys.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use bucketfs_test_server::{Fault, FaultKind, RandomFaults};
use common::*;

/// A staging dir of the test's own, and its path as an argument.
fn cache_dir() -> (tempfile::TempDir, String) {
    let cache = tempfile::tempdir().expect("cache");
    let arg = cache.path().to_string_lossy().into_owned();
    (cache, arg)
}

/// Files in a staging dir, its lock file aside.
fn staged_files(cache: &std::path::Path) -> usize {
    let out = sh(&format!(
        "find {}/parts -type f ! -name .lock | wc -l",
        cache.display()
    ));
    out.trim().parse().expect("a count")
}

#[test]
fn five_percent_of_requests_failing_loses_nothing() {
    if !fuse_available() {
        return;
    }
    let srv = server();
    let m = Mount::new(&srv, &["--max-memory", "64M"]);
    srv.set_random_faults(0.05, 42);
    let src = tempfile::tempdir().expect("tmp");
    for i in 0..1000u64 {
        std::fs::write(
            src.path().join(format!("s{i:04}")),
            pattern(1000 + i as usize, i),
        )
        .expect("src");
    }
    sh(&format!(
        "cp -r {}/. {}",
        src.path().display(),
        m.p("small").display()
    ));
    let big = 200 * 1024 * 1024;
    let handles: Vec<_> = (0..3u64)
        .map(|i| {
            let path = m.p(&format!("big{i}"));
            std::thread::spawn(move || {
                let mut f = std::fs::File::create(path).expect("create");
                for c in 0..(big / (4 << 20)) {
                    f.write_all(&pattern(4 << 20, 1000 * i + c as u64))
                        .expect("write");
                }
                f.sync_all().expect("fsync");
            })
        })
        .collect();
    for h in handles {
        h.join().expect("writer");
    }
    assert!(srv.faults_injected() > 10, "faults were injected");
    srv.clear_faults();
    for i in 0..1000u64 {
        let got = srv
            .get_object(&format!("small/s{i:04}"))
            .expect("small object");
        assert_eq!(got, pattern(1000 + i as usize, i), "small/s{i:04}");
    }
    for i in 0..3u64 {
        let got = srv.get_object(&format!("big{i}")).expect("big object");
        assert_eq!(got.len(), big);
        for (c, chunk) in got.chunks(4 << 20).enumerate() {
            assert!(
                chunk == &pattern(4 << 20, 1000 * i + c as u64)[..],
                "big{i} chunk {c}"
            );
        }
    }
    // reads under faults: the right bytes or an error, never wrong bytes
    drop(m);
    let m = Mount::new(&srv, &["--max-memory", "64M"]);
    srv.set_random_faults(0.05, 7);
    let want = srv.get_object("big1").expect("big1");
    let mut f = std::fs::File::open(m.p("big1")).expect("open");
    let mut got = Vec::new();
    match f.read_to_end(&mut got) {
        Ok(_) => assert!(got == want[..], "wrong bytes under faults"),
        Err(e) => assert!(e.raw_os_error().is_some()),
    }
    srv.clear_faults();
}

#[test]
fn bodies_damaged_on_the_way_are_never_stored_or_served() {
    if !fuse_available() {
        return;
    }
    let srv = server();
    let Some(ts) = srv.counting() else {
        return; // the damage is done by the in-process server
    };
    // the probe finds that ETags are MD5s: whole-object reads are checked against them
    let m = Mount::new(&srv, &["--probe", "always"]);
    let damage = |ops: &[&str], seed| RandomFaults {
        ops: Some(ops.iter().map(|o| o.to_string()).collect()),
        kinds: vec![FaultKind::CorruptRequest, FaultKind::CorruptResponse],
        ..RandomFaults::new(0.2, seed)
    };
    ts.set_random_faults_config(damage(&["PutObject", "UploadPart"], 3));
    let src = tempfile::tempdir().expect("tmp");
    for i in 0..200u64 {
        std::fs::write(
            src.path().join(format!("f{i:03}")),
            pattern(3000 + i as usize, i),
        )
        .expect("src");
    }
    std::fs::write(src.path().join("large"), pattern(20 << 20, 999)).expect("src");
    sh(&format!(
        "cp -r {}/. {}",
        src.path().display(),
        m.p("d").display()
    ));
    ts.clear_faults();
    for i in 0..200u64 {
        let got = srv.get_object(&format!("d/f{i:03}")).expect("object");
        assert!(
            got == pattern(3000 + i as usize, i),
            "d/f{i:03} stored damaged"
        );
    }
    assert!(srv.get_object("d/large").expect("large") == pattern(20 << 20, 999));
    // and back: damaged GET bodies are fetched again
    drop(m);
    let m = Mount::new(&srv, &["--probe", "always"]);
    ts.set_random_faults_config(damage(&["GetObject"], 4));
    for i in 0..200u64 {
        let got = std::fs::read(m.p(&format!("d/f{i:03}"))).expect("read");
        assert!(
            got == pattern(3000 + i as usize, i),
            "d/f{i:03} served damaged"
        );
    }
    ts.clear_faults();
    assert!(ts.faults_injected() > 40, "{}", ts.faults_injected());
    let stats = std::fs::read_to_string(m.p(".bucketfs/stats")).expect("stats");
    let failures: u64 = stats
        .lines()
        .find_map(|l| l.strip_prefix("s3_checksum_failures "))
        .and_then(|v| v.parse().ok())
        .expect("s3_checksum_failures in stats");
    assert!(failures > 10, "{stats}");
}

#[test]
fn server_gone_mid_upload_gives_eio_and_names_the_key() {
    if !fuse_available() {
        return;
    }
    let srv = server();
    let m = Mount::new(&srv, &["--retry-timeout", "3"]);
    let mut f = std::fs::File::create(m.p("doomed.bin")).expect("create");
    f.write_all(&pattern(20 << 20, 1)).expect("first parts");
    srv.stop_blocking();
    let started = Instant::now();
    let mut failed = f.write_all(&pattern(20 << 20, 2)).is_err();
    failed |= f.sync_all().is_err();
    drop(f);
    assert!(failed, "fsync/close must fail with the server gone");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "retries are bounded"
    );
    srv.restart_blocking();
    assert!(srv.get_object("doomed.bin").is_none(), "partial object");
    let log = m.log_text();
    assert!(log.contains("doomed.bin"), "log names the key: {log}");
}

#[test]
fn many_writers_fit_with_the_part_cache_on_disk() {
    if !fuse_available() {
        return;
    }
    let srv = server();
    let (cache, cache_arg) = cache_dir();
    let m = Mount::new(&srv, &["--cache-dir", &cache_arg, "--max-memory", "16M"]);
    let size = 20 * 1024 * 1024 + 3;
    let handles: Vec<_> = (0..16u64)
        .map(|i| {
            let path = m.p(&format!("w{i}"));
            std::thread::spawn(move || {
                let data = pattern(size, 50 + i);
                let mut f = std::fs::File::create(path).expect("create");
                for chunk in data.chunks(256 * 1024) {
                    f.write_all(chunk).expect("write");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("writer");
    }
    for i in 0..16u64 {
        assert_eq!(
            srv.get_object(&format!("w{i}")).expect("object"),
            pattern(size, 50 + i)
        );
    }
    // the parts wait for memory instead of going over the budget: the daemon's peak is the
    // budget plus a fixed overhead, whatever the number of writers
    let peak = m.peak_rss();
    eprintln!("daemon peak RSS {} MiB", peak >> 20);
    assert!(peak < (16 + 48) << 20, "peak RSS {} MiB", peak >> 20);
    // completed uploads' part files are removed in the background; unmount waits for that
    let mut m = m;
    assert!(m.unmount(), "unmount");
    assert_eq!(staged_files(cache.path()), 0, "part files left behind");
}

#[test]
fn crash_mid_write_is_aborted_at_the_next_mount() {
    if !fuse_available() {
        return;
    }
    let srv = server();
    let (_cache, cache_arg) = cache_dir();
    let mut m = Mount::new(&srv, &["--cache-dir", &cache_arg]);
    let mut f = std::fs::File::create(m.p("half.bin")).expect("create");
    f.write_all(&pattern(20 << 20, 9)).expect("write");
    for _ in 0..100 {
        if srv.count("UploadPart") >= 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    m.kill();
    drop(f);
    assert_eq!(
        srv.multipart_uploads().len(),
        1,
        "the crash left an upload open"
    );
    let m = Mount::new(&srv, &["--cache-dir", &cache_arg]);
    wait_for(|| srv.multipart_uploads().is_empty());
    assert!(srv.get_object("half.bin").is_none());
    // the log line follows the abort's answer
    wait_for(|| m.log_text().contains("aborted an unfinished upload"));
}

#[test]
fn a_crash_while_a_changed_large_object_commits_leaves_no_upload_and_the_old_version() {
    if !fuse_available() {
        return;
    }
    let srv = server();
    let original = pattern(12 << 20, 21);
    srv.put_object("db.bin", original.clone());
    let (_cache, cache_arg) = cache_dir();
    let mut m = Mount::new(&srv, &["--cache-dir", &cache_arg, "--retry-timeout", "60"]);
    // the commit's Complete keeps failing: the fsync is still retrying when the daemon dies
    srv.add_fault(Fault::new(FaultKind::internal_error()).op("CompleteMultipartUpload"));
    let path = m.p("db.bin");
    let writer = std::thread::spawn(move || {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .expect("open");
        f.write_all_at(&[0xEE; 4096], 6 << 20).expect("pwrite");
        let _ = f.sync_all();
    });
    wait_for(|| srv.count("CompleteMultipartUpload") >= 1);
    m.kill();
    writer.join().expect("writer");
    assert_eq!(srv.multipart_uploads().len(), 1, "the crash left an upload");
    srv.clear_faults();
    let m = Mount::new(&srv, &["--cache-dir", &cache_arg]);
    wait_for(|| srv.multipart_uploads().is_empty());
    assert_eq!(
        sha256(&srv.get_object("db.bin").expect("object")),
        sha256(&original),
        "not the old version"
    );
    wait_for(|| m.log_text().contains("aborted an unfinished upload"));
}

#[test]
fn staging_a_killed_daemon_left_is_cleaned_at_the_next_mount() {
    if !fuse_available() {
        return;
    }
    let srv = server();
    let (cache, cache_arg) = cache_dir();
    let mut m = Mount::new(&srv, &["--cache-dir", &cache_arg]);
    // a small file being written: its bytes are only in the staging area (a write that is not
    // an append takes them there; appended ones are held in memory, with no file, until then)
    let mut f = std::fs::File::create(m.p("small.txt")).expect("create");
    f.write_all(b"never closed").expect("write");
    std::os::unix::fs::FileExt::write_all_at(&f, b"N", 0).expect("pwrite");
    assert_eq!(staged_files(cache.path()), 1);
    m.kill();
    drop(f);
    assert_eq!(staged_files(cache.path()), 1, "left behind by the crash");
    let _m = Mount::new(&srv, &["--cache-dir", &cache_arg]);
    assert_eq!(staged_files(cache.path()), 0, "cleaned at the next mount");
    assert!(srv.get_object("small.txt").is_none());
}

#[test]
fn a_closed_file_whose_upload_was_cut_by_a_crash_is_resumed() {
    if !fuse_available() {
        return;
    }
    let srv = server();
    let (_cache, cache_arg) = cache_dir();
    let data = pattern(20 << 20, 11);
    crash_while_completing(&srv, &cache_arg, "resume.bin", &data);
    assert!(srv.get_object("resume.bin").is_none());
    let m = Mount::new(&srv, &["--cache-dir", &cache_arg]);
    wait_for(|| srv.get_object("resume.bin").is_some());
    assert!(srv.get_object("resume.bin").expect("resumed") == data[..]);
    assert!(srv.multipart_uploads().is_empty());
    wait_for(|| m.log_text().contains("resumed the upload"));
}

#[test]
fn a_key_written_elsewhere_after_a_crash_is_not_overwritten_by_the_resume() {
    if !fuse_available() {
        return;
    }
    let srv = server();
    let (_cache, cache_arg) = cache_dir();
    let data = pattern(12 << 20, 14);
    crash_while_completing(&srv, &cache_arg, "theirs.bin", &data);
    // another client creates the key while this machine is down
    srv.put_object("theirs.bin", &b"written elsewhere"[..]);
    let m = Mount::new(&srv, &["--cache-dir", &cache_arg]);
    wait_for(|| m.log_text().contains("not overwritten"));
    assert_eq!(
        srv.get_object("theirs.bin").as_deref(),
        Some(&b"written elsewhere"[..])
    );
    let kept = conflict_copies(&srv, "theirs.bin");
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(srv.get_object(&kept[0]).expect("kept") == data[..]);
    assert!(srv.multipart_uploads().is_empty());
}

#[test]
fn a_file_refused_with_estale_lands_beside_the_other_clients_object_at_unmount() {
    if !fuse_available() {
        return;
    }
    let srv = server();
    let (_cache, cache_arg) = cache_dir();
    let mut m = Mount::new(&srv, &["--cache-dir", &cache_arg]);
    let data = pattern(20 << 20, 15);
    let mut f = std::fs::File::create(m.p("race.bin")).expect("create");
    f.write_all(&data).expect("write");
    // another client creates the same name before this one is done
    srv.put_object("race.bin", &b"theirs"[..]);
    let err = f.sync_all().expect_err("must not clobber");
    assert_eq!(err.raw_os_error(), Some(libc::ESTALE), "{err}");
    drop(f);
    assert!(m.unmount(), "{}", m.log_text());
    assert_eq!(srv.get_object("race.bin").as_deref(), Some(&b"theirs"[..]));
    let kept = conflict_copies(&srv, "race.bin");
    assert_eq!(kept.len(), 1, "{kept:?}: {}", m.log_text());
    assert!(srv.get_object(&kept[0]).expect("kept") == data[..]);
    assert!(srv.multipart_uploads().is_empty());
    assert!(m.log_text().contains("both are kept"));
}

#[test]
fn a_resume_that_fails_keeps_the_closed_file_for_the_next_mount() {
    if !fuse_available() {
        return;
    }
    let srv = server();
    let (_cache, cache_arg) = cache_dir();
    let data = pattern(12 << 20, 13);
    crash_while_completing(&srv, &cache_arg, "kept.bin", &data);
    // the next mount cannot send the parts: the file is kept, not aborted
    srv.add_fault(Fault::new(FaultKind::internal_error()).op("UploadPart"));
    let mut m = Mount::new(&srv, &["--cache-dir", &cache_arg, "--retry-timeout", "2"]);
    wait_for(|| m.log_text().contains("could not resume the upload"));
    assert_eq!(srv.multipart_uploads().len(), 1, "the upload stays open");
    assert!(m.unmount());
    srv.clear_faults();
    let m = Mount::new(&srv, &["--cache-dir", &cache_arg]);
    wait_for(|| m.log_text().contains("resumed the upload"));
    assert!(srv.get_object("kept.bin").expect("resumed") == data[..]);
}

#[test]
fn an_upload_resumed_by_a_mount_with_other_checksums_keeps_its_own() {
    if !fuse_available() {
        return;
    }
    let srv = server();
    let Some(ts) = srv.counting() else {
        return; // the checksum rules are the in-process server's
    };
    let (_cache, cache_arg) = cache_dir();
    let data = pattern(12 << 20, 12);
    // created with CRC32C: the server wants CRC32C parts and every one named in the Complete
    crash_while_completing_with(
        &srv,
        &cache_arg,
        "crc.bin",
        &data,
        &["--upload-checksums", "crc32c"],
    );
    let before = ts.requests_for("UploadPart").len();
    // resumed by a mount sending MD5s: the resumed parts still carry CRC32C
    let m = Mount::new(
        &srv,
        &["--cache-dir", &cache_arg, "--upload-checksums", "md5"],
    );
    wait_for(|| m.log_text().contains("resumed the upload"));
    assert!(srv.get_object("crc.bin").expect("resumed") == data[..]);
    let resumed = &ts.requests_for("UploadPart")[before..];
    assert!(!resumed.is_empty());
    assert!(resumed
        .iter()
        .all(|r| r.headers.iter().any(|(n, _)| n == "x-amz-checksum-crc32c")));
}

/// The keys a conflict kept beside `name` (`NAME.conflict-UTC`).
fn conflict_copies(srv: &Server, name: &str) -> Vec<String> {
    let stem = format!("{name}.conflict-");
    srv.keys()
        .into_iter()
        .filter(|k| k.starts_with(&stem))
        .collect()
}

/// Write `name` (`data`, closed with fsync) while every CompleteMultipartUpload fails, so the
/// close keeps retrying, then kill -9 the daemon: a closed file whose parts are all staged.
fn crash_while_completing(srv: &Server, cache_arg: &str, name: &str, data: &[u8]) {
    crash_while_completing_with(srv, cache_arg, name, data, &[]);
}

fn crash_while_completing_with(
    srv: &Server,
    cache_arg: &str,
    name: &str,
    data: &[u8],
    extra: &[&str],
) {
    let mut args = vec!["--cache-dir", cache_arg, "--retry-timeout", "60"];
    args.extend_from_slice(extra);
    let mut m = Mount::new(srv, &args);
    srv.add_fault(Fault::new(FaultKind::internal_error()).op("CompleteMultipartUpload"));
    let path = m.p(name);
    let writer = {
        let data = data.to_vec();
        std::thread::spawn(move || {
            let mut f = std::fs::File::create(path).expect("create");
            f.write_all(&data).expect("write");
            let _ = f.sync_all();
        })
    };
    wait_for(|| srv.count("CompleteMultipartUpload") >= 2);
    m.kill();
    let _ = writer.join();
    srv.clear_faults();
}

#[test]
fn a_write_during_recovery_is_not_overwritten_by_the_resumed_old_upload() {
    if !fuse_available() {
        return;
    }
    let srv = server();
    let (_cache, cache_arg) = cache_dir();
    crash_while_completing(&srv, &cache_arg, "doc.bin", &pattern(20 << 20, 12));
    // the next mount's recovery is slow to start; the user writes the file anew meanwhile
    srv.add_fault(
        Fault::new(FaultKind::Delay(Duration::from_millis(1500)))
            .op("ListMultipartUploads")
            .times(1),
    );
    let m = Mount::new(&srv, &["--cache-dir", &cache_arg]);
    let newer = pattern(1000, 13);
    write_checked(m.p("doc.bin"), &newer).expect("write anew");
    wait_for(|| srv.multipart_uploads().is_empty());
    wait_for(|| m.log_text().contains("resumed the upload"));
    let stored = srv.get_object("doc.bin").expect("object");
    assert_eq!(
        sha256(&stored),
        sha256(&newer),
        "the old upload landed over the newer write ({} bytes)",
        stored.len()
    );
}

#[test]
fn a_thousand_hostile_keys_never_break_listing_or_stat() {
    if !fuse_available() {
        return;
    }
    let srv = server();
    let mut good = std::collections::BTreeSet::new();
    for i in 0..1000 {
        let key = match i % 10 {
            0 => format!("h/ctrl\u{1}{i}"),
            1 => {
                // a 1,024-byte key (S3's limit) whose last segment is too long for a name
                let head = format!("h/{i}/");
                format!("{head}{}", "k".repeat(1024 - head.len()))
            }
            2 => format!("h/./dot{i}"),
            3 => format!("h/../up{i}"),
            4 => format!("h/dbl//{i}"),
            5 => format!("h/tab\t{i}"),
            6 => format!("h/nl\n{i}"),
            7 => format!("h/data-dir{i}/"),
            8 => format!("h/spaces  {i} "),
            _ => format!("h/ok{i}"),
        };
        srv.put_object(&key, format!("v{i}"));
        if matches!(i % 10, 0 | 5 | 6 | 8 | 9) {
            good.insert(key.trim_start_matches("h/").to_string());
        }
    }
    // `a`, `a/` and `a/b` all at once
    srv.put_object("h/a", "file a");
    srv.put_object("h/a/", "");
    srv.put_object("h/a/b", "b");
    let m = Mount::new(&srv, &[]);
    let listed: std::collections::BTreeSet<String> = std::fs::read_dir(m.p("h"))
        .expect("ls")
        .map(|e| e.expect("e").file_name().to_string_lossy().into_owned())
        .collect();
    for name in &good {
        assert!(listed.contains(name), "{name:?} missing");
        let md = std::fs::metadata(m.p("h").join(name)).expect("stat");
        assert!(md.is_file());
    }
    assert!(m.p("h/a").is_dir());
    assert_eq!(std::fs::read(m.p("h/a/b")).expect("read"), b"b");
    for name in &listed {
        // every listed entry can be stat'ed
        std::fs::symlink_metadata(m.p("h").join(name)).unwrap_or_else(|e| panic!("{name:?}: {e}"));
    }
    // list again (and a directory with over-long names): each bad key is warned about once
    let _ = std::fs::read_dir(m.p("h/1")).expect("ls").count();
    let _ = std::fs::read_dir(m.p("h/11")).expect("ls").count();
    let log = m.log_text();
    let dot_warnings = log
        .lines()
        .filter(|l| l.contains("left out of the listing") && l.ends_with("key=h/./"))
        .count();
    assert_eq!(dot_warnings, 1, "{log}");
    assert!(log.contains("longer than 255 bytes"), "{log}");
}

fn wait_for(mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting");
        std::thread::sleep(Duration::from_millis(100));
    }
}

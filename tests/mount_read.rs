//! Real mounts, read side: what ls, stat, cat and find see against what the bucket holds.

mod common;

use std::collections::BTreeSet;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;

use common::*;

fn names(dir: &std::path::Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn tree_with_and_without_markers_reads_like_the_bucket() {
    if !fuse_available() {
        return;
    }
    let srv = server();
    srv.put_object("top.txt", "hello");
    srv.put_object("a/b.txt", "b");
    srv.put_object("a/c/d.txt", "ddd");
    srv.put_object("empty-marker/", "");
    srv.put_object("marked/", "");
    srv.put_object("marked/in.txt", "in");
    srv.put_object("nomarker/deep/er/x", "x");
    let m = Mount::new(&srv, &[]);

    assert_eq!(
        names(m.path()),
        set(&["top.txt", "a", "empty-marker", "marked", "nomarker"])
    );
    assert_eq!(names(&m.p("a")), set(&["b.txt", "c"]));
    assert_eq!(names(&m.p("empty-marker")), set(&[]));
    assert_eq!(names(&m.p("marked")), set(&["in.txt"]));
    assert!(m.p("nomarker/deep/er").is_dir());
    let md = std::fs::metadata(m.p("top.txt")).expect("stat");
    assert!(md.is_file());
    assert_eq!(md.len(), 5);
    assert_eq!(md.mode() & 0o777, 0o644);
    assert!(std::fs::metadata(m.p("a/c")).expect("stat").is_dir());
    assert_eq!(std::fs::read(m.p("a/c/d.txt")).expect("read"), b"ddd");
    assert_eq!(
        std::fs::read(m.p("nomarker/deep/er/x")).expect("read"),
        b"x"
    );
    assert!(std::fs::metadata(m.p("missing")).is_err());
    let found = sh(&format!("find {} | wc -l", m.path().display()));
    // root, top.txt, a, a/b.txt, a/c, a/c/d.txt, empty-marker, marked, marked/in.txt,
    // nomarker, deep, er, x
    assert_eq!(found.trim(), "13");
}

#[test]
fn fifteen_hundred_keys_in_one_directory_are_all_listed() {
    if !fuse_available() {
        return;
    }
    let srv = server();
    let mut want = BTreeSet::new();
    for i in 0..1500 {
        // a page ends at key 999: RGW's continuation token is that raw key, `%` and all
        let name = format!("f{i:05}{}", ["", " sp", "+plus", "%pct"][i % 4]);
        srv.put_object(&format!("big/{name}"), format!("{i}"));
        want.insert(name);
    }
    let m = Mount::new(&srv, &[]);
    if let Some(s) = srv.counting() {
        s.reset_counts();
    }
    assert_eq!(names(&m.p("big")), want);
    if let Some(s) = srv.counting() {
        // two pages of 1,000 keys, one more lookup-LIST for "big" itself at most
        assert!(s.count("ListObjectsV2") <= 3, "{:?}", s.counts());
        // a second listing within the TTL needs no request at all
        s.reset_counts();
        assert_eq!(names(&m.p("big")).len(), 1500);
        assert_eq!(s.count("ListObjectsV2"), 0, "{:?}", s.counts());
        // `ls -l` stats every entry: the fetches go out ahead of it, still one per file (GETs,
        // the files being small: their bodies come along)
        let out = sh(&format!(
            "ls -l {} | grep -c '^-rw-r--r--'",
            m.p("big").display()
        ));
        assert_eq!(out.trim(), "1500");
        assert_eq!(
            s.count("HeadObject") + s.count("GetObject"),
            1500,
            "{:?}",
            s.counts()
        );
        // so reading one of them right after costs nothing more
        s.reset_counts();
    }
    assert_eq!(
        std::fs::read_to_string(m.p("big/f01499%pct")).expect("read"),
        "1499"
    );
    if let Some(s) = srv.counting() {
        assert_eq!(s.total_requests(), 0, "{:?}", s.counts());
    }
}

#[test]
fn directory_wins_over_a_file_of_the_same_name() {
    if !fuse_available() {
        return;
    }
    let srv = server();
    srv.put_object("a", "file a");
    srv.put_object("a/b", "under a");
    srv.put_object("a.txt", "sorts between a and a/");
    let m = Mount::new(&srv, &[]);
    assert_eq!(names(m.path()), set(&["a", "a.txt"]));
    assert!(m.p("a").is_dir());
    assert_eq!(std::fs::read(m.p("a/b")).expect("read"), b"under a");
    assert!(m.log_text().contains("shadowed"), "{}", m.log_text());
}

#[test]
fn odd_names_round_trip() {
    if !fuse_available() {
        return;
    }
    let srv = server();
    let odd = [
        "with space.txt",
        "100%.txt",
        "a+b.txt",
        "hash#tag",
        "ünïcødé.txt",
        "日本語",
        "emoji-🎉.txt",
        "tab\there",
        "bell\u{7}",
        "quote\"s'",
        "amp&lt;",
    ];
    for (i, name) in odd.iter().enumerate() {
        srv.put_object(&format!("odd/{name}"), format!("content {i}"));
    }
    let m = Mount::new(&srv, &[]);
    assert_eq!(names(&m.p("odd")), set(&odd));
    for (i, name) in odd.iter().enumerate() {
        let got = std::fs::read_to_string(m.p("odd").join(name)).expect(name);
        assert_eq!(got, format!("content {i}"));
    }
}

#[test]
fn keys_that_cannot_be_names_are_skipped_and_the_rest_listed() {
    if !fuse_available() {
        return;
    }
    let srv = server();
    let long = "x".repeat(300);
    for key in [
        "h/a//b".to_string(),
        "h/./dot".to_string(),
        "h/../up".to_string(),
        format!("h/{long}"),
        "h/ok1".to_string(),
        "h/ok2".to_string(),
    ] {
        srv.put_object(&key, "v");
    }
    let m = Mount::new(&srv, &[]);
    assert_eq!(names(&m.p("h")), set(&["a", "ok1", "ok2"]));
    assert!(names(&m.p("h/a")).is_empty());
    let log = m.log_text();
    assert!(log.contains("left out of the listing"), "{log}");
}

#[test]
fn large_object_sequential_and_random_reads() {
    if !fuse_available() {
        return;
    }
    let srv = server();
    let size = 300 * 1024 * 1024 + 12345;
    let data = pattern(size, 7);
    srv.put_object("big.bin", data.clone());
    let m = Mount::new(&srv, &[]);
    let got = std::fs::read(m.p("big.bin")).expect("read");
    assert_eq!(got.len(), size);
    assert_eq!(sha256(&got), sha256(&data));
    drop(got);
    // random offsets, through a fresh mount so the page cache is cold
    drop(m);
    let m = Mount::new(&srv, &[]);
    let mut f = std::fs::File::open(m.p("big.bin")).expect("open");
    let mut x: u64 = 12345;
    for _ in 0..200 {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        let off = (x >> 20) % (size as u64 - 70_000);
        let len = 1 + ((x >> 8) % 65_536) as usize;
        f.seek(SeekFrom::Start(off)).expect("seek");
        let mut buf = vec![0; len];
        f.read_exact(&mut buf).expect("read");
        assert_eq!(
            buf,
            &data[off as usize..off as usize + len],
            "at {off}+{len}"
        );
    }
    // ranged GETs carried If-Match with the ETag seen at open
    let gets = srv.requests_for("GetObject");
    assert!(!gets.is_empty());
    assert!(gets.iter().all(|r| r
        .headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("if-match"))));
}

#[test]
fn object_replaced_during_a_read_gives_an_error_not_mixed_bytes() {
    if !fuse_available() {
        return;
    }
    let srv = server();
    let size = 64 * 1024 * 1024;
    let old = pattern(size, 1);
    srv.put_object("r.bin", old.clone());
    let m = Mount::new(&srv, &["--max-memory", "16M"]);
    let mut f = std::fs::File::open(m.p("r.bin")).expect("open");
    let mut first = vec![0; 1024 * 1024];
    f.read_exact(&mut first).expect("read");
    assert_eq!(first, &old[..first.len()]);
    srv.put_object("r.bin", pattern(size, 2));
    let mut rest = Vec::new();
    match f.read_to_end(&mut rest) {
        Ok(_) => {
            // only acceptable if every byte came from the old object
            assert_eq!(rest, &old[first.len()..], "mixed bytes");
        }
        Err(e) => assert!(e.raw_os_error().is_some(), "{e}"),
    }
}

#[test]
fn prefix_and_read_only_mount() {
    if !fuse_available() {
        return;
    }
    let srv = server();
    srv.put_object("photos/2024/a.jpg", "jpeg");
    srv.put_object("photos/2024/b/c.jpg", "c");
    srv.put_object("other/x", "x");
    let m = Mount::new(&srv, &["--prefix", "photos/2024/", "--read-only"]);
    assert_eq!(names(m.path()), set(&["a.jpg", "b"]));
    assert_eq!(std::fs::read(m.p("b/c.jpg")).expect("read"), b"c");
    let err = std::fs::write(m.p("new.txt"), "x").expect_err("read-only");
    assert_eq!(err.raw_os_error(), Some(libc::EROFS));
    let m2 = {
        drop(m);
        let bucket = format!("s3://{}/photos", srv.bucket());
        Mount::with_bucket(&srv, &bucket, &[])
    };
    assert_eq!(names(m2.path()), set(&["2024"]));
}

#[test]
fn changes_from_outside_are_seen_after_the_metadata_ttl() {
    if !fuse_available() {
        return;
    }
    let srv = server();
    srv.put_object("ext/replaced.txt", "old");
    srv.put_object("ext/deleted.txt", "bye");
    let m = Mount::new(&srv, &["--metadata-ttl", "1", "--negative-ttl", "1"]);
    assert_eq!(
        std::fs::read_to_string(m.p("ext/replaced.txt")).expect("read"),
        "old"
    );
    assert!(m.p("ext/deleted.txt").exists());
    assert!(!m.p("ext/added.txt").exists());
    srv.put_object("ext/replaced.txt", "new and longer");
    srv.delete_object("ext/deleted.txt");
    srv.put_object("ext/added.txt", "hello");
    // once the 1 s TTLs run out the mount asks again: wait for that, not for a time
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let seen = || {
        std::fs::read_to_string(m.p("ext/replaced.txt")).expect("read") == "new and longer"
            && !m.p("ext/deleted.txt").exists()
            && m.p("ext/added.txt").exists()
    };
    while !seen() {
        assert!(
            std::time::Instant::now() < deadline,
            "the outside changes never showed"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(!m.p("ext/deleted.txt").exists());
    assert_eq!(
        std::fs::read_to_string(m.p("ext/added.txt")).expect("read"),
        "hello"
    );
    assert_eq!(names(&m.p("ext")), set(&["replaced.txt", "added.txt"]));
}

#[test]
fn secrets_stay_out_of_logs_and_process_arguments() {
    if !fuse_available() {
        return;
    }
    let srv = server();
    srv.put_object("f", "x");
    let m = Mount::new(&srv, &["--debug"]);
    let _ = std::fs::read(m.p("f")).expect("read");
    let pid = m.child.as_ref().map(|c| c.id()).expect("pid");
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("cmdline");
    let secret = srv.secret_key();
    assert!(!String::from_utf8_lossy(&cmdline).contains(&secret));
    let log = m.log_text();
    assert!(log.contains("DEBUG"), "debug logging on");
    assert!(!log.contains(&secret), "secret in the log");
    assert!(!log.contains("Signature="), "signature in the log");
}

#[test]
fn ls_l_of_a_big_directory_probes_no_entry_and_with_stat_from_listing_sends_only_lists() {
    if !fuse_available() {
        return;
    }
    let srv = server();
    for i in 0..2_500u32 {
        let mut meta = bucketfs_test_server::store::Metadata::new();
        meta.insert("mode".into(), "33152".into()); // 0100600
        srv.put_object_with_meta(
            &format!("many/f{i:04}"),
            vec![b'x'; (i % 50) as usize],
            meta,
            None,
        );
    }
    // `ls -l` stats each entry as it reads the listing (3 pages here): a name the listing has
    // shown is not probed (HEAD + LIST) even before the listing is complete
    for stat_from_listing in [false, true] {
        let args: &[&str] = if stat_from_listing {
            &["--stat-from-listing"]
        } else {
            &[]
        };
        let m = Mount::new(&srv, args);
        let dir = m.p("many");
        assert!(dir.is_dir());
        if let Some(s) = srv.counting() {
            s.reset_counts();
        }
        let out = sh(&format!("ls -l {} | wc -l", dir.display()));
        assert_eq!(out.trim(), "2501", "every entry and the total line");
        if let Some(s) = srv.counting() {
            let lists = s.count("ListObjectsV2");
            assert!(lists <= 4, "{:?}", s.counts());
            // the mount's own look for unfinished uploads (at start, in the background) may
            // land after the reset: it is not the walk's
            let walk = s.total_requests() - s.count("ListMultipartUploads");
            if stat_from_listing {
                // only the 50 empty objects get a HEAD each: an empty object may be an older
                // form of directory object (s3fs's `dir` typed as a directory)
                assert_eq!(walk, lists + 50, "{:?}", s.counts());
                assert_eq!(s.count("HeadObject"), 50, "{:?}", s.counts());
            } else {
                // one request per file for its metadata (a small file's comes with a GET)
                assert!(walk <= lists + 2_500, "{:?}", s.counts());
            }
        }
        if stat_from_listing {
            // reading one fetches its real attributes with it
            assert_eq!(std::fs::read(dir.join("f0007")).expect("read"), b"xxxxxxx");
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join("f0007"))
                .expect("stat")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}

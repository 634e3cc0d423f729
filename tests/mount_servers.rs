//! Real mounts of a server that answers like Ceph RGW (empty ETag from Complete, If-Match
//! compared unquoted, conditions on Complete ignored), and of uploads that fail at close: every
//! close is checked, then the bucket.

mod common;

use std::io::Write;
use std::os::unix::fs::FileExt;

use bucketfs_test_server::{Dialect, Fault, FaultKind};
use common::*;

#[test]
fn large_files_appends_and_in_place_writes_on_a_server_answering_like_rgw() {
    if !fuse_available() {
        return;
    }
    let srv = server();
    srv.set_dialect(Dialect::ceph_rgw());
    srv.put_object("log.txt", "one\n");
    let mut m = Mount::new(&srv, &["--probe", "always"]);
    let log = m.log_text();
    assert!(log.contains("probed the server"), "{log}");
    assert!(log.contains("if_match_bare true"), "{log}");
    assert!(
        log.contains("ignores conditions on CompleteMultipartUpload"),
        "{log}"
    );
    assert!(srv.keys().iter().all(|k| !k.contains(".bucketfs-probe")));

    // a file over one part: Complete answers an empty ETag, close succeeds
    let big = pattern(20 << 20, 7);
    let mut f = std::fs::File::create(m.p("big.bin")).expect("create");
    for chunk in big.chunks(1 << 20) {
        f.write_all(chunk).expect("write");
    }
    close_checked(f);
    assert_eq!(srv.get_object("big.bin").as_deref(), Some(&big[..]));
    // RGW verifies no CRC32C but does verify the signed SHA-256: parts are signed with theirs
    // (three times cheaper than MD5) where the CPU has SHA instructions
    assert!(log.contains("verifies_payload_sha256 yes"), "{log}");
    let hardware = std::arch::is_x86_feature_detected!("sha");
    let parts = srv.requests_for("UploadPart");
    let parts: Vec<_> = parts
        .iter()
        .filter(|r| r.key.as_deref() == Some("big.bin"))
        .collect();
    assert_eq!(parts.len(), 3);
    for r in parts {
        let signed = r
            .headers
            .iter()
            .any(|(n, v)| n == "x-amz-content-sha256" && v.len() == 64);
        let md5 = r.headers.iter().any(|(n, _)| n == "content-md5");
        assert_eq!((signed, md5), (hardware, !hardware), "{:?}", r.headers);
    }

    // an append (`>>`): If-Match goes bare, the bytes land
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(m.p("log.txt"))
        .expect("open >>");
    f.write_all(b"two\n").expect("append");
    close_checked(f);
    assert_eq!(
        srv.get_object("log.txt").as_deref(),
        Some(&b"one\ntwo\n"[..])
    );

    // `dd conv=notrunc` of 4 KiB at 10 MiB into the large file
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(m.p("big.bin"))
        .expect("open rw");
    f.write_all_at(&[0xAB; 4096], 10 << 20).expect("pwrite");
    close_checked(f);
    let mut want = big.clone();
    want[10 << 20..(10 << 20) + 4096].fill(0xAB);
    assert_eq!(srv.get_object("big.bin").as_deref(), Some(&want[..]));
    assert!(srv.multipart_uploads().is_empty());
    assert!(m.unmount());

    // the ceph profile knows all this without a probe
    let m = Mount::new(&srv, &["--provider", "ceph"]);
    assert!(!m.log_text().contains("probed the server"));
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(m.p("log.txt"))
        .expect("open >>");
    f.write_all(b"three\n").expect("append");
    close_checked(f);
    assert_eq!(
        srv.get_object("log.txt").as_deref(),
        Some(&b"one\ntwo\nthree\n"[..])
    );
}

#[test]
fn a_file_whose_upload_fails_stays_readable_and_a_later_close_uploads_it() {
    if !fuse_available() {
        return;
    }
    let srv = server();
    let m = Mount::new(&srv, &[]);
    srv.add_fault(
        Fault::new(FaultKind::access_denied())
            .op("PutObject")
            .key_prefix("kept.txt"),
    );
    let mut f = std::fs::File::create(m.p("kept.txt")).expect("create");
    f.write_all(b"precious\n").expect("write");
    let fd = std::os::fd::IntoRawFd::into_raw_fd(f);
    // SAFETY: fd was just taken out of a File.
    let rc = unsafe { libc::close(fd) };
    let errno = std::io::Error::last_os_error().raw_os_error();
    assert_eq!((rc, errno), (-1, Some(libc::EACCES)), "close must fail");
    assert!(srv.get_object("kept.txt").is_none());

    // still in the mount, with its bytes; `bucketfs stats` names it
    assert_eq!(
        std::fs::read_to_string(m.p("kept.txt")).expect("read back"),
        "precious\n"
    );
    let names = sh(&format!("ls {}", m.path().display()));
    assert!(names.contains("kept.txt"), "{names}");
    let stats = std::fs::read_to_string(m.p(".bucketfs/stats")).expect("stats");
    assert!(stats.contains("unsaved_files 1"), "{stats}");
    assert!(
        stats.contains("unsaved_file{key=\"kept.txt\"} 1"),
        "{stats}"
    );

    // the server takes it again: the next close uploads the kept bytes with the new ones
    srv.clear_faults();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(m.p("kept.txt"))
        .expect("reopen");
    f.write_all(b"more\n").expect("append");
    close_checked(f);
    assert_eq!(
        srv.get_object("kept.txt").as_deref(),
        Some(&b"precious\nmore\n"[..])
    );
    let stats = std::fs::read_to_string(m.p(".bucketfs/stats")).expect("stats");
    assert!(stats.contains("unsaved_files 0"), "{stats}");
}

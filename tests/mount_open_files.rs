//! Real mounts: programs that use an open file as a file — zip going back to fill in headers,
//! SQLite, a reader following a growing log, several appending writers — then the bucket.

mod common;

use std::io::Write;
use std::process::Command;

use common::*;

/// The three tests that stage hundreds of MiB take turns: run together on a 2-core CI box
/// their disk traffic once kept another test's daemon from even starting for a minute.
static HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn heavy() -> std::sync::MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn zip_of_a_tree_over_100_mib_into_the_mount_unzips_after_a_remount() {
    if !fuse_available() {
        return;
    }
    let _heavy = heavy();
    let srv = server();
    let src = tempfile::tempdir().expect("tmp");
    let tree = src.path().join("tree");
    std::fs::create_dir(&tree).expect("mkdir");
    for i in 0..6u64 {
        std::fs::write(tree.join(format!("f{i}.bin")), pattern(18 << 20, i)).expect("src");
    }
    std::fs::write(tree.join("small.txt"), "a small one\n").expect("src");
    let mut m = Mount::new(&srv, &[]);
    // zip seeks back to each entry's header once the entry is written
    sh(&format!(
        "cd {} && zip -q -r {} tree",
        src.path().display(),
        m.p("backup.zip").display()
    ));
    assert!(m.unmount());
    let size = srv.object_meta("backup.zip").expect("object").size;
    assert!(size > 100 << 20, "{size}");

    let m = Mount::new(&srv, &[]);
    sh(&format!("unzip -tq {}", m.p("backup.zip").display()));
    let out = tempfile::tempdir().expect("tmp");
    sh(&format!(
        "cd {} && unzip -q {}",
        out.path().display(),
        m.p("backup.zip").display()
    ));
    sh(&format!(
        "diff -r {} {}",
        tree.display(),
        out.path().join("tree").display()
    ));
}

/// The same SQL, run by python's sqlite3 on `path` (scripts/sqlite_workload.py).
fn sqlite_workload(path: &std::path::Path) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/sqlite_workload.py");
    let status = Command::new("python3")
        .arg(script)
        .arg(path)
        .status()
        .expect("python3");
    assert!(status.success(), "sqlite workload on {}", path.display());
}

#[test]
fn a_sqlite_database_past_64_mib_with_updates_and_deletes_survives_a_remount() {
    if !fuse_available() {
        return;
    }
    let _heavy = heavy();
    let srv = server();
    let local = tempfile::tempdir().expect("tmp");
    sqlite_workload(&local.path().join("ref.db"));
    let reference = std::fs::read(local.path().join("ref.db")).expect("reference");
    assert!(reference.len() > 64 << 20, "{}", reference.len());

    let mut m = Mount::new(&srv, &[]);
    sqlite_workload(&m.p("app.db"));
    assert!(m.unmount());
    let stored = srv.get_object("app.db").expect("object");
    assert_eq!(sha256(&stored), sha256(&reference), "the bucket's copy");

    let m = Mount::new(&srv, &[]);
    let ok = sh(&format!(
        "sqlite3 {} 'PRAGMA integrity_check;'",
        m.p("app.db").display()
    ));
    assert_eq!(ok.trim(), "ok");
}

#[test]
fn a_reader_follows_a_growing_file_and_appenders_share_it() {
    if !fuse_available() {
        return;
    }
    let srv = server();
    let m = Mount::new(&srv, &[]);
    let mut w = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(m.p("app.log"))
        .expect("open log");
    w.write_all(b"started\n").expect("write");
    // `cat` while the writer still has the file open
    assert_eq!(
        std::fs::read_to_string(m.p("app.log")).expect("read while written"),
        "started\n"
    );
    // two more processes append to it at once
    let script = |tag: &str| {
        format!(
            "for i in $(seq 1 200); do echo {tag}-$i >> {}; done",
            m.p("app.log").display()
        )
    };
    let a = Command::new("bash")
        .arg("-c")
        .arg(script("a"))
        .spawn()
        .expect("a");
    let b = Command::new("bash")
        .arg("-c")
        .arg(script("b"))
        .spawn()
        .expect("b");
    for mut c in [a, b] {
        assert!(c.wait().expect("wait").success());
    }
    w.write_all(b"done\n").expect("write");
    let seen = std::fs::read_to_string(m.p("app.log")).expect("read");
    close_checked(w);
    let stored =
        String::from_utf8(srv.get_object("app.log").expect("object").to_vec()).expect("utf8");
    assert_eq!(stored, seen);
    let lines: Vec<&str> = stored.lines().collect();
    assert_eq!(lines.len(), 402, "{stored}");
    for tag in ["a", "b"] {
        for i in 1..=200 {
            assert!(lines.contains(&format!("{tag}-{i}").as_str()), "{tag}-{i}");
        }
    }
    assert_eq!(lines.first(), Some(&"started"));
    assert_eq!(lines.last(), Some(&"done"));

    // `cp a b && cat b`, at once
    sh(&format!(
        "cp {a} {b} && cmp {a} {b}",
        a = m.p("app.log").display(),
        b = m.p("copy.log").display()
    ));
}

#[test]
fn mmap_shared_writes_past_the_first_part_reach_the_bucket() {
    if !fuse_available() {
        return;
    }
    let srv = server();
    let m = Mount::new(&srv, &[]);
    let script = r#"
import mmap, os, sys
path = sys.argv[1]
size = 20 << 20
fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
os.ftruncate(fd, size)
mm = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
for off in range(0, size, 1 << 20):
    mm[off:off + 8] = b"%08d" % (off >> 20)
mm[size - 4:size] = b"tail"
mm.flush()
mm.close()
os.close(fd)
"#;
    let status = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(m.p("mapped.bin"))
        .status()
        .expect("python3");
    assert!(status.success(), "mmap writer failed");
    let got = srv.get_object("mapped.bin").expect("object");
    assert_eq!(got.len(), 20 << 20);
    for i in 0..20usize {
        assert_eq!(&got[i << 20..(i << 20) + 8], format!("{i:08}").as_bytes());
    }
    assert_eq!(&got[(20 << 20) - 4..], b"tail");
}

#[test]
fn twenty_four_writers_of_100_mib_at_once_land_byte_identical_within_memory() {
    if !fuse_available() {
        return;
    }
    let _heavy = heavy();
    let srv = server();
    let m = Mount::new(&srv, &[]);
    let size = 100 << 20;
    let writers: Vec<_> = (0..24u64)
        .map(|i| {
            let path = m.p(&format!("w{i:02}.bin"));
            std::thread::spawn(move || {
                let mut f = std::fs::File::create(path).expect("create");
                for c in 0..(size / (4 << 20)) {
                    f.write_all(&pattern(4 << 20, i * 1000 + c as u64))
                        .expect("write");
                }
                close_checked(f);
            })
        })
        .collect();
    for w in writers {
        w.join().expect("writer");
    }
    for i in 0..24u64 {
        let got = srv.get_object(&format!("w{i:02}.bin")).expect("object");
        assert_eq!(got.len(), size);
        for c in 0..(size / (4 << 20)) {
            let want = pattern(4 << 20, i * 1000 + c as u64);
            assert!(
                got[c * (4 << 20)..(c + 1) * (4 << 20)] == want[..],
                "w{i:02}.bin chunk {c}"
            );
        }
    }
    // the parts are staged on disk and wait for memory: the default 96 MiB budget holds
    let peak = m.peak_rss();
    eprintln!("daemon peak RSS {} MiB", peak >> 20);
    assert!(peak < 128 << 20, "peak RSS {} MiB", peak >> 20);
}

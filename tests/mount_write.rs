//! Real mounts, write side: dd, cp -r, echo, mkdir/rmdir, kill -9 of a writer; then the bucket.

mod common;

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::time::Duration;

use common::*;

#[test]
fn dd_of_one_gib_lands_as_one_multipart_object() {
    if !fuse_available() {
        return;
    }
    let srv = server();
    let m = Mount::new(&srv, &[]);
    let src = tempfile::NamedTempFile::new().expect("tmp");
    let size = 1024 * 1024 * 1024;
    {
        let mut f = std::io::BufWriter::new(src.as_file());
        for i in 0..(size / (16 << 20)) {
            f.write_all(&pattern(16 << 20, i as u64))
                .expect("write src");
        }
        f.flush().expect("flush");
    }
    let src_sha = sh(&format!("sha256sum < {}", src.path().display()));
    sh(&format!(
        "dd if={} of={} bs=1M status=none",
        src.path().display(),
        m.p("big.bin").display()
    ));
    // in the bucket when close returned
    let meta = srv.object_meta("big.bin").expect("object after close");
    assert_eq!(meta.size, size as u64);
    assert!(
        meta.etag.contains('-'),
        "multipart ETag expected: {}",
        meta.etag
    );
    let obj = srv.get_object("big.bin").expect("object");
    assert_eq!(format!("{}  -\n", sha256(&obj)), src_sha);
    assert_eq!(
        std::fs::metadata(m.p("big.bin")).expect("stat").len(),
        size as u64
    );
    assert!(srv.multipart_uploads().is_empty());
}

#[test]
fn cp_r_of_2000_small_files_is_one_put_each() {
    if !fuse_available() {
        return;
    }
    let srv = server();
    let m = Mount::new(&srv, &[]);
    let src = tempfile::tempdir().expect("tmp");
    for d in 0..40 {
        let dir = src.path().join(format!("d{d:02}"));
        std::fs::create_dir(&dir).expect("mkdir");
        for f in 0..50 {
            std::fs::write(dir.join(format!("f{f:02}.dat")), pattern(4096, d * 100 + f))
                .expect("write");
        }
    }
    if let Some(s) = srv.counting() {
        s.reset_counts();
    }
    sh(&format!(
        "cp -r {}/. {}",
        src.path().display(),
        m.p("tree").display()
    ));
    for d in 0..40u64 {
        for f in 0..50u64 {
            let key = format!("tree/d{d:02}/f{f:02}.dat");
            let got = srv
                .get_object(&key)
                .unwrap_or_else(|| panic!("missing {key}"));
            assert_eq!(sha256(&got), sha256(&pattern(4096, d * 100 + f)), "{key}");
        }
    }
    if let Some(s) = srv.counting() {
        let puts = s.count("PutObject");
        // 2,000 files + 41 directory markers
        assert_eq!(puts, 2041, "{:?}", s.counts());
        let total = s.total_requests();
        assert!(
            total as f64 <= 2000.0 * 1.1,
            "{total} requests: {:?}",
            s.counts()
        );
    }
    // rm -rf of the whole tree
    sh(&format!("rm -rf {}", m.p("tree").display()));
    assert!(
        srv.keys().is_empty(),
        "{:?}",
        &srv.keys()[..5.min(srv.keys().len())]
    );
}

#[test]
fn echo_and_metadata_and_visibility() {
    if !fuse_available() {
        return;
    }
    let srv = server();
    let m = Mount::new(&srv, &[]);
    sh(&format!("echo hello > {}", m.p("hi.txt").display()));
    assert_eq!(srv.get_object("hi.txt").as_deref(), Some(&b"hello\n"[..]));
    let meta = srv.object_meta("hi.txt").expect("meta");
    assert_eq!(meta.content_type.as_deref(), Some("text/plain"));
    for h in ["mode", "uid", "gid", "mtime"] {
        assert!(meta.metadata.contains_key(h), "x-amz-meta-{h} missing");
    }
    // an empty file exists after close
    sh(&format!("touch {}", m.p("empty").display()));
    assert_eq!(srv.get_object("empty").map(|b| b.len()), Some(0));
    // a file being written is visible with its growing size before close
    let mut f = std::fs::File::create(m.p("growing")).expect("create");
    f.write_all(&[1u8; 1000]).expect("write");
    let names: Vec<_> = std::fs::read_dir(m.path())
        .expect("ls")
        .map(|e| e.expect("e").file_name().into_string().expect("utf8"))
        .collect();
    assert!(names.contains(&"growing".to_string()), "{names:?}");
    assert_eq!(std::fs::metadata(m.p("growing")).expect("stat").len(), 1000);
    assert!(
        srv.get_object("growing").is_none(),
        "visible in the bucket before close"
    );
    close_checked(f);
    assert_eq!(srv.get_object("growing").map(|b| b.len()), Some(1000));
    // statfs has room
    let df = sh(&format!("df -k {} | tail -1", m.path().display()));
    let avail: u64 = df
        .split_whitespace()
        .nth(3)
        .and_then(|v| v.parse().ok())
        .expect("df");
    assert!(avail > 1 << 30, "{df}");
}

#[test]
fn mkdir_rmdir_unlink_through_the_mount() {
    if !fuse_available() {
        return;
    }
    let srv = server();
    let m = Mount::new(&srv, &[]);
    std::fs::create_dir(m.p("d")).expect("mkdir");
    assert!(srv.get_object("d/").is_some());
    assert!(m.p("d").is_dir());
    write_checked(m.p("d/f"), "x").expect("write");
    let err = std::fs::remove_dir(m.p("d")).expect_err("not empty");
    assert_eq!(err.raw_os_error(), Some(libc::ENOTEMPTY));
    std::fs::remove_file(m.p("d/f")).expect("unlink");
    assert!(srv.get_object("d/f").is_none());
    std::fs::remove_dir(m.p("d")).expect("rmdir");
    assert!(srv.keys().is_empty());
    assert!(!m.p("d").exists());
    let mode = {
        std::fs::create_dir(m.p("e")).expect("mkdir");
        std::fs::metadata(m.p("e")).expect("stat").mode()
    };
    assert_eq!(mode & 0o777, 0o755);
}

#[test]
fn two_large_files_written_at_once() {
    if !fuse_available() {
        return;
    }
    let srv = server();
    let m = Mount::new(&srv, &["--max-memory", "48M"]);
    let size = 48 * 1024 * 1024;
    let handles: Vec<_> = (0..2u64)
        .map(|i| {
            let path = m.p(&format!("par{i}.bin"));
            std::thread::spawn(move || {
                let data = pattern(size, 100 + i);
                let mut f = std::fs::File::create(path).expect("create");
                for chunk in data.chunks(1 << 20) {
                    f.write_all(chunk).expect("write");
                }
                close_checked(f);
                sha256(&data)
            })
        })
        .collect();
    let shas: Vec<String> = handles
        .into_iter()
        .map(|h| h.join().expect("join"))
        .collect();
    for (i, want) in shas.iter().enumerate() {
        let got = srv.get_object(&format!("par{i}.bin")).expect("object");
        assert_eq!(&sha256(&got), want);
    }
}

#[test]
fn writer_killed_mid_file_leaves_no_object() {
    if !fuse_available() {
        return;
    }
    let srv = server();
    // it waits on the request counters: on an external server it must not start its dd
    let counters = srv.counting().expect(SKIP_EXTERNAL);
    let m = Mount::new(&srv, &[]);
    let mut dd = Command::new("dd")
        .arg("if=/dev/zero")
        .arg(format!("of={}", m.p("killed.bin").display()))
        .arg("bs=1M")
        .arg("count=100000")
        .arg("status=none")
        .spawn()
        .expect("dd");
    // wait until some parts are on their way
    for _ in 0..200 {
        if counters.count("UploadPart") >= 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    dd.kill().expect("kill -9");
    let _ = dd.wait();
    // the killed writer's upload is aborted: wait for that (its last request), then look
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !srv.multipart_uploads().is_empty() {
        assert!(std::time::Instant::now() < deadline, "upload not aborted");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        srv.get_object("killed.bin").is_none(),
        "partial object appeared"
    );
    // the name goes when the killed descriptor's release is handled, which comes after the
    // abort (its flush): wait for that, bounded
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while m.p("killed.bin").exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the killed writer's file is still there"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(srv.get_object("killed.bin").is_none());
}

/// A process that starts a program while it has a file open for writing (make writing a log,
/// a shell with `exec 3>f`): the child's execve closes its close-on-exec copy, a FLUSH that
/// execve waits on. The program starts, and the file lands whole at the writer's close.
#[test]
fn starting_a_program_while_writing_a_file_does_not_hang() {
    if !fuse_available() {
        return;
    }
    let srv = server();
    let m = Mount::new(&srv, &[]);
    let first = pattern(100_000, 3);
    let second = pattern(50_000, 4);
    let mut f = std::fs::File::create(m.p("log.txt")).expect("create");
    f.write_all(&first).expect("write");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(Command::new("true").status().map(|s| s.success()));
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(Ok(true)) => {}
        Ok(other) => panic!("`true` did not run: {other:?}"),
        Err(_) => panic!(
            "starting a program hung on the flush of the inherited descriptor; log: {}",
            m.log_text()
        ),
    }
    f.write_all(&second).expect("write after the program ran");
    assert_eq!(
        srv.count("PutObject"),
        0,
        "the child's close of its copy uploaded a partial file"
    );
    close_checked(f);
    let mut whole = first;
    whole.extend_from_slice(&second);
    assert_eq!(srv.get_object("log.txt").as_deref(), Some(&whole[..]));
    assert_eq!(srv.count("PutObject"), 1);
    assert_eq!(std::fs::read(m.p("log.txt")).expect("read back"), whole);
}

/// A shell that opens a file and lets its children write to it: the children's exits do not
/// upload (the shell's close does, once; a builtin's `>&3` would be a close of a dup in the
/// shell itself, which uploads as any close does); a child still writing after the shell has
/// gone uploads at its own close.
#[test]
fn children_writing_to_an_inherited_descriptor() {
    if !fuse_available() {
        return;
    }
    let srv = server();
    let m = Mount::new(&srv, &[]);
    let f = m.p("inherited.txt");
    sh(&format!(
        "exec 3>'{}'; /bin/echo one >&3; sh -c 'echo two >&3'; /bin/echo three >&3; exec 3>&-",
        f.display()
    ));
    assert_eq!(
        srv.get_object("inherited.txt").as_deref(),
        Some(&b"one\ntwo\nthree\n"[..])
    );
    assert_eq!(
        srv.count("PutObject"),
        1,
        "one upload, at the shell's close; log: {}",
        m.log_text()
    );

    let g = m.p("orphaned.txt");
    sh(&format!(
        "exec 3>'{}'; echo first >&3; (sleep 0.5; echo second >&3) & exit 0",
        g.display()
    ));
    let want = &b"first\nsecond\n"[..];
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while srv.get_object("orphaned.txt").as_deref() != Some(want)
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        srv.get_object("orphaned.txt").as_deref(),
        Some(want),
        "the late child's data; log: {}",
        m.log_text()
    );
}

/// A parent that opens a file and hands it to a child as its stdout, then closes its own copy
/// (Python's `Popen(cmd, stdout=open(path, "w"))`): the child's bytes land when it exits, and
/// the parent can read them right after waiting for it.
#[test]
fn a_child_writing_a_descriptor_its_parent_opened_can_be_read_after_it_exits() {
    if !fuse_available() {
        return;
    }
    let srv = server();
    let m = Mount::new(&srv, &[]);
    for round in 0..5 {
        let name = format!("child-{round}.txt");
        let out = std::fs::File::create(m.p(&name)).expect("create");
        let mut child = Command::new("sh")
            .arg("-c")
            .arg("echo hello; sleep 0.1; echo world")
            .stdout(out)
            .spawn()
            .expect("spawn");
        // the Command (and with it this process's copy of the file) is gone: the parent closed
        assert!(child.wait().expect("wait").success());
        let got = std::fs::read(m.p(&name))
            .unwrap_or_else(|e| panic!("read after the child exited: {e}; log: {}", m.log_text()));
        assert_eq!(got, b"hello\nworld\n");
        assert_eq!(
            srv.get_object(&name).as_deref(),
            Some(&b"hello\nworld\n"[..])
        );
    }
}

/// Shells and dd open the file, `dup2` it onto stdout and close the original before writing:
/// that first close sends nothing, so `cmd > file` and `dd of=file` are one PUT, and an existing
/// object is not emptied before its new content arrives.
#[test]
fn redirections_and_dd_are_one_put_per_file() {
    if !fuse_available() {
        return;
    }
    let srv = server();
    let m = Mount::new(&srv, &[]);
    sh(&format!("echo hello > '{}'", m.p("builtin.txt").display()));
    sh(&format!(
        "/bin/echo world > '{}'",
        m.p("external.txt").display()
    ));
    sh(&format!(
        "dd if=/dev/zero of='{}' bs=4k count=3 status=none",
        m.p("dd.bin").display()
    ));
    assert_eq!(srv.count("PutObject"), 3, "{:?}", srv.counts());
    assert_eq!(
        srv.get_object("builtin.txt").as_deref(),
        Some(&b"hello\n"[..])
    );
    assert_eq!(
        srv.get_object("external.txt").as_deref(),
        Some(&b"world\n"[..])
    );
    assert_eq!(srv.get_object("dd.bin").map(|b| b.len()), Some(12288));
    // a redirection over an existing file: one PUT, the old content until then
    sh(&format!("echo again > '{}'", m.p("builtin.txt").display()));
    assert_eq!(srv.count("PutObject"), 4, "{:?}", srv.counts());
    assert_eq!(
        srv.get_object("builtin.txt").as_deref(),
        Some(&b"again\n"[..])
    );
    // nothing written at all: `: > file` and touch still leave an empty object
    sh(&format!(": > '{}'", m.p("truncated.txt").display()));
    sh(&format!("touch '{}'", m.p("touched").display()));
    assert_eq!(srv.get_object("truncated.txt").map(|b| b.len()), Some(0));
    assert_eq!(srv.get_object("touched").map(|b| b.len()), Some(0));
}

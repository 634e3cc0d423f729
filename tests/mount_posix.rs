//! Real mounts driven the way rsync, cp -a, tar, mv and backup tools drive them.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use bucketfs_test_server::store::Metadata;
use bucketfs_test_server::{Fault, FaultKind};
use common::*;

/// A source tree with nested directories, a symlink, modes 0600/0755 and old mtimes.
fn make_tree(root: &Path) {
    sh(&format!(
        "set -e; cd {r}; mkdir -p a/b/c d; echo one > a/one.txt; echo two > a/b/two.txt; \
         head -c 300000 /dev/urandom > a/b/c/bin.dat; echo secret > d/private; chmod 600 d/private; \
         printf '#!/bin/sh\\necho hi\\n' > d/run.sh; chmod 755 d/run.sh; ln -s ../a/one.txt d/link; \
         touch -h -d '2001-02-03 04:05:06' d/link; \
         find . -path ./d/link -prune -o -exec touch -d '2001-02-03 04:05:06' {{}} +",
        r = root.display()
    ));
}

#[test]
fn rsync_of_many_files_past_the_metadata_ttl_lands_every_file() {
    // rsync looks up each new name (its temporary one, then its own) and renames each file as
    // soon as it is closed: past the TTL the directory is listed again in the background while
    // those renames go on, and a rename that came before the kernel's release once deleted the
    // file it had just uploaded. Every file must be in the bucket, with its bytes, once.
    if !fuse_available() {
        return;
    }
    let srv = server();
    let src = tempfile::tempdir().expect("tmp");
    let n = 600;
    for i in 0..n {
        std::fs::write(src.path().join(format!("f{i:04}")), format!("file {i}\n")).expect("src");
    }
    let m = Mount::new(&srv, &["--metadata-ttl", "1"]);
    sh(&format!(
        "rsync -a {}/ {}/",
        src.path().display(),
        m.p("dst").display()
    ));
    drop(m);
    let keys: Vec<String> = srv
        .keys()
        .into_iter()
        .filter(|k| k.starts_with("dst/") && k != "dst/")
        .collect();
    assert_eq!(keys.len(), n, "temporary names left, or files missing");
    for i in 0..n {
        let got = srv.get_object(&format!("dst/f{i:04}"));
        assert_eq!(
            got.as_deref(),
            Some(format!("file {i}\n").as_bytes()),
            "dst/f{i:04}"
        );
    }
}

#[test]
fn rsync_twice_sends_nothing_the_second_time_also_after_remount() {
    if !fuse_available() {
        return;
    }
    let srv = server();
    let src = tempfile::tempdir().expect("tmp");
    make_tree(src.path());
    let m = Mount::new(&srv, &[]);
    let dst = m.p("backup");
    sh(&format!(
        "rsync -a {}/ {}/",
        src.path().display(),
        dst.display()
    ));
    let again = sh(&format!(
        "rsync -a --itemize-changes {}/ {}/",
        src.path().display(),
        dst.display()
    ));
    assert_eq!(again.trim(), "", "second rsync changed things");
    if !srv.is_external() {
        // rsync sets times and mode on its temporary file, then renames it over the real name:
        // the rename's copy carries them, so one CopyObject per regular file, not three (also
        // when the rename comes before the kernel's release of the temporary file: it waits
        // for that release, and the file is not uploaded again)
        let file_copies = srv
            .requests_for("CopyObject")
            .iter()
            .filter(|r| {
                ["one.txt", "two.txt", "bin.dat", "private", "run.sh"]
                    .iter()
                    .any(|f| r.path.contains(f))
            })
            .count();
        assert_eq!(file_copies, 5, "{:?}", srv.counts());
    }
    assert_eq!(
        std::fs::read_link(dst.join("d/link")).expect("readlink"),
        Path::new("../a/one.txt")
    );
    let md = std::fs::metadata(dst.join("d/private")).expect("stat");
    assert_eq!(md.permissions().mode() & 0o777, 0o600);
    drop(m);
    let m = Mount::new(&srv, &[]);
    let again = sh(&format!(
        "rsync -a --itemize-changes {}/ {}/",
        src.path().display(),
        m.p("backup").display()
    ));
    assert_eq!(again.trim(), "", "rsync after remount changed things");
    // the symlink is stored as s3fs stores it
    let meta = srv.object_meta("backup/d/link").expect("link object");
    let mode: u32 = meta.metadata["mode"].parse().expect("mode");
    assert_eq!(mode & libc::S_IFMT, libc::S_IFLNK);
    assert_eq!(
        srv.get_object("backup/d/link").as_deref(),
        Some(&b"../a/one.txt"[..])
    );
}

#[test]
fn cp_a_and_tar_keep_modes_and_times() {
    if !fuse_available() {
        return;
    }
    let srv = server();
    let src = tempfile::tempdir().expect("tmp");
    make_tree(src.path());
    let m = Mount::new(&srv, &[]);
    sh(&format!(
        "cp -a {}/. {}",
        src.path().display(),
        m.p("copy").display()
    ));
    for rel in ["a/one.txt", "d/private", "d/run.sh", "a/b/c/bin.dat"] {
        let a = std::fs::metadata(src.path().join(rel)).expect("src");
        let b = std::fs::metadata(m.p("copy").join(rel)).expect("dst");
        assert_eq!(a.mode(), b.mode(), "{rel}");
        assert_eq!(a.mtime(), b.mtime(), "{rel}");
        assert_eq!(a.len(), b.len(), "{rel}");
    }
    let tarball = tempfile::NamedTempFile::new().expect("tmp");
    sh(&format!(
        "tar -C {} -cf {} .",
        src.path().display(),
        tarball.path().display()
    ));
    std::fs::create_dir(m.p("untar")).expect("mkdir");
    sh(&format!(
        "tar -C {} -xf {}",
        m.p("untar").display(),
        tarball.path().display()
    ));
    // a clean compare also after a remount
    drop(m);
    let m = Mount::new(&srv, &[]);
    sh(&format!(
        "tar -C {} --compare -f {}",
        m.p("untar").display(),
        tarball.path().display()
    ));
}

#[test]
fn mv_of_a_file_and_of_a_directory_of_500_files() {
    if !fuse_available() {
        return;
    }
    let srv = server();
    for i in 0..500 {
        srv.put_object(&format!("dir/f{i:03}"), format!("{i}"));
    }
    srv.put_object("lonely.txt", "x");
    let m = Mount::new(&srv, &[]);
    sh(&format!(
        "mv {} {}",
        m.p("lonely.txt").display(),
        m.p("moved.txt").display()
    ));
    assert!(srv.get_object("lonely.txt").is_none());
    assert_eq!(srv.get_object("moved.txt").as_deref(), Some(&b"x"[..]));
    sh(&format!(
        "mv {} {}",
        m.p("dir").display(),
        m.p("renamed").display()
    ));
    let keys = srv.keys();
    assert!(
        keys.iter().all(|k| !k.starts_with("dir/")),
        "sources left behind"
    );
    for i in 0..500 {
        assert_eq!(
            srv.get_object(&format!("renamed/f{i:03}")).as_deref(),
            Some(format!("{i}").as_bytes())
        );
    }
    assert_eq!(std::fs::read_dir(m.p("renamed")).expect("ls").count(), 500);
    assert!(!m.p("dir").exists());
}

#[test]
fn append_and_overwrite_in_place_on_large_objects() {
    if !fuse_available() {
        return;
    }
    let srv = server();
    let mut twenty = pattern(20 * 1024 * 1024, 3);
    srv.put_object("twenty.bin", twenty.clone());
    let mut hundred = pattern(100 * 1024 * 1024, 4);
    srv.put_object("hundred.bin", hundred.clone());
    let m = Mount::new(&srv, &[]);
    sh(&format!("echo x >> {}", m.p("twenty.bin").display()));
    twenty.extend_from_slice(b"x\n");
    assert_eq!(srv.get_object("twenty.bin").as_deref(), Some(&twenty[..]));

    if let Some(s) = srv.counting() {
        s.reset_bytes();
    }
    let patch = tempfile::NamedTempFile::new().expect("tmp");
    std::fs::write(patch.path(), [0x5Au8; 4096]).expect("patch");
    sh(&format!(
        "dd if={} of={} bs=4096 seek=12345 conv=notrunc status=none",
        patch.path().display(),
        m.p("hundred.bin").display()
    ));
    hundred[12345 * 4096..12346 * 4096].fill(0x5A);
    if let Some(s) = srv.counting() {
        let moved = s.bytes_received() + s.bytes_sent();
        assert!(
            moved < 25 * 1024 * 1024,
            "moved {moved} bytes for a 4 KiB change"
        );
    }
    assert_eq!(
        sha256(&srv.get_object("hundred.bin").expect("obj")),
        sha256(&hundred)
    );
    // truncate shrinks and grows
    sh(&format!("truncate -s 1000 {}", m.p("twenty.bin").display()));
    assert_eq!(srv.get_object("twenty.bin").map(|b| b.len()), Some(1000));
    sh(&format!("truncate -s 3000 {}", m.p("twenty.bin").display()));
    let obj = srv.get_object("twenty.bin").expect("obj");
    assert_eq!(&obj[..1000], &twenty[..1000]);
    assert!(obj[1000..].iter().all(|&b| b == 0));
}

#[test]
fn umount_then_mount_at_once_never_shows_older_attributes() {
    if !fuse_available() {
        return;
    }
    let srv = server();
    srv.put_object("f.txt", "content");
    let m = Mount::new(&srv, &[]);
    let f = m.p("f.txt");
    // changes written a second later (metadata_write.rs), or at unmount: umount returns before
    // they are (slowed down here, as on a slow server)
    sh(&format!(
        "chmod 640 {f} && touch -d '2010-01-01 00:00:00' {f}",
        f = f.display()
    ));
    srv.add_fault(Fault::new(FaultKind::Delay(Duration::from_millis(800))).op("CopyObject"));
    let (m, mut old) = m.umount_and_mount_again(&srv, &[]);
    let md = std::fs::metadata(m.p("f.txt")).expect("stat");
    assert_eq!(md.mode() & 0o7777, 0o640);
    assert_eq!(md.mtime(), 1_262_304_000);
    assert!(old.wait().expect("the old daemon").success());
}

#[test]
fn chmod_chown_touch_xattrs_survive_a_remount() {
    if !fuse_available() {
        return;
    }
    let srv = server();
    srv.put_object("plain.txt", "from another tool");
    let m = Mount::new(&srv, &[]);
    let f = m.p("plain.txt");
    sh(&format!(
        "chmod 640 {f} && chown 1234:5678 {f} && touch -d '2010-10-10 10:10:10' {f} && \
         python3 -c \"import os; os.setxattr('{f}', 'user.color', b'blue')\"",
        f = f.display()
    ));
    assert_eq!(
        std::fs::read_to_string(&f).expect("read"),
        "from another tool"
    );
    drop(m);
    let m = Mount::new(&srv, &[]);
    let md = std::fs::metadata(m.p("plain.txt")).expect("stat");
    assert_eq!(md.mode() & 0o7777, 0o640);
    assert_eq!((md.uid(), md.gid()), (1234, 5678));
    assert_eq!(md.mtime(), 1_286_705_410);
    let out = sh(&format!(
        "python3 -c \"import os; p='{}'; print(os.getxattr(p, 'user.color').decode()); \
         print(sorted(os.listxattr(p))); print(os.getxattr(p, 'user.s3.etag').decode())\"",
        m.p("plain.txt").display()
    ));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "blue");
    assert!(
        lines[1].contains("user.color") && lines[1].contains("user.s3.etag"),
        "{out}"
    );
    assert_eq!(lines[2], srv.object_meta("plain.txt").expect("meta").etag);
    // a new file's mode honours the umask
    sh(&format!("umask 027 && touch {}", m.p("masked").display()));
    let md = std::fs::metadata(m.p("masked")).expect("stat");
    assert_eq!(md.mode() & 0o777, 0o640);
}

#[test]
fn hard_links_and_long_names_are_refused_clearly() {
    if !fuse_available() {
        return;
    }
    let srv = server();
    srv.put_object("a", "a");
    let m = Mount::new(&srv, &[]);
    let err = std::fs::hard_link(m.p("a"), m.p("b")).expect_err("no hard links");
    assert_eq!(err.raw_os_error(), Some(libc::EOPNOTSUPP));
    let long = "n".repeat(256);
    let err = std::fs::write(m.p(&long), "x").expect_err("too long");
    assert_eq!(err.raw_os_error(), Some(libc::ENAMETOOLONG));
    // S3 keys are at most 1024 bytes: a deeper path is ENAMETOOLONG, not EIO
    let name = "d".repeat(250);
    let deep = m.p(&[name.as_str(); 4].join("/"));
    std::fs::create_dir_all(&deep).expect("1004-byte key");
    let err = std::fs::create_dir(deep.join(&name)).expect_err("key too long");
    assert_eq!(err.raw_os_error(), Some(libc::ENAMETOOLONG));
}

fn cpath(p: &Path) -> std::ffi::CString {
    std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).expect("no NUL")
}

#[test]
fn fifos_sockets_and_device_nodes_are_kept_as_s3fs_keeps_them() {
    if !fuse_available() {
        return;
    }
    use std::os::unix::fs::FileTypeExt;
    let srv = server();
    let m = Mount::new(&srv, &[]);
    let fifo = m.p("fifo");
    // SAFETY: valid NUL-terminated paths
    assert_eq!(unsafe { libc::mkfifo(cpath(&fifo).as_ptr(), 0o640) }, 0);
    let dev = libc::makedev(1, 3);
    let rc = unsafe { libc::mknod(cpath(&m.p("null")).as_ptr(), libc::S_IFCHR | 0o600, dev) };
    assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
    let listener = std::os::unix::net::UnixListener::bind(m.p("sock")).expect("bind");
    drop(listener);
    // chmod of a special file is stored like any other
    std::fs::set_permissions(&fifo, std::fs::Permissions::from_mode(0o604)).expect("chmod");
    // the kernel serves the FIFO itself
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::read_to_string(fifo).expect("read fifo"))
    };
    std::fs::write(&fifo, "through the pipe").expect("write fifo");
    assert_eq!(reader.join().expect("reader"), "through the pipe");
    let check = |m: &Mount| {
        let md = std::fs::symlink_metadata(m.p("fifo")).expect("stat fifo");
        assert!(md.file_type().is_fifo());
        assert_eq!(md.mode() & 0o7777, 0o604);
        let md = std::fs::symlink_metadata(m.p("null")).expect("stat null");
        assert!(md.file_type().is_char_device());
        assert_eq!(md.rdev(), dev);
        let md = std::fs::symlink_metadata(m.p("sock")).expect("stat sock");
        assert!(md.file_type().is_socket());
    };
    check(&m);
    let mode: u32 = srv.object_meta("fifo").expect("fifo object").metadata["mode"]
        .parse()
        .expect("mode");
    assert_eq!(mode & libc::S_IFMT, libc::S_IFIFO);
    assert_eq!(srv.get_object("fifo").map(|b| b.len()), Some(0));
    drop(m);
    let m = Mount::new(&srv, &[]);
    check(&m);
    std::fs::rename(m.p("fifo"), m.p("fifo2")).expect("rename");
    assert!(std::fs::symlink_metadata(m.p("fifo2"))
        .expect("stat")
        .file_type()
        .is_fifo());
    std::fs::remove_file(m.p("null")).expect("unlink");
    assert!(srv.get_object("null").is_none());
}

#[test]
fn an_unlinked_open_file_has_no_links_and_stays_usable() {
    if !fuse_available() {
        return;
    }
    use std::io::Write;
    use std::os::unix::fs::FileExt;
    let srv = server();
    let m = Mount::new(&srv, &[]);
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(m.p("scratch"))
        .expect("create");
    std::fs::remove_file(m.p("scratch")).expect("unlink");
    assert_eq!(f.metadata().expect("fstat").nlink(), 0);
    f.write_all(b"Hello, World!").expect("write");
    let mut buf = [0u8; 13];
    f.read_exact_at(&mut buf, 0).expect("pread");
    assert_eq!(&buf, b"Hello, World!");
    close_checked(f);
    assert!(srv.get_object("scratch").is_none());
    assert!(!m.p("scratch").exists());
}

#[test]
fn a_bucket_s3fs_wrote_in_its_older_forms_shows_as_s3fs_shows_it() {
    if !fuse_available() {
        return;
    }
    let srv = server();
    let dir_meta = |mode: u32| {
        let mut m = Metadata::new();
        m.insert("mode".into(), (libc::S_IFDIR | mode).to_string());
        m
    };
    let typed = Some("application/x-directory");
    srv.put_object_with_meta("olddir", "", dir_meta(0o750), typed);
    srv.put_object("olddir/photo.txt", "not text at all");
    srv.put_object_with_meta("emptyold", "", dir_meta(0o755), typed);
    srv.put_object("folder_$folder$", "");
    srv.put_object("folder/x", "x");
    let m = Mount::new(&srv, &[]);
    let mut kinds: Vec<(String, bool)> = std::fs::read_dir(m.p(""))
        .expect("ls")
        .map(|e| {
            let e = e.expect("entry");
            let is_dir = std::fs::metadata(e.path()).expect("stat").is_dir();
            (e.file_name().to_string_lossy().into_owned(), is_dir)
        })
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            ("emptyold".to_string(), true),
            ("folder".to_string(), true),
            ("olddir".to_string(), true)
        ]
    );
    let md = std::fs::metadata(m.p("olddir")).expect("stat olddir");
    assert_eq!(md.mode() & 0o7777, 0o750, "the old object's mode");
    // mv takes the content type of the new name, as s3fs does
    sh(&format!(
        "mv {d}/photo.txt {d}/photo.jpg",
        d = m.p("olddir").display()
    ));
    let moved = srv.object_meta("olddir/photo.jpg").expect("moved");
    assert_eq!(moved.content_type.as_deref(), Some("image/jpeg"));
    // POSIX ACLs are refused, not silently dropped (a valid ACL: user::rw- group::r-- other::r--)
    let out = sh(&format!(
        "python3 -c \"import os\ntry:\n  os.setxattr('{}', 'system.posix_acl_access', \
         bytes([2,0,0,0, 1,0,6,0,255,255,255,255, 4,0,4,0,255,255,255,255, 32,0,4,0,255,255,255,255]))\n  print('stored')\nexcept OSError as e:\n  \
         print(e.errno)\"",
        m.p("olddir/photo.jpg").display()
    ));
    assert_eq!(
        out.trim(),
        libc::EOPNOTSUPP.to_string(),
        "ENOTSUP, EOPNOTSUPP"
    );
    // removing the directories removes their older objects: nothing comes back
    sh(&format!(
        "rm -r {r}/folder {r}/emptyold {r}/olddir",
        r = m.p("").display()
    ));
    assert_eq!(srv.keys(), Vec::<String>::new());
    drop(m);
    let m = Mount::new(&srv, &[]);
    assert_eq!(std::fs::read_dir(m.p("")).expect("ls").count(), 0);
}

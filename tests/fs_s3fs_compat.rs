//! Buckets written by s3fs and other tools, driven through the filesystem core: the older
//! directory objects (`dir` typed as a directory, `dir_$folder$`) are directories; metadata
//! changes keep every header other tools wrote and add only what was asked; a rename takes the
//! content type of its new name; POSIX ACLs are refused with EOPNOTSUPP.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bucketfs::config::FsConfig;
use bucketfs::fs::attr::FileKind;
use bucketfs::fs::{Filesystem, SetAttr, ROOT_INO};
use bucketfs_test_server::{Fault, FaultKind, ObjectAttrs, TestServer};

#[path = "common/core.rs"]
mod core_fs;
use core_fs::{write_file, ME};

fn fs_with(srv: &TestServer, edit: impl FnOnce(&mut FsConfig)) -> Arc<Filesystem> {
    let mut cfg = FsConfig {
        metadata_write_delay: Duration::from_millis(100),
        ..FsConfig::default()
    };
    edit(&mut cfg);
    core_fs::fs_with(srv, cfg)
}

async fn written(fs: &Filesystem) {
    assert!(
        fs.wait_metadata_written(Duration::from_secs(10)).await,
        "deferred attribute changes still waiting after 10 s"
    );
}

/// Names and kinds of a directory's entries (without `.` and `..`).
async fn entries(fs: &Filesystem, ino: u64) -> Vec<(String, FileKind)> {
    let fh = fs.opendir(ino).await.expect("opendir");
    let out = fs.readdir(ino, fh, 0).await.expect("readdir");
    fs.releasedir(fh);
    out.into_iter()
        .filter(|e| e.name != "." && e.name != "..")
        .map(|e| (e.name, e.kind))
        .collect()
}

fn meta(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `dir` as s3fs stored directories before `dir/` markers: empty, typed as a directory, with
/// its mode (S_IFDIR | 0750) and owner.
fn put_old_dir_object(srv: &TestServer, key: &str) {
    srv.put_object_with_attrs(
        key,
        "",
        ObjectAttrs {
            content_type: Some("application/x-directory".into()),
            metadata: meta(&[("mode", "16872"), ("uid", "1234"), ("gid", "1234")]),
            ..ObjectAttrs::default()
        },
    );
}

#[tokio::test]
async fn folder_objects_are_directories_and_go_with_rmdir() {
    let srv = TestServer::start().await;
    srv.put_object("a/empty_$folder$", "");
    srv.put_object("a/full_$folder$", "");
    srv.put_object("a/full/x", "x");
    srv.put_object("a/plain", "p");
    let fs = fs_with(&srv, |_| {});
    let a = fs.lookup(ROOT_INO, "a").await.expect("a");
    let mut listed = entries(&fs, a.ino).await;
    listed.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        listed,
        vec![
            ("empty".to_string(), FileKind::Directory),
            ("full".to_string(), FileKind::Directory),
            ("plain".to_string(), FileKind::File),
        ]
    );
    let empty = fs.lookup(a.ino, "empty").await.expect("empty");
    assert_eq!(empty.kind, FileKind::Directory);
    assert!(entries(&fs, empty.ino).await.is_empty());
    fs.rmdir(a.ino, "empty").await.expect("rmdir empty");
    assert!(
        srv.object_meta("a/empty_$folder$").is_none(),
        "the folder object outlived rmdir: the directory would come back"
    );
    // the same with files in it once they are gone
    let full = fs.lookup(a.ino, "full").await.expect("full");
    assert_eq!(full.kind, FileKind::Directory);
    fs.unlink(full.ino, "x").await.expect("unlink x");
    fs.rmdir(a.ino, "full").await.expect("rmdir full");
    assert_eq!(srv.keys(), vec!["a/plain".to_string()]);
}

#[tokio::test]
async fn an_old_dir_object_is_a_directory_with_its_stored_attributes() {
    let srv = TestServer::start().await;
    put_old_dir_object(&srv, "old");
    put_old_dir_object(&srv, "withkids");
    srv.put_object("withkids/f", "f");
    let fs = fs_with(&srv, |_| {});
    // a cold lookup (HEAD + LIST) and a listed one both see a directory
    let old = fs.lookup(ROOT_INO, "old").await.expect("old");
    assert_eq!(old.kind, FileKind::Directory);
    assert_eq!((old.perm, old.uid), (0o750, 1234));
    let kids = fs.lookup(ROOT_INO, "withkids").await.expect("withkids");
    assert_eq!(kids.kind, FileKind::Directory);
    assert_eq!(
        (kids.perm, kids.uid),
        (0o750, 1234),
        "the old object's attributes"
    );
    assert_eq!(
        entries(&fs, kids.ino).await,
        vec![("f".to_string(), FileKind::File)]
    );
    // a file made in it lands under `old/`
    write_file(&fs, old.ino, "new.txt", b"n").await;
    assert!(srv.get_object("old/new.txt").is_some());
    fs.unlink(old.ino, "new.txt").await.expect("unlink");
    // rmdir removes the old object, so the directory does not come back
    fs.rmdir(ROOT_INO, "old").await.expect("rmdir old");
    assert!(
        srv.object_meta("old").is_none(),
        "the old dir object outlived rmdir"
    );
    let fresh = fs_with(&srv, |_| {});
    let err = fresh.lookup(ROOT_INO, "old").await.expect_err("gone");
    assert_eq!(err.errno, libc::ENOENT);
}

#[tokio::test]
async fn rmdir_asks_about_an_old_dir_object_its_lookup_did_not_learn_of() {
    let srv = TestServer::start().await;
    put_old_dir_object(&srv, "d");
    srv.put_object("d/f", "f");
    // the lookup's HEAD (one attempt beside the LIST) fails: the LIST shows a directory,
    // whether an old object stands for it stays unknown
    srv.add_fault(Fault {
        op: Some("HeadObject".into()),
        key_prefix: Some("d".into()),
        times: Some(1),
        ..Fault::new(FaultKind::status(503, "SlowDown"))
    });
    let fs = fs_with(&srv, |_| {});
    let d = fs.lookup(ROOT_INO, "d").await.expect("d");
    fs.unlink(d.ino, "f").await.expect("unlink");
    srv.reset_counts();
    fs.rmdir(ROOT_INO, "d").await.expect("rmdir");
    assert_eq!(srv.count("HeadObject"), 1, "{:?}", srv.counts());
    assert!(srv.keys().is_empty(), "left: {:?}", srv.keys());
}

#[tokio::test]
async fn renaming_an_old_form_directory_leaves_a_marker_and_nothing_behind() {
    let srv = TestServer::start().await;
    put_old_dir_object(&srv, "d");
    srv.put_object("d/f", "f");
    srv.put_object("e_$folder$", "");
    let fs = fs_with(&srv, |_| {});
    fs.lookup(ROOT_INO, "d").await.expect("d");
    fs.rename(ROOT_INO, "d", ROOT_INO, "d2", 0)
        .await
        .expect("rename d");
    entries(&fs, ROOT_INO).await;
    fs.lookup(ROOT_INO, "e").await.expect("e");
    fs.rename(ROOT_INO, "e", ROOT_INO, "e2", 0)
        .await
        .expect("rename e");
    assert_eq!(
        srv.keys(),
        vec!["d2/".to_string(), "d2/f".to_string(), "e2/".to_string()]
    );
    // the marker keeps the old object's attributes
    let m = srv.object_meta("d2/").expect("d2/");
    assert_eq!(m.metadata.get("uid").map(String::as_str), Some("1234"));
}

#[tokio::test]
async fn compat_dir_finds_a_folder_object_no_listing_showed() {
    let srv = TestServer::start().await;
    srv.put_object("lone_$folder$", "");
    let plain = fs_with(&srv, |_| {});
    let err = plain
        .lookup(ROOT_INO, "lone")
        .await
        .expect_err("not looked for");
    assert_eq!(err.errno, libc::ENOENT);
    let compat = fs_with(&srv, |c| c.compat_dir = true);
    srv.reset_counts();
    let d = compat.lookup(ROOT_INO, "lone").await.expect("found");
    assert_eq!(d.kind, FileKind::Directory);
    // HEAD of the name, LIST of its prefix, HEAD of the folder object
    assert_eq!(srv.count("HeadObject"), 2, "{:?}", srv.counts());
    srv.reset_counts();
    let err = compat
        .lookup(ROOT_INO, "nothing")
        .await
        .expect_err("missing");
    assert_eq!(err.errno, libc::ENOENT);
    assert_eq!(srv.count("HeadObject"), 2, "{:?}", srv.counts());
}

#[tokio::test]
async fn chmod_of_a_foreign_marker_adds_only_the_mode_and_ctime() {
    let srv = TestServer::start().await;
    srv.put_object_with_attrs(
        "console/",
        "",
        ObjectAttrs {
            content_type: Some("binary/octet-stream".into()),
            metadata: meta(&[("made-by", "console")]),
            ..ObjectAttrs::default()
        },
    );
    let fs = fs_with(&srv, |_| {});
    let d = fs.lookup(ROOT_INO, "console").await.expect("console");
    let set = SetAttr {
        mode: Some(0o700),
        ..Default::default()
    };
    fs.setattr(d.ino, set, ME).await.expect("chmod");
    written(&fs).await;
    let m = srv.object_meta("console/").expect("marker");
    let names: Vec<&str> = m.metadata.keys().map(String::as_str).collect();
    assert_eq!(names, ["ctime", "made-by", "mode"]);
    assert_eq!(m.metadata["mode"], (libc::S_IFDIR | 0o700).to_string());
    assert_eq!(m.content_type.as_deref(), Some("binary/octet-stream"));
}

#[tokio::test]
async fn metadata_changes_keep_the_objects_other_headers() {
    let srv = TestServer::start().await;
    srv.put_object_with_attrs(
        "page.html.gz",
        "zipped",
        ObjectAttrs {
            content_type: Some("text/html".into()),
            content_encoding: Some("gzip".into()),
            cache_control: Some("max-age=60".into()),
            content_disposition: Some("inline".into()),
            content_language: Some("fr".into()),
            metadata: meta(&[("owner-app", "cms")]),
        },
    );
    let fs = fs_with(&srv, |_| {});
    let f = fs.lookup(ROOT_INO, "page.html.gz").await.expect("lookup");
    let set = SetAttr {
        uid: Some(4242),
        ..Default::default()
    };
    fs.setattr(f.ino, set, ME).await.expect("chown");
    fs.setxattr(f.ino, "user.note", b"kept", 0)
        .await
        .expect("setxattr");
    written(&fs).await;
    let m = srv.object_meta("page.html.gz").expect("object");
    assert_eq!(m.attrs.content_type.as_deref(), Some("text/html"));
    assert_eq!(m.attrs.content_encoding.as_deref(), Some("gzip"));
    assert_eq!(m.attrs.cache_control.as_deref(), Some("max-age=60"));
    assert_eq!(m.attrs.content_disposition.as_deref(), Some("inline"));
    assert_eq!(m.attrs.content_language.as_deref(), Some("fr"));
    assert_eq!(m.metadata.get("owner-app").map(String::as_str), Some("cms"));
    assert_eq!(m.metadata.get("uid").map(String::as_str), Some("4242"));
    assert!(m.metadata.contains_key("xattr"));
    // its shown mtime does not jump to the copy's time
    assert!(m.metadata.contains_key("mtime"));
    assert!(!m.metadata.contains_key("mode"), "chown added a mode");
}

#[tokio::test]
async fn a_rename_takes_the_content_type_of_the_new_name() {
    let srv = TestServer::start().await;
    let fs = fs_with(&srv, |_| {});
    write_file(&fs, ROOT_INO, "a.txt", b"pixels").await;
    fs.setxattr(
        fs.lookup(ROOT_INO, "a.txt").await.expect("a.txt").ino,
        "user.k",
        b"v",
        0,
    )
    .await
    .expect("setxattr");
    assert_eq!(
        srv.object_meta("a.txt").and_then(|m| m.content_type),
        Some("text/plain".into())
    );
    srv.reset_counts();
    fs.rename(ROOT_INO, "a.txt", ROOT_INO, "a.jpg", 0)
        .await
        .expect("mv a.txt a.jpg");
    assert_eq!(srv.count("CopyObject"), 1, "{:?}", srv.counts());
    let m = srv.object_meta("a.jpg").expect("a.jpg");
    assert_eq!(m.content_type.as_deref(), Some("image/jpeg"));
    assert!(
        m.metadata.contains_key("xattr"),
        "the rename dropped the xattrs"
    );
    assert!(m.metadata.contains_key("mode"));
    // a name whose extension says nothing keeps the type
    fs.rename(ROOT_INO, "a.jpg", ROOT_INO, "a.jpg.bak", 0)
        .await
        .expect("mv a.jpg a.jpg.bak");
    let m = srv.object_meta("a.jpg.bak").expect("a.jpg.bak");
    assert_eq!(m.content_type.as_deref(), Some("image/jpeg"));
}

#[tokio::test]
async fn posix_acls_are_refused_with_eopnotsupp() {
    let srv = TestServer::start().await;
    let fs = fs_with(&srv, |_| {});
    let ino = write_file(&fs, ROOT_INO, "f", b"f").await;
    // what setfacl sends: a system.posix_acl_access value
    let acl = [2u8, 0, 0, 0, 1, 0, 6, 0, 255, 255, 255, 255];
    for name in ["system.posix_acl_access", "system.posix_acl_default"] {
        let err = fs.setxattr(ino, name, &acl, 0).await.expect_err(name);
        assert_eq!(err.errno, libc::EOPNOTSUPP, "{name}");
        let err = fs.getxattr(ino, name).await.expect_err(name);
        assert_eq!(err.errno, libc::ENODATA, "{name}");
    }
}

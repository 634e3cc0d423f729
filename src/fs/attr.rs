//! File attributes, and how they are read from and written to S3 object metadata (s3fs-compatible).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::FsConfig;
use crate::s3::ObjectMeta;

/// The kinds of node bucketfs shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    File,
    Directory,
    Symlink,
    /// Special files made by mknod(2): empty objects whose `x-amz-meta-mode` carries the type
    /// (as s3fs stores them); the kernel serves FIFOs and sockets itself.
    Fifo,
    Socket,
    CharDevice,
    BlockDevice,
}

impl FileKind {
    /// The `S_IFMT` bits of this kind.
    pub fn type_bits(self) -> u32 {
        match self {
            FileKind::File => libc::S_IFREG,
            FileKind::Directory => libc::S_IFDIR,
            FileKind::Symlink => libc::S_IFLNK,
            FileKind::Fifo => libc::S_IFIFO,
            FileKind::Socket => libc::S_IFSOCK,
            FileKind::CharDevice => libc::S_IFCHR,
            FileKind::BlockDevice => libc::S_IFBLK,
        }
    }

    /// The kind for `S_IFMT` bits of a mode; `None` for unknown types.
    pub fn from_type_bits(mode: u32) -> Option<FileKind> {
        Some(match mode & libc::S_IFMT {
            libc::S_IFREG => FileKind::File,
            libc::S_IFDIR => FileKind::Directory,
            libc::S_IFLNK => FileKind::Symlink,
            libc::S_IFIFO => FileKind::Fifo,
            libc::S_IFSOCK => FileKind::Socket,
            libc::S_IFCHR => FileKind::CharDevice,
            libc::S_IFBLK => FileKind::BlockDevice,
            _ => return None,
        })
    }

    /// Stored as an object holding no data of its own (FIFOs, sockets, device nodes).
    pub fn is_special(self) -> bool {
        matches!(
            self,
            FileKind::Fifo | FileKind::Socket | FileKind::CharDevice | FileKind::BlockDevice
        )
    }
}

/// Attributes of one node, as the core knows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr {
    pub ino: u64,
    pub kind: FileKind,
    pub size: u64,
    /// Permission bits only (no file type bits).
    pub perm: u16,
    pub uid: u32,
    pub gid: u32,
    pub mtime: SystemTime,
    pub atime: SystemTime,
    pub ctime: SystemTime,
    /// Device number of character and block devices (0 otherwise).
    pub rdev: u32,
    /// Links: 1 for files, 2 for directories, 0 once unlinked (still open).
    pub nlink: u32,
}

/// Metadata header names, as s3fs writes them (`x-amz-meta-` is added by the client).
pub const META_MODE: &str = "mode";
pub const META_UID: &str = "uid";
pub const META_GID: &str = "gid";
pub const META_MTIME: &str = "mtime";
pub const META_ATIME: &str = "atime";
pub const META_CTIME: &str = "ctime";
pub const META_RDEV: &str = "rdev";

impl Attr {
    /// Defaults for a node S3 says nothing about (a prefix without marker, or a new node).
    pub fn new(ino: u64, kind: FileKind, size: u64, cfg: &FsConfig, time: SystemTime) -> Attr {
        Attr {
            ino,
            kind,
            size,
            perm: match kind {
                FileKind::Directory => cfg.dir_mode,
                FileKind::Symlink => 0o777,
                _ => cfg.file_mode,
            },
            uid: cfg.uid,
            gid: cfg.gid,
            mtime: time,
            atime: time,
            ctime: time,
            rdev: 0,
            nlink: if kind == FileKind::Directory { 2 } else { 1 },
        }
    }

    /// Attributes of an object from HEAD/GET: size and LastModified, then the s3fs headers
    /// `x-amz-meta-{mode,uid,gid,mtime,atime,ctime}` where present.
    /// `default_kind` is Directory for `dir/` markers, File otherwise; a mode with S_IFLNK makes a symlink.
    pub fn from_meta(ino: u64, default_kind: FileKind, meta: &ObjectMeta, cfg: &FsConfig) -> Attr {
        let time = meta.last_modified.unwrap_or(UNIX_EPOCH);
        let mut attr = Attr::new(ino, default_kind, meta.size, cfg, time);
        attr.apply_user_metadata(&meta.user_metadata);
        if attr.kind == FileKind::Directory {
            attr.size = 0;
        }
        attr
    }

    /// Overlay s3fs-style metadata onto these attributes.
    pub fn apply_user_metadata(&mut self, m: &BTreeMap<String, String>) {
        if let Some(mode) = m.get(META_MODE).and_then(|v| v.trim().parse::<u32>().ok()) {
            // an object is a symlink or special file when its mode says so; s3fs-style
            // directory objects without trailing slash stay files here (the directory form is
            // reached through its prefix)
            if self.kind == FileKind::File {
                match FileKind::from_type_bits(mode) {
                    Some(k) if k == FileKind::Symlink || k.is_special() => self.kind = k,
                    _ => {}
                }
            }
            self.perm = (mode & 0o7777) as u16;
        }
        if let Some(uid) = m.get(META_UID).and_then(|v| v.trim().parse().ok()) {
            self.uid = uid;
        }
        if let Some(gid) = m.get(META_GID).and_then(|v| v.trim().parse().ok()) {
            self.gid = gid;
        }
        if let Some(t) = m.get(META_MTIME).and_then(|v| parse_epoch(v)) {
            self.mtime = t;
            self.ctime = t;
        }
        if let Some(t) = m.get(META_ATIME).and_then(|v| parse_epoch(v)) {
            self.atime = t;
        }
        if let Some(t) = m.get(META_CTIME).and_then(|v| parse_epoch(v)) {
            self.ctime = t;
        }
        if matches!(self.kind, FileKind::CharDevice | FileKind::BlockDevice) {
            if let Some(rdev) = m.get(META_RDEV).and_then(|v| v.trim().parse().ok()) {
                self.rdev = rdev;
            }
        }
    }

    /// The s3fs-compatible metadata headers that store these attributes on an object.
    pub fn to_user_metadata(&self) -> BTreeMap<String, String> {
        let type_bits = self.kind.type_bits();
        let mut m = BTreeMap::new();
        m.insert(
            META_MODE.to_string(),
            (type_bits | u32::from(self.perm)).to_string(),
        );
        m.insert(META_UID.to_string(), self.uid.to_string());
        m.insert(META_GID.to_string(), self.gid.to_string());
        m.insert(META_MTIME.to_string(), epoch_secs(self.mtime).to_string());
        m.insert(META_ATIME.to_string(), epoch_secs(self.atime).to_string());
        m.insert(META_CTIME.to_string(), epoch_secs(self.ctime).to_string());
        if matches!(self.kind, FileKind::CharDevice | FileKind::BlockDevice) {
            m.insert(META_RDEV.to_string(), self.rdev.to_string());
        }
        m
    }
}

/// Whole seconds since the epoch (times before it become 0).
pub fn epoch_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Parse `1700000000` or `1700000000.123456789` (seconds since the epoch).
pub fn parse_epoch(v: &str) -> Option<SystemTime> {
    let v = v.trim();
    let (secs, frac) = match v.split_once('.') {
        Some((s, f)) => (s, f),
        None => (v, ""),
    };
    let secs: u64 = secs.parse().ok()?;
    let nanos: u32 = if frac.is_empty() {
        0
    } else {
        let digits: String = frac.chars().take(9).collect();
        let n: u32 = digits.parse().ok()?;
        n * 10u32.pow(9 - digits.len() as u32)
    };
    Some(UNIX_EPOCH + Duration::new(secs, nanos))
}

/// Content-Type for a new object from its name's extension.
pub fn content_type_for(name: &str) -> &'static str {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "txt" | "log" | "md" | "csv" | "tsv" => "text/plain",
        "html" | "htm" => "text/html",
        "css" => "text/css",
        "js" => "application/javascript",
        "json" => "application/json",
        "xml" => "application/xml",
        "pdf" => "application/pdf",
        "zip" => "application/zip",
        "gz" | "tgz" => "application/gzip",
        "tar" => "application/x-tar",
        "bz2" => "application/x-bzip2",
        "xz" => "application/x-xz",
        "zst" => "application/zstd",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "svg" => "image/svg+xml",
        "webp" => "image/webp",
        "mp4" => "video/mp4",
        "mp3" => "audio/mpeg",
        "wav" => "audio/wav",
        "parquet" => "application/vnd.apache.parquet",
        "iso" => "application/x-iso9660-image",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(size: u64, m: &[(&str, &str)]) -> ObjectMeta {
        ObjectMeta {
            size,
            etag: Some("e".into()),
            last_modified: Some(UNIX_EPOCH + Duration::from_secs(1_000)),
            content_type: None,
            storage_class: None,
            user_metadata: m
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            content_headers: Default::default(),
        }
    }

    #[test]
    fn defaults_without_metadata() {
        let cfg = FsConfig::default();
        let a = Attr::from_meta(5, FileKind::File, &meta(10, &[]), &cfg);
        assert_eq!(a.perm, 0o644);
        assert_eq!(a.kind, FileKind::File);
        assert_eq!(a.mtime, UNIX_EPOCH + Duration::from_secs(1_000));
        assert_eq!(a.uid, cfg.uid);
    }

    #[test]
    fn s3fs_metadata_round_trip() {
        let cfg = FsConfig::default();
        let m = meta(
            3,
            &[
                ("mode", "33216"), // 0100700
                ("uid", "1000"),
                ("gid", "100"),
                ("mtime", "1500000000"),
            ],
        );
        let a = Attr::from_meta(5, FileKind::File, &m, &cfg);
        assert_eq!(a.perm, 0o700);
        assert_eq!((a.uid, a.gid), (1000, 100));
        assert_eq!(a.mtime, UNIX_EPOCH + Duration::from_secs(1_500_000_000));
        let back = a.to_user_metadata();
        assert_eq!(back["mode"], "33216");
        assert_eq!(back["mtime"], "1500000000");
    }

    #[test]
    fn symlink_mode_makes_a_symlink() {
        let cfg = FsConfig::default();
        let m = meta(7, &[("mode", "41471")]); // 0120777
        let a = Attr::from_meta(5, FileKind::File, &m, &cfg);
        assert_eq!(a.kind, FileKind::Symlink);
    }

    #[test]
    fn special_files_round_trip_as_s3fs_stores_them() {
        let cfg = FsConfig::default();
        // 0020644 with rdev, as s3fs writes a character device
        let m = meta(0, &[("mode", "8612"), ("rdev", "258")]);
        let a = Attr::from_meta(5, FileKind::File, &m, &cfg);
        assert_eq!((a.kind, a.perm, a.rdev), (FileKind::CharDevice, 0o644, 258));
        assert_eq!(a.to_user_metadata()["rdev"], "258");
        let fifo = Attr::from_meta(5, FileKind::File, &meta(0, &[("mode", "4516")]), &cfg);
        assert_eq!((fifo.kind, fifo.perm), (FileKind::Fifo, 0o644));
        assert_eq!(fifo.to_user_metadata()["mode"], "4516");
        assert!(!fifo.to_user_metadata().contains_key("rdev"));
        // a directory mode on a plain object keeps it a file
        let d = Attr::from_meta(5, FileKind::File, &meta(0, &[("mode", "16877")]), &cfg);
        assert_eq!(d.kind, FileKind::File);
    }

    #[test]
    fn epoch_parsing() {
        assert_eq!(
            parse_epoch("12.5"),
            Some(UNIX_EPOCH + Duration::from_millis(12_500))
        );
        assert_eq!(parse_epoch("x"), None);
        assert_eq!(content_type_for("a/b.TXT"), "text/plain");
        assert_eq!(content_type_for("noext"), "application/octet-stream");
    }
}

//! The local data cache through a real mount: a second read after a remount sends no GET, a
//! replaced object is read anew, the cache stays within `--cache-size`, and a damaged block
//! file is fetched again, never served.

mod common;

use std::path::Path;

use common::*;

const MIB: usize = 1024 * 1024;

/// A value of the mount's stats file.
fn stat(m: &Mount, name: &str) -> u64 {
    let text = std::fs::read_to_string(m.p(".bucketfs/stats")).expect("stats");
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} not in stats:\n{text}"))
}

/// Bytes of the files under `dir`.
/// Disk space the files under `dir` take (allocated blocks, as `du` counts them: a data file's
/// size is its object's, its evicted blocks are holes).
fn du(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut n = 0;
    for e in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let meta = e.metadata().expect("meta");
        n += if meta.is_dir() {
            du(&e.path())
        } else {
            meta.blocks() * 512
        };
    }
    n
}

#[test]
fn a_second_read_after_a_remount_sends_no_get() {
    if !fuse_available() {
        return;
    }
    let srv = server();
    let cache = tempfile::tempdir().expect("cache");
    let arg = cache.path().display().to_string();
    let data = pattern(256 * MIB + 123, 1);
    srv.put_object("big.bin", data.clone());
    let small = pattern(300_000, 2);
    srv.put_object("small.bin", small.clone());
    let args = ["--cache-dir", arg.as_str(), "--metadata-ttl", "0"];
    let m = Mount::new(&srv, &args);
    assert!(std::fs::read(m.p("big.bin")).expect("read") == data);
    assert!(std::fs::read(m.p("small.bin")).expect("read") == small);
    assert!(stat(&m, "data_cache_miss_bytes") >= data.len() as u64);
    drop(m);
    let gets = srv.counting().map(|s| s.count("GetObject"));
    let m = Mount::new(&srv, &args);
    assert!(std::fs::read(m.p("big.bin")).expect("read again") == data);
    assert!(std::fs::read(m.p("small.bin")).expect("read again") == small);
    assert_eq!(srv.counting().map(|s| s.count("GetObject")), gets, "no GET");
    assert_eq!(
        stat(&m, "data_cache_hit_bytes"),
        (data.len() + small.len()) as u64
    );
    assert_eq!(stat(&m, "data_cache_miss_bytes"), 0);
    // random reads are answered from the cache too
    let f = std::fs::File::open(m.p("big.bin")).expect("open");
    let mut buf = vec![0u8; 4096];
    for off in [33 * MIB as u64 + 17, 5, 20 * MIB as u64] {
        std::os::unix::fs::FileExt::read_exact_at(&f, &mut buf, off).expect("pread");
        assert!(buf[..] == data[off as usize..off as usize + 4096]);
    }
    drop(f);
    assert_eq!(srv.counting().map(|s| s.count("GetObject")), gets, "no GET");

    // replaced from outside: the new bytes are read (TTL 0: the open's HEAD sees the ETag)
    let new = pattern(256 * MIB + 123, 9);
    srv.put_object("big.bin", new.clone());
    assert!(
        std::fs::read(m.p("big.bin")).expect("read new") == new,
        "never the old bytes"
    );
}

/// `path` opened for random reads: no kernel read-ahead, so each read asks for its own pages
/// only (the same reads ask for the same bytes every time).
fn open_random(path: &Path) -> std::fs::File {
    use std::os::unix::io::AsRawFd;
    let f = std::fs::File::open(path).expect("open");
    // SAFETY: an advice on a descriptor we own.
    let rc = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_RANDOM) };
    assert_eq!(rc, 0, "posix_fadvise");
    f
}

#[test]
fn random_reads_fill_the_cache_block_by_block() {
    if !fuse_available() {
        return;
    }
    let srv = server();
    let cache = tempfile::tempdir().expect("cache");
    let arg = cache.path().display().to_string();
    let data = pattern(64 * MIB, 3);
    srv.put_object("db", data.clone());
    let m = Mount::new(&srv, &["--cache-dir", arg.as_str()]);
    let f = open_random(&m.p("db"));
    let mut buf = vec![0u8; 4096];
    // each read well behind the one before: a jump every time (no read-ahead to race with)
    let offsets: Vec<u64> = (0..20u64)
        .map(|i| (60 - 3 * i) * MIB as u64 + (i * 12345) % 100_000)
        .collect();
    for &off in &offsets {
        std::os::unix::fs::FileExt::read_exact_at(&f, &mut buf, off).expect("pread");
        assert!(buf[..] == data[off as usize..off as usize + 4096]);
    }
    drop(f);
    drop(m);
    let gets = srv.counting().map(|s| s.count("GetObject"));
    let m = Mount::new(&srv, &["--cache-dir", arg.as_str()]);
    let f = open_random(&m.p("db"));
    for &off in &offsets {
        std::os::unix::fs::FileExt::read_exact_at(&f, &mut buf, off).expect("pread");
        assert!(buf[..] == data[off as usize..off as usize + 4096]);
    }
    assert_eq!(
        srv.counting().map(|s| s.count("GetObject")),
        gets,
        "the same reads: no GET"
    );
    assert!(stat(&m, "data_cache_hit_bytes") >= 20 * 4096);
}

#[test]
fn the_cache_stays_within_its_size() {
    if !fuse_available() {
        return;
    }
    let srv = server();
    let cache = tempfile::tempdir().expect("cache");
    let arg = cache.path().display().to_string();
    let m = Mount::new(&srv, &["--cache-dir", arg.as_str(), "--cache-size", "8MiB"]);
    for i in 0..3 {
        let data = pattern(8 * MIB, 10 + i);
        srv.put_object(&format!("f{i}"), data.clone());
        assert!(std::fs::read(m.p(&format!("f{i}"))).expect("read") == data);
        let on_disk = du(&cache.path().join("data"));
        // the blocks, and a checksum file per object
        assert!(on_disk <= 8 * MIB as u64 + 3 * 4096, "{on_disk}");
    }
    assert!(stat(&m, "data_cache_evictions") > 0);
    assert!(stat(&m, "data_cache_bytes") <= 8 * MIB as u64);
}

#[test]
fn a_damaged_cache_block_is_fetched_again() {
    if !fuse_available() {
        return;
    }
    let srv = server();
    let cache = tempfile::tempdir().expect("cache");
    let arg = cache.path().display().to_string();
    let data = pattern(2 * MIB, 4);
    srv.put_object("f", data.clone());
    let m = Mount::new(&srv, &["--cache-dir", arg.as_str()]);
    assert!(std::fs::read(m.p("f")).expect("read") == data);
    drop(m);
    // flip a byte in the fourth block of the object's data file
    let file = sh(&format!(
        "find {}/data -type f -name '*.data' | head -1",
        cache.path().display()
    ));
    let file = file.trim();
    assert!(!file.is_empty(), "a data file");
    let mut bytes = std::fs::read(file).expect("data file");
    bytes[3 * 256 * 1024 + 1000] ^= 0x40;
    std::fs::write(file, bytes).expect("damage");
    let gets = srv.counting().map(|s| s.count("GetObject"));
    let m = Mount::new(&srv, &["--cache-dir", arg.as_str()]);
    assert!(
        std::fs::read(m.p("f")).expect("read") == data,
        "never the damaged bytes"
    );
    assert_eq!(stat(&m, "data_cache_corrupt_blocks"), 1);
    if let (Some(before), Some(s)) = (gets, srv.counting()) {
        assert!(s.count("GetObject") > before, "fetched again");
    }
}

#[test]
fn without_the_data_cache_every_read_goes_to_s3() {
    if !fuse_available() {
        return;
    }
    let srv = server();
    let cache = tempfile::tempdir().expect("cache");
    let arg = cache.path().display().to_string();
    let data = pattern(3 * MIB, 5);
    srv.put_object("f", data.clone());
    let args = ["--cache-dir", arg.as_str(), "--data-cache", "off"];
    let m = Mount::new(&srv, &args);
    assert!(std::fs::read(m.p("f")).expect("read") == data);
    drop(m);
    let gets = srv.counting().map(|s| s.count("GetObject"));
    let m = Mount::new(&srv, &args);
    assert!(std::fs::read(m.p("f")).expect("read") == data);
    if let (Some(before), Some(s)) = (gets, srv.counting()) {
        assert!(s.count("GetObject") > before);
    }
    assert!(!cache.path().join("data").exists());
}

/// What the daemon may hold beyond `--max-memory` (docs/SEMANTICS.md, "Memory"): its code,
/// runtime and tables (15 MiB for this debug build at rest), thread stacks, HTTP read buffers,
/// allocator slack. Measured for this test, debug build: 96-119 MiB on an idle machine or beside
/// two busy loops, 128 MiB once in CI under load; 148 MiB before the budget covered reads.
const FIXED_OVERHEAD: u64 = 76 << 20;

#[test]
fn seeking_readers_and_writers_stay_within_the_memory_budget() {
    if !fuse_available() {
        return;
    }
    let srv = server();
    let size = 128 * MIB;
    for i in 0..2u64 {
        srv.put_object(&format!("r{i}"), pattern(size, 50 + i));
    }
    let m = Mount::new(&srv, &["--max-memory", "64MiB"]);
    let readers: Vec<_> = (0..8u64)
        .map(|i| {
            let path = m.p(&format!("r{}", i % 2));
            std::thread::spawn(move || {
                let want = pattern(size, 50 + i % 2);
                let f = std::fs::File::open(path).expect("open");
                let mut buf = vec![0u8; 128 * 1024];
                let mut x = i * 7 + 1;
                // a run of sequential reads (the read-ahead window grows), then a jump
                // elsewhere (it is left behind), again and again
                for _ in 0..12 {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let start = (x >> 17) % (size as u64 - 8 * MIB as u64);
                    for k in 0..48u64 {
                        let off = start + k * buf.len() as u64;
                        std::os::unix::fs::FileExt::read_exact_at(&f, &mut buf, off)
                            .expect("pread");
                        assert!(buf[..] == want[off as usize..off as usize + buf.len()]);
                    }
                }
            })
        })
        .collect();
    let writers: Vec<_> = (0..8u64)
        .map(|i| {
            let path = m.p(&format!("w{i}"));
            std::thread::spawn(move || {
                use std::io::Write;
                let mut f = std::fs::File::create(path).expect("create");
                for c in 0..48u64 {
                    f.write_all(&pattern(MIB, i * 100 + c)).expect("write");
                }
                close_checked(f);
            })
        })
        .collect();
    for t in readers.into_iter().chain(writers) {
        t.join().expect("thread");
    }
    for i in 0..8u64 {
        let got = srv.get_object(&format!("w{i}")).expect("written");
        assert_eq!(got.len(), 48 * MIB);
        for c in 0..48usize {
            assert!(got[c * MIB..(c + 1) * MIB] == pattern(MIB, i * 100 + c as u64)[..]);
        }
    }
    let peak = m.peak_rss();
    eprintln!("daemon peak RSS {} MiB", peak >> 20);
    assert!(
        peak <= (64 << 20) + FIXED_OVERHEAD,
        "peak RSS {} MiB over 64 MiB + {} MiB",
        peak >> 20,
        FIXED_OVERHEAD >> 20
    );
}

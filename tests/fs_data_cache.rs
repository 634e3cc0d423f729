//! The data cache driven through the core (no mount): a file read at random again and again
//! has the regions around its misses filled in the background, within the cache's bound.

use std::path::PathBuf;

use bucketfs::config::FsConfig;
use bucketfs::fs::{Filesystem, ROOT_INO};
use bucketfs_test_server::TestServer;

#[path = "common/core.rs"]
mod core_fs;
use core_fs::{fs_with, ME};

const MIB: u64 = 1024 * 1024;
/// What a random miss past the eighth fills: the 4 MiB region around it.
const REGION: u64 = 4 * MIB;

fn data(len: u64, seed: u8) -> Vec<u8> {
    (0..len).map(|i| ((i % 251) as u8) ^ seed).collect()
}

fn cached(dir: &tempfile::TempDir, cache_size: u64) -> FsConfig {
    FsConfig {
        cache_dir: Some(PathBuf::from(dir.path())),
        cache_size,
        ..FsConfig::default()
    }
}

/// Reads of 4 KiB, one in the middle of each of these regions, far apart (each a random read).
const REGIONS: [u64; 11] = [9, 2, 13, 5, 0, 11, 7, 15, 3, 12, 6];

async fn read_at(fs: &Filesystem, fh: u64, off: u64, want: &[u8]) {
    let got = fs.read(fh, off, 4096).await.expect("read");
    assert!(
        got[..] == want[off as usize..off as usize + 4096],
        "bytes at {off}"
    );
}

/// A 64 MiB object read at random, one 4 KiB read in each of [`REGIONS`] through one open,
/// with a cache of `cache_size`, its background work settled; the GETs from the open on.
struct RandomReader {
    srv: TestServer,
    fs: std::sync::Arc<Filesystem>,
    _dir: tempfile::TempDir,
    body: Vec<u8>,
    fh: u64,
    gets: u64,
}

impl RandomReader {
    async fn run(cache_size: u64) -> RandomReader {
        let srv = TestServer::start().await;
        let dir = tempfile::tempdir().expect("cache dir");
        let fs = fs_with(&srv, cached(&dir, cache_size));
        let body = data(16 * REGION, 7);
        srv.put_object("big", body.clone());
        let ino = fs.lookup(ROOT_INO, "big").await.expect("lookup").ino;
        let fh = fs.open(ino, libc::O_RDONLY, ME).await.expect("open").fh;
        let gets = srv.count("GetObject");
        for r in REGIONS {
            read_at(&fs, fh, r * REGION + MIB + 1234, &body).await;
        }
        fs.settle_data_cache().await;
        RandomReader {
            srv,
            fs,
            _dir: dir,
            body,
            fh,
            gets,
        }
    }

    fn gets(&self) -> u64 {
        self.srv.count("GetObject") - self.gets
    }
}

#[tokio::test]
async fn a_file_read_at_random_again_and_again_has_the_regions_around_its_misses_filled() {
    let t = RandomReader::run(1024 * MIB).await;
    // a GET of its block for each read; the 9th, 10th and 11th misses (regions 3, 12, 6)
    // each also filled their region
    assert_eq!(t.gets(), 11 + 3);
    // anywhere in a filled region (its first, a middle and its last 4 KiB, the regions taken
    // in turn so that no read looks sequential): from the cache, no request, the same bytes
    for at in [0, 3 * MIB + 17, REGION - 4096] {
        for r in [3, 12, 6] {
            read_at(&t.fs, t.fh, r * REGION + at, &t.body).await;
        }
    }
    assert_eq!(t.gets(), 14, "filled regions are read locally");
    // a region read before the fills began was not filled: its other blocks need a GET
    read_at(&t.fs, t.fh, 9 * REGION + 3 * MIB, &t.body).await;
    assert!(t.gets() > 14);
    t.fs.release(t.fh).await.expect("release");
}

#[tokio::test]
async fn no_region_is_filled_for_a_file_larger_than_a_quarter_of_the_cache() {
    // 64 MiB of data against a 128 MiB cache: more than a quarter of it
    let t = RandomReader::run(128 * MIB).await;
    assert_eq!(t.gets(), 11, "one GET per read, nothing more");
    t.fs.release(t.fh).await.expect("release");
}

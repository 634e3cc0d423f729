#!/usr/bin/env bash
# The test command: what it needs installed (scripts/setup.sh), formatting, lints, then every test (unit, core against the in-process S3
# server, and real FUSE mounts: in CI they must run), a bounded soak run (scripts/soak.sh),
# then the mount suites against a real Ceph RGW (scripts/rgw.sh, from ../shared/ceph-rgw.sh;
# BUCKETFS_SKIP_RGW=1 leaves it out).
set -euo pipefail
cd "$(dirname "$0")/.."
export AWS_EC2_METADATA_DISABLED=true
# CI builds once from a clean clone: incremental state there is ~1 GiB of disk for nothing
if [ -n "${CI:-}" ]; then export CARGO_INCREMENTAL=0; fi
# what the tests need (FUSE tools, rsync, zip, sqlite3, moto): installed if missing
bash scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace -- --test-threads="${TEST_THREADS:-2}"
# the randomized differential run (files kept open, written anywhere, read back), bounded,
# with a remount and a kill -9 of the daemon between its phases; then the same with --write-back
SOAK_SECONDS="${SOAK_SECONDS:-45}" SOAK_SEED="${SOAK_SEED:-1}" SOAK_CRASH=1 bash scripts/soak.sh
SOAK_SECONDS="${SOAK_SECONDS:-45}" SOAK_SEED="${SOAK_SEED:-1}" SOAK_CRASH=1 \
  SOAK_MOUNT_ARGS=--write-back bash scripts/soak.sh
if [ -z "${BUCKETFS_SKIP_RGW:-}" ]; then
  if [ -f "${CEPH_RGW_SCRIPT:-../shared/ceph-rgw.sh}" ]; then
    bash scripts/rgw.sh
  elif [ -n "${CI:-}" ]; then
    echo "test: ../shared/ceph-rgw.sh is missing: the RGW suites cannot run" >&2
    exit 1
  else
    echo "SKIPPED: the mount suites against Ceph RGW (no ../shared/ceph-rgw.sh)"
  fi
fi

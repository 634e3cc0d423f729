#!/usr/bin/env bash
# The test command: formatting, lints, then every test (unit, core against the in-process S3
# server, and real FUSE mounts when /dev/fuse is usable).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace -- --test-threads="${TEST_THREADS:-2}"

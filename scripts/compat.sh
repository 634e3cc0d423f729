#!/usr/bin/env bash
# Runs the mount test suites (tests/mount_read.rs, mount_write.rs, mount_posix.rs) against a
# second, independent S3 server — moto — instead of the in-process test server, and prints
# PASS / FAIL / SKIP per test. SKIP: the test needs the in-process server's counters, faults or
# request log (it panicked with SKIP-EXTERNAL), or the machine has no /dev/fuse + root.
#
#   scripts/compat.sh                 # start moto on a free port, run all three suites
#   scripts/compat.sh mount_read      # one suite
#   BUCKETFS_TEST_ENDPOINT=http://127.0.0.1:9000 BUCKETFS_TEST_BUCKET=b \
#   BUCKETFS_TEST_ACCESS_KEY=K BUCKETFS_TEST_SECRET_KEY=S scripts/compat.sh   # any server
#
# Exit status 0 when nothing failed. moto keeps objects in memory: the suites stay in the
# hundreds of MiB. Known moto differences are in /work/shared/S3-SERVERS.md (e.g. it accepts
# any signature).
set -uo pipefail
cd "$(dirname "$0")/.."

suites=("$@")
[ ${#suites[@]} -eq 0 ] && suites=(mount_read mount_write mount_posix)

moto_pid=""
cleanup() {
    if [ -n "$moto_pid" ]; then
        kill "$moto_pid" 2>/dev/null
        wait "$moto_pid" 2>/dev/null
    fi
}
trap cleanup EXIT INT TERM

if [ -z "${BUCKETFS_TEST_ENDPOINT:-}" ]; then
    if ! command -v moto_server >/dev/null; then
        echo "compat: moto_server not found (pip install 'moto[server]'), or set BUCKETFS_TEST_ENDPOINT" >&2
        exit 2
    fi
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    log=$(mktemp -t bucketfs-moto.XXXXXX.log)
    moto_server -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
    moto_pid=$!
    export BUCKETFS_TEST_ENDPOINT="http://127.0.0.1:$port"
    for _ in $(seq 1 100); do
        curl -fsS --max-time 10 -o /dev/null "$BUCKETFS_TEST_ENDPOINT/" 2>/dev/null && break
        sleep 0.1
    done
    export BUCKETFS_TEST_BUCKET="${BUCKETFS_TEST_BUCKET:-bucketfs-compat}"
    export BUCKETFS_TEST_ACCESS_KEY="${BUCKETFS_TEST_ACCESS_KEY:-testing}"
    export BUCKETFS_TEST_SECRET_KEY="${BUCKETFS_TEST_SECRET_KEY:-compat-secret-never-logged}"
    # moto accepts unsigned requests: create the bucket with a plain PUT
    if ! curl -fsS --max-time 60 -X PUT -o /dev/null "$BUCKETFS_TEST_ENDPOINT/$BUCKETFS_TEST_BUCKET"; then
        echo "compat: cannot create bucket on moto at $BUCKETFS_TEST_ENDPOINT (log: $log)" >&2
        exit 2
    fi
    echo "compat: moto at $BUCKETFS_TEST_ENDPOINT, bucket $BUCKETFS_TEST_BUCKET"
else
    echo "compat: external server $BUCKETFS_TEST_ENDPOINT, bucket ${BUCKETFS_TEST_BUCKET:-bucketfs-compat}"
fi

cargo build --quiet --bin bucketfs || exit 2
pass=0 fail=0 skip=0
failed=()
for suite in "${suites[@]}"; do
    bin=$(cargo test --test "$suite" --no-run 2>&1 | sed -n "s/.*Executable .*(\(.*\))$/\1/p" | tail -1)
    if [ -z "$bin" ] || [ ! -x "$bin" ]; then
        echo "compat: $suite does not build" >&2
        exit 2
    fi
    tests=$("$bin" --list 2>/dev/null | sed -n 's/: test$//p')
    for t in $tests; do
        # CARGO_BIN_EXE_bucketfs is compiled into the test binary: no cargo needed to run it
        out=$("$bin" --exact "$t" --test-threads=1 --nocapture 2>&1)
        rc=$?
        if grep -q "SKIP-EXTERNAL" <<<"$out"; then
            printf 'SKIP  %s::%s (needs the in-process server)\n' "$suite" "$t"
            skip=$((skip + 1))
        elif grep -q "^SKIPPED" <<<"$out"; then
            printf 'SKIP  %s::%s (no /dev/fuse or not root)\n' "$suite" "$t"
            skip=$((skip + 1))
        elif [ $rc -eq 0 ]; then
            printf 'PASS  %s::%s\n' "$suite" "$t"
            pass=$((pass + 1))
        else
            printf 'FAIL  %s::%s\n' "$suite" "$t"
            fail=$((fail + 1))
            failed+=("$suite::$t")
            if [ -n "${COMPAT_VERBOSE:-}" ]; then
                grep -E -A1 "panicked|assert|left|right|Error|error|RSS" <<<"$out" | head -24 | sed 's/^/      /'
            fi
        fi
    done
done
echo "compat: $pass passed, $fail failed, $skip skipped"
if [ $fail -gt 0 ]; then
    printf '  failed: %s\n' "${failed[@]}"
    echo "  (COMPAT_VERBOSE=1 shows why)"
    exit 1
fi

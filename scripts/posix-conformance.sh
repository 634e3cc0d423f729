#!/usr/bin/env bash
# POSIX conformance: runs pjdfstest (the Rust port, `cargo install pjdfstest`) on a fresh
# bucketfs mount of the in-process test S3 server, and prints `N passed, N failed, N skipped`.
#
#   scripts/posix-conformance.sh [PATTERN...]   # optional pjdfstest name filters
#
# Needs root and /dev/fuse (pjdfstest switches users and calls chown). Exits non-zero only when
# the harness itself fails (build, server, mount), not when test cases fail — unless STRICT=1:
# then also when a case fails that scripts/posix-conformance.expected does not list.
# PROFILE=release builds and runs target/release instead of target/debug.
# KEEP_LOG=DIR copies the pjdfstest output and the bucketfs log there.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PROFILE=${PROFILE:-debug}
EXPECTED="$ROOT/scripts/posix-conformance.expected"
TEST_USER=${PJDFSTEST_USER:-tests}

die() { echo "posix-conformance: $*" >&2; exit 2; }

[ "$(id -u)" = 0 ] || die "needs root (pjdfstest switches users and changes owners)"
[ -e /dev/fuse ] || die "needs /dev/fuse"

# 1. bucketfs and the test server
if [ "$PROFILE" = release ]; then
  cargo build --release --workspace -q || die "cargo build failed"
else
  cargo build --workspace -q || die "cargo build failed"
fi
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps 2>/dev/null |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])' 2>/dev/null ||
  echo "$ROOT/target")
BUCKETFS="$TARGET_DIR/$PROFILE/bucketfs"
SERVER="$TARGET_DIR/$PROFILE/bucketfs-test-server"
[ -x "$BUCKETFS" ] && [ -x "$SERVER" ] || die "binaries missing under $TARGET_DIR/$PROFILE"

# 2. pjdfstest (links libacl) and the users it switches to
PJDFSTEST=$(command -v pjdfstest || echo "$HOME/.cargo/bin/pjdfstest")
if [ ! -x "$PJDFSTEST" ]; then
  if ! ldconfig -p | grep -q 'libacl\.so '; then
    if command -v apt-get >/dev/null; then
      apt-get install -y -qq libacl1-dev >/dev/null 2>&1 ||
        { apt-get update -qq && apt-get install -y -qq libacl1-dev >/dev/null; } ||
        die "cannot install libacl1-dev (pjdfstest links libacl)"
    fi
  fi
  echo "posix-conformance: installing pjdfstest (a few minutes)" >&2
  cargo install pjdfstest --locked -q || cargo install pjdfstest -q || die "cargo install pjdfstest failed"
  PJDFSTEST="$HOME/.cargo/bin/pjdfstest"
fi
NOBODY_GROUP=$(id -gn nobody 2>/dev/null) || die "no user nobody"
if ! id "$TEST_USER" >/dev/null 2>&1; then
  getent group "$TEST_USER" >/dev/null || groupadd "$TEST_USER" || die "groupadd $TEST_USER failed"
  useradd -M -N -g "$TEST_USER" -d / -s /usr/sbin/nologin -c "pjdfstest dummy user" "$TEST_USER" ||
    die "useradd $TEST_USER failed"
fi
TEST_GROUP=$(id -gn "$TEST_USER")

WORK=$(mktemp -d /tmp/bucketfs-posix.XXXXXX)
MNT="$WORK/mnt"
mkdir -p "$MNT"
chmod 755 "$WORK"
server_pid=""
mount_pid=""
mounted() { awk -v m="$MNT" '$5 == m && / - fuse/ {found=1} END {exit !found}' /proc/self/mountinfo; }
cleanup() {
  set +e
  if mounted; then
    umount "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null
  fi
  if [ -n "$mount_pid" ]; then
    for _ in $(seq 100); do kill -0 "$mount_pid" 2>/dev/null || break; sleep 0.1; done
    kill "$mount_pid" 2>/dev/null
    wait "$mount_pid" 2>/dev/null
  fi
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null
    wait "$server_pid" 2>/dev/null
  fi
  if [ -n "${KEEP_LOG:-}" ]; then
    mkdir -p "$KEEP_LOG" && cp -f "$WORK"/*.log "$KEEP_LOG"/ 2>/dev/null
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# 3. a fresh server on a free loopback port, and a mount of its bucket
export AWS_ACCESS_KEY_ID=posix AWS_SECRET_ACCESS_KEY=posixsecret
BUCKET=posix
"$SERVER" --host 127.0.0.1 --port 0 --bucket "$BUCKET" \
  --access-key "$AWS_ACCESS_KEY_ID" --secret-key "$AWS_SECRET_ACCESS_KEY" \
  >"$WORK/server.out" 2>"$WORK/server.log" &
server_pid=$!
ENDPOINT=""
for _ in $(seq 100); do
  ENDPOINT=$(sed -n 's/^listening on \(http[^ ]*\) .*/\1/p' "$WORK/server.out")
  [ -n "$ENDPOINT" ] && break
  kill -0 "$server_pid" 2>/dev/null || die "test server exited: $(cat "$WORK/server.log")"
  sleep 0.1
done
[ -n "$ENDPOINT" ] || die "test server did not start"

RUST_LOG=${RUST_LOG:-bucketfs=info} "$BUCKETFS" mount "$BUCKET" "$MNT" --endpoint "$ENDPOINT" \
  --region us-east-1 --path-style --foreground --allow-other \
  </dev/null >/dev/null 2>"$WORK/bucketfs.log" &
mount_pid=$!
for _ in $(seq 200); do
  mounted && break
  kill -0 "$mount_pid" 2>/dev/null || die "bucketfs exited: $(tail -20 "$WORK/bucketfs.log")"
  sleep 0.1
done
mounted || die "mount did not come up"

# 4. pjdfstest. Times are stored in whole seconds in the object metadata (as s3fs stores
# them), so naptime is a bit over one second.
cat >"$WORK/pjdfstest.toml" <<EOF
[features]
utimensat = {}
utime_now = {}
rename_ctime = {}

[settings]
naptime = 1.01
allow_remount = false

[dummy_auth]
entries = [
  ["nobody", "$NOBODY_GROUP"],
  ["$TEST_USER", "$TEST_GROUP"],
]
EOF
set +e
# a directory on another filesystem, for the EXDEV cases of rename and link
mkdir -p "$WORK/other-fs"
(cd "$MNT" && RUST_BACKTRACE=0 RUST_LIB_BACKTRACE=0 \
  "$PJDFSTEST" -c "$WORK/pjdfstest.toml" -p "$MNT" -s "$WORK/other-fs" "$@") >"$WORK/pjdfstest.log" 2>&1
pjd_rc=$?
set -e
sed 's/\x1b\[[0-9;]*m//g' "$WORK/pjdfstest.log" >"$WORK/pjdfstest.plain.log"
mv "$WORK/pjdfstest.plain.log" "$WORK/pjdfstest.log"
cat "$WORK/pjdfstest.log"
summary=$(grep -E '^Summary: ' "$WORK/pjdfstest.log" | tail -1)
[ -n "$summary" ] || die "pjdfstest did not finish (exit $pjd_rc); bucketfs log: $(tail -20 "$WORK/bucketfs.log")"
failed=$(echo "$summary" | sed -n 's/.* \([0-9]*\) failed.*/\1/p')
skipped=$(echo "$summary" | sed -n 's/.* \([0-9]*\) skipped.*/\1/p')
passed=$(echo "$summary" | sed -n 's/.* \([0-9]*\) passed.*/\1/p')
awk '$NF == "FAILED" {print $1}' "$WORK/pjdfstest.log" | sort >"$WORK/failed.txt"
mounted || die "the mount went away during the run"

status=0
if [ "${STRICT:-0}" = 1 ]; then
  unexpected=$(grep -v '^#' "$EXPECTED" 2>/dev/null | sed '/^$/d' | sort | comm -23 "$WORK/failed.txt" -)
  if [ -n "$unexpected" ]; then
    echo "failing but not in scripts/posix-conformance.expected:"
    echo "$unexpected" | sed 's/^/  /'
    status=1
  fi
fi
echo "$passed passed, $failed failed, $skipped skipped"
exit $status

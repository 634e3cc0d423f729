#!/usr/bin/env bash
# Bounded-time randomized differential test: the same create/write/append/overwrite/truncate/
# rename/unlink/mkdir/rmdir/read workload, with files kept open across steps (pwrite anywhere,
# pread, ftruncate, mmap writes, close), on a bucketfs mount and on a local directory, trees
# compared after every step and after remounts. SOAK_SECONDS (default 60), SOAK_SEED,
# SOAK_MAX_SIZE (how far writes in open files reach, default 20 MiB; the large run:
# SOAK_MAX_SIZE=536870912 SOAK_CHECK_EVERY=10), SOAK_CHECK_EVERY (contents compared every N steps
# and after every close and remount; sizes in between).
# SOAK_MOUNT_ARGS: more mount options, e.g. "--write-back --cache-dir DIR" (write-back: the
# remounts then also prove that unmount uploads everything pending) or "--cache-dir none".
# SOAK_CRASH=1: between the phases, also kill -9 the daemon (every file closed first) and mount
# again with the same options: whatever close acknowledged must be there (with --write-back, the
# journal's pending uploads are resumed by the new mount).
# SOAK_ENDPOINT (with SOAK_BUCKET, an empty bucket, and AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY):
# run against that server (e.g. Ceph RGW, see scripts/rgw.sh) instead of the in-process one.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q --workspace
BIN=target/debug
export AWS_EC2_METADATA_DISABLED=true
work=$(mktemp -d); mnt=$work/mnt; local=$work/local; mkdir -p "$mnt" "$local"
server=
cleanup() {
  umount "$mnt" 2>/dev/null || true
  [ -z "$server" ] || kill "$server" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
if [ -n "${SOAK_ENDPOINT:-}" ]; then
  endpoint=$SOAK_ENDPOINT; bucket=${SOAK_BUCKET:?SOAK_BUCKET names the empty bucket to use}
  : "${AWS_ACCESS_KEY_ID:?}" "${AWS_SECRET_ACCESS_KEY:?}"
  echo "soak: against $endpoint, bucket $bucket, mount options: ${SOAK_MOUNT_ARGS:-none}"
else
  PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  endpoint=http://127.0.0.1:$PORT; bucket=soak
  export AWS_ACCESS_KEY_ID=soak AWS_SECRET_ACCESS_KEY=soaksecret
  $BIN/bucketfs-test-server --port "$PORT" --bucket soak --access-key soak --secret-key soaksecret > "$work/server.log" 2>&1 &
  server=$!
  for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done
fi
mount_cmd="$BIN/bucketfs mount $bucket $mnt --endpoint $endpoint --region us-east-1 \
  --path-style --part-size 5M --log-file $work/bucketfs.log ${SOAK_MOUNT_ARGS:-}"
$mount_cmd
# umount returns once the daemon has finished its uploads and let go of the mountpoint
python3 scripts/soak.py "$mnt" "$local" --open-files --seconds "${SOAK_SECONDS:-60}" --seed "${SOAK_SEED:-$RANDOM}" \
  --max-size "${SOAK_MAX_SIZE:-20971520}" --check-every "${SOAK_CHECK_EVERY:-1}" ${SOAK_TRACE:+--trace} \
  --remount-cmd "umount $mnt && while grep -q ' $mnt ' /proc/mounts; do sleep 0.1; done && $mount_cmd" \
  ${SOAK_CRASH:+--crash-cmd "pkill -KILL -f '^[^ ]*bucketfs mount --foreground $bucket $mnt ' && umount -l $mnt && while grep -q ' $mnt ' /proc/mounts; do sleep 0.1; done && $mount_cmd"} \
  || { tail -20 "$work/bucketfs.log"; cp "$work/bucketfs.log" /tmp/soak-failed-bucketfs.log; [ -z "$server" ] || cp "$work/server.log" /tmp/soak-failed-server.log; echo "whole log: /tmp/soak-failed-bucketfs.log"; exit 1; }
cp "$work/bucketfs.log" /tmp/soak-last-bucketfs.log
# what the mounts after the kill -9 found to finish (write-back: the pending uploads)
grep -h "INFO.*resuming\|WARN\|ERROR" "$work/bucketfs.log" | cut -c1-240 | tail -5 || true

#!/usr/bin/env bash
# bench-write.sh - the 1 GiB sequential write with the data in the bucket at close, bucketfs
# beside the raw boto3 client's multipart upload (upload_file: 8 MiB parts, 10 threads), every
# configuration in rotation (raw first, then the others in an order that turns each rep: A B C,
# A C B, ...), each bucketfs rep on a fresh mount and cache dir, its object deleted after it,
# the kernel's page cache dropped before each rep:
#   raw     boto3 upload_file of the same 1 GiB file
#   bfs     bucketfs, staging on disk (the default)
#   bfsmem  bucketfs --cache-dir none (parts in memory only)
#   base    another bucketfs build (BASE_BIN=path): an A/B of a change
#   basedef that build with its own defaults (no --cache-dir): a build from before the
#           staging area (68936c1^) as it ran then, parts in memory
#   bfsnock bucketfs, staging on disk, --upload-checksums off (what the checksums cost)
#   bfsmd5  bucketfs, staging on disk, --upload-checksums md5 (Content-MD5 instead of CRC32C or
#           the signed SHA-256)
# Per rep: seconds until dd (or upload_file) returns; for bucketfs also the daemon's CPU seconds
# (user + system, from /proc at unmount time).
#
# usage: scripts/bench-write.sh [REPS] [CONFIGS]     (defaults: 5, "raw bfs bfsmem", + base with BASE_BIN)
# env:   EP (http://127.0.0.1:19000, the s3s-fs of ../shared/bench/setup.sh), AK/SK (benchak/benchsk),
#        BUCKETFS_BIN (target/release/bucketfs), OUT (/tmp/bench/results_write.tsv),
#        MOUNT_ARGS (more bucketfs mount options for every bucketfs config)
# Loopback only. Needs root and /dev/fuse; builds nothing.
set -u
cd "$(dirname "$0")/.."
B=/tmp/bench; MNT=$B/mnt/benchwrite; mkdir -p "$MNT"
REPS=${1:-5}; CONFIGS=${2:-"raw bfs bfsmem${BASE_BIN:+ base}"}
OUT=${OUT:-$B/results_write.tsv}; : > "$OUT"
EP=${EP:-http://127.0.0.1:19000}; BKT=benchwrite
BIN=${BUCKETFS_BIN:-target/release/bucketfs}
export EP AWS_EC2_METADATA_DISABLED=true AWS_ACCESS_KEY_ID=${AK:-benchak} AWS_SECRET_ACCESS_KEY=${SK:-benchsk}
SRC=${SRC:-$B/data/src1g}  # the file written (SRC=/dev/shm/...: a source off the disk)
[ -f "$SRC" ] || { echo "bench-write: $SRC missing (../shared/bench/setup.sh)" >&2; exit 2; }
mountpoint -q "$MNT" && umount "$MNT"
[ -z "$(ls -A "$MNT")" ] || { echo "bench-write: $MNT is not empty" >&2; exit 2; }
python3 - "$BKT" <<'PY'
import os, sys, boto3
s3 = boto3.client("s3", endpoint_url=os.environ["EP"], region_name="us-east-1")
try: s3.create_bucket(Bucket=sys.argv[1])
except Exception: pass
PY
rec() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" | tee -a "$OUT"; }
# every rep deletes its object through S3 once measured, so each starts with none
drop() {
  python3 - "$BKT" <<'PY'
import os, sys, boto3
boto3.client("s3", endpoint_url=os.environ["EP"], region_name="us-east-1").delete_object(Bucket=sys.argv[1], Key="big")
PY
}

. scripts/bench-order.sh

for r in $(seq "$REPS"); do
  for cfg in $(bench_order "$r" $CONFIGS); do
    sync; echo 1 > /proc/sys/vm/drop_caches
    if [ "$cfg" = raw ]; then
      rec raw "$r" s "$(python3 - "$BKT" "$SRC" <<'PY'
import os, sys, time, boto3
from boto3.s3.transfer import TransferConfig
s3 = boto3.client("s3", endpoint_url=os.environ["EP"], region_name="us-east-1")
tc = TransferConfig(multipart_threshold=8 << 20, multipart_chunksize=8 << 20, max_concurrency=10)
t0 = time.time(); s3.upload_file(sys.argv[2], sys.argv[1], "big", Config=tc)
print(f"{time.time() - t0:.3f}")
PY
)"
      drop
      continue
    fi
    bin=$BIN; cache=(--cache-dir "$B/cache_benchwrite")
    [ "$cfg" = base ] || [ "$cfg" = basedef ] && bin=$BASE_BIN
    [ "$cfg" = basedef ] && cache=()
    [ "$cfg" = bfsmem ] && cache=(--cache-dir none)
    [ "$cfg" = bfsnock ] && cache+=(--upload-checksums off)
    [ "$cfg" = bfsmd5 ] && cache+=(--upload-checksums md5)
    rm -rf "$B/cache_benchwrite"
    "$bin" mount $BKT "$MNT" --endpoint "$EP" --region us-east-1 --path-style --foreground \
      "${cache[@]}" ${MOUNT_ARGS:-} > "$B/log_write_$cfg.txt" 2>&1 & pid=$!
    for _ in $(seq 100); do mountpoint -q "$MNT" && break; sleep 0.1; done
    mountpoint -q "$MNT" || { echo "bench-write: mount $cfg failed" >&2; kill $pid; continue; }
    t0=$(date +%s.%N)
    dd if="$SRC" of="$MNT/big" bs=1M status=none || echo "bench-write: dd failed ($cfg)" >&2
    t1=$(date +%s.%N)
    rec "$cfg" "$r" s "$(python3 -c "print(f'{$t1-$t0:.3f}')")"
    rec "$cfg" "$r" daemon_cpu_s "$(awk '{print ($14+$15)/100}' /proc/$pid/stat)"
    umount "$MNT"; wait $pid
    drop
  done
done

python3 - "$OUT" <<'PY'
import sys, statistics, collections
v = collections.defaultdict(list)
for line in open(sys.argv[1]):
    cfg, rep, metric, value = line.split()
    v[(cfg, metric)].append(float(value))
print("\n| config | s (median) | each rep | daemon CPU s | speed vs raw |\n|---|---|---|---|---|")
raw = statistics.median(v[("raw", "s")]) if ("raw", "s") in v else None
for cfg in dict.fromkeys(c for c, _ in v):
    s = v[(cfg, "s")]
    med = statistics.median(s)
    cpu = v.get((cfg, "daemon_cpu_s"))
    cpu_txt = f"{statistics.median(cpu):.2f}" if cpu else "–"
    ratio = f"{raw / med:.3f}×" if raw else "–"
    reps = ", ".join(f"{x:.2f}" for x in s)
    print(f"| {cfg} | {med:.2f} | {reps} | {cpu_txt} | {ratio} |")
PY

#!/usr/bin/env bash
# bench-writeback.sh - write-back (#13) beside the durable default and rclone's write cache, in
# rotation (A B C A B C ...), each measurement on a fresh mount:
#   bfs    bucketfs, durable at close (default)
#   bfswb  bucketfs --write-back
#   rcw    rclone mount --vfs-cache-mode writes (uploads 5 s after close: --vfs-write-back 5s)
# Workloads:
#   T  `cp -r` of 2,000 x 4 KiB files (40 directories, ../shared/bench/setup.sh) on moto: seconds until cp returns
#      ("apparent") and until every object is listed in the bucket ("landed"; a raw paginated
#      listing polled from the moment cp returns)
#   G  `dd` of 1 GiB (1 MiB blocks, close included) on s3s-fs: seconds until dd returns and until
#      the object has its full size in the bucket (HEAD polled)
# bucketfs's S3 requests by type come from its stats at unmount.
#
# usage: scripts/bench-writeback.sh [REPS] [WORKLOADS] [CONFIGS]   (defaults: 3, "T G", "bfs bfswb rcw")
# env:   BUCKETFS_BIN (default target/release/bucketfs), OUT (/tmp/bench/results_wb.tsv)
# Servers must be up (../shared/bench/setup.sh: s3s-fs on :19000, moto on :19001). Loopback only.
set -u
cd "$(dirname "$0")/.."
SH=$(cd ../shared/bench && pwd); B=/tmp/bench
REPS=${1:-3}; WORKLOADS=${2:-"T G"}; CONFIGS=${3:-"bfs bfswb rcw"}
OUT=${OUT:-$B/results_wb.tsv}
export S3_AK=benchak S3_SK=benchsk AWS_EC2_METADATA_DISABLED=true
MOTO=http://127.0.0.1:19001; S3SFS=http://127.0.0.1:19000
mkdir -p $B/data

now() { date +%s.%N; }
el() { python3 -c "import sys; print(f'{float(sys.argv[2])-float(sys.argv[1]):.3f}')" "$1" "$2"; }
rec() { printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$(cut -d' ' -f1 /proc/loadavg)" | tee -a "$OUT"; }
url() { case $1 in moto) echo $MOTO;; s3sfs) echo $S3SFS;; esac; }
s3u() { S3_URL=$(url "$1") python3 $SH/s3util.py "${@:2}"; }

mnt() {  # CFG BACKEND BUCKET
  case $1 in
    bfs) BUCKETFS_ARGS="" bash $SH/run_all.sh mount bfs "$2" "$3" ;;
    bfswb) BUCKETFS_ARGS="--write-back" bash $SH/run_all.sh mount bfs "$2" "$3" ;;
    rcw) bash $SH/run_all.sh mount rcw "$2" "$3" ;;
  esac
}
dir_of() { case $1 in bfs|bfswb) echo $B/mnt/bfs;; rcw) echo $B/mnt/rcw;; esac; }
umnt() {  # CFG: unmount; bucketfs's request counts from its log
  local c=bfs; [ "$1" = rcw ] && c=rcw
  local log=$B/log_$c.txt pos=0
  [ -f $log ] && pos=$(wc -c < $log)
  bash $SH/run_all.sh umount $c
  if [ $c = bfs ]; then
    tail -c +$((pos + 1)) $log | grep -o 's3_requests{op="[A-Za-z_]*"} [0-9]*' \
      | sed 's/s3_requests{op="\(.*\)"} \(.*\)/\1 \2/' | tr '\n' ' '
  fi
}

[ -d $B/data/tree ] || python3 - <<'PY'
import os
for i in range(2000):
    d = f"/tmp/bench/data/tree/d{i % 20:02}"
    os.makedirs(d, exist_ok=True)
    with open(f"{d}/f{i:04}", "wb") as f:
        f.write(os.urandom(4096))
PY
[ -f $B/data/src1g ] || dd if=/dev/urandom of=$B/data/src1g bs=1M count=1024 status=none

work_T() {  # CFG REP
  local bkt=wbt-$1-$2-$(date +%s) t0 t1 w reqs
  s3u moto mkbucket $bkt; mnt $1 moto $bkt || { rec "$1#$2" cp2000 rc mount_failed; return; }
  t0=$(now); cp -r $B/data/tree "$(dir_of $1)/tree"; t1=$(now)
  w=$(s3u moto waitcount $bkt tree/ 2000 300)
  rec "$1#$2" cp2000 apparent_s "$(el $t0 $t1)"
  rec "$1#$2" cp2000 landed_s "$(python3 -c "print('NA' if '$w'=='TIMEOUT' else f'{$(el $t0 $t1)+float(\"$w\"):.3f}')")"
  reqs=$(umnt $1); [ -n "$reqs" ] && rec "$1#$2" cp2000 requests "$reqs"
  s3u moto empty $bkt >/dev/null 2>&1
}

work_G() {  # CFG REP
  local bkt=wbg-$1-$2-$(date +%s) t0 t1 w reqs
  s3u s3sfs mkbucket $bkt; mnt $1 s3sfs $bkt || { rec "$1#$2" dd1g rc mount_failed; return; }
  t0=$(now); dd if=$B/data/src1g of="$(dir_of $1)/big" bs=1M status=none; t1=$(now)
  w=$(s3u s3sfs waitsize $bkt big 1073741824 300)
  rec "$1#$2" dd1g apparent_s "$(el $t0 $t1)"
  rec "$1#$2" dd1g landed_s "$(python3 -c "print('NA' if '$w'=='TIMEOUT' else f'{$(el $t0 $t1)+float(\"$w\"):.3f}')")"
  reqs=$(umnt $1); [ -n "$reqs" ] && rec "$1#$2" dd1g requests "$reqs"
  s3u s3sfs empty $bkt >/dev/null 2>&1
}

for r in $(seq 1 "$REPS"); do
  for w in $WORKLOADS; do
    for c in $CONFIGS; do
      echo "=== $w rep $r $c $(uptime)" >&2
      work_$w $c $r
    done
  done
done

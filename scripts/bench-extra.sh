#!/usr/bin/env bash
# bench-extra.sh - what ../shared/bench lacks and the issues ask for, rotated like run_all.sh:
#   F  `find` over FIND_KEYS (10,000) keys, cold (fresh mount) and warm, on moto:
#      bucketfs vs s3fs vs rclone (cache off) vs a raw boto3 listing of the same keys
#   R  bucketfs daemon: 1 GiB dd write (incl. close) and cold 1 GiB read on s3s-fs, each on a fresh
#      mount: time, peak RSS (VmHWM of /proc/PID/status), daemon CPU seconds, S3 requests by type
#   C  bucketfs `cp -r` of 2,000 x 4 KiB on moto: S3 requests per file
#   W  bucketfs: 24 `dd` writers of 100 MiB each at once on s3s-fs (default settings): time, peak
#      RSS (the issue's bound: 128 MiB), CPU, requests; every object's size checked after
# S3 request counts come from the stats bucketfs logs at unmount ("stats at unmount:" followed by
# `s3_requests{op="..."} N` lines), so every measured operation gets its own mount.
#
# usage: scripts/bench-extra.sh [REPS] [PHASES]        (defaults: 3, "F R C W")
# env:   FIND_CONFIGS="raw bfs s3fs rcoff"  FIND_KEYS=10000  BUCKETFS_ARGS=...  BUCKETFS_BIN=...
#        OUT=/tmp/bench/results_extra.tsv   PROFILE=1 (perf record the daemon during R, one rep)
#        LABEL=bfs (config name in R/C results)  REP_OFFSET=0 (first rep number - 1, for R)
# Servers must be up (../shared/bench/setup.sh). Results: TSV label#rep, workload, metric, value, load1
# (summarize.py reads it). Loopback only.
set -u
cd "$(dirname "$0")/.."
SH=$(cd ../shared/bench && pwd); B=/tmp/bench
REPS=${1:-${REPS:-3}}; PHASES=${2:-"F R C W"}
OUT=${OUT:-$B/results_extra.tsv}; NKEYS=${FIND_KEYS:-10000}
FIND_CONFIGS=${FIND_CONFIGS:-"raw bfs s3fs rcoff"}
TMO=${TMO:-600}
L=${LABEL:-bfs}   # label of the bucketfs configuration in phases R and C (bench-knobs.sh sets it)
export S3_AK=benchak S3_SK=benchsk
MOTO=http://127.0.0.1:19001; S3SFS=http://127.0.0.1:19000
mkdir -p $B; ERRLOG=$B/errors.log

now() { date +%s.%N; }
el() { python3 -c "import sys; print(f'{float(sys.argv[2])-float(sys.argv[1]):.3f}')" "$1" "$2"; }
load1() { cut -d' ' -f1 /proc/loadavg; }
rec() { printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$(load1)" | tee -a "$OUT"; }
pidof_cfg() { cat $B/pid_$1 2>/dev/null; }
hwm() { awk '/VmHWM/{printf "%.1f\n", $2/1024}' "/proc/$1/status" 2>/dev/null || echo NA; }
cpu_s() { awk '{printf "%.2f\n", ($14+$15)/100}' "/proc/$1/stat" 2>/dev/null || echo NA; }
# per-thread CPU of the daemon (name: seconds), busiest first
threads() {
  for t in /proc/$1/task/*; do
    awk -v n="$(cat $t/comm 2>/dev/null)" '{printf "%s:%.2f\n", n, ($14+$15)/100}' $t/stat 2>/dev/null
  done | awk -F: '{s[$1]+=$2; c[$1]++} END {for (k in s) printf "%s(x%d)=%.2fs\n", k, c[k], s[k]}' \
    | sort -t= -k2 -rn | head -6 | tr '\n' ' '
}

py=$B/bench_extra_s3.py
cat > $py <<'EOF'
import os, sys, time
from concurrent.futures import ThreadPoolExecutor
import boto3
from botocore.config import Config
url = sys.argv[1]; cmd = sys.argv[2]; a = sys.argv[3:]
s3 = boto3.client("s3", endpoint_url=url, aws_access_key_id=os.environ["S3_AK"],
                  aws_secret_access_key=os.environ["S3_SK"], region_name="us-east-1",
                  config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3},
                                max_pool_connections=16, connect_timeout=5, read_timeout=120))
def lst(b, prefix="", delim=None):
    keys, pres, tok = [], [], None
    for _ in range(100000):
        kw = dict(Bucket=b, Prefix=prefix)
        if delim: kw["Delimiter"] = delim
        if tok: kw["ContinuationToken"] = tok
        r = s3.list_objects_v2(**kw)
        keys += [o["Key"] for o in r.get("Contents", [])]
        pres += [p["Prefix"] for p in r.get("CommonPrefixes", [])]
        if not r.get("IsTruncated"): break
        tok = r["NextContinuationToken"]
    return keys, pres
if cmd == "populate":           # BUCKET N : N keys, 100 per directory, 64 bytes each
    b, n = a[0], int(a[1])
    try: s3.create_bucket(Bucket=b)
    except Exception: pass
    keys = [f"k/d{i // 100:03d}/f{i % 100:03d}" for i in range(n)]
    body = b"x" * 64
    with ThreadPoolExecutor(16) as ex:
        list(ex.map(lambda k: s3.put_object(Bucket=b, Key=k, Body=body), keys))
    print(len(lst(b, "k/")[0]))
elif cmd == "find":             # BUCKET : flat listing, then a delimiter walk (what a filesystem must do)
    b = a[0]
    t0 = time.time(); n = len(lst(b, "k/")[0]); dt = time.time() - t0
    print(f"flat_s\t{dt:.3f}"); print(f"flat_count\t{n}")
    t0 = time.time(); n = 0; todo = ["k/"]
    while todo:
        keys, pres = lst(b, todo.pop(), "/"); n += len(keys); todo += pres
    print(f"walk_s\t{time.time() - t0:.3f}"); print(f"walk_count\t{n}")
elif cmd == "empty":
    b = a[0]
    for _ in range(10000):
        r = s3.list_objects_v2(Bucket=b)
        ks = [{"Key": o["Key"]} for o in r.get("Contents", [])]
        if not ks: break
        s3.delete_objects(Bucket=b, Delete={"Objects": ks})
    try: s3.delete_bucket(Bucket=b)
    except Exception as e: print("delete_bucket:", e, file=sys.stderr)
elif cmd == "writer":           # SRC DST TIMINGS_FILE : 1 MiB writes, then close; times each phase
    src, dst, tf = a[0], a[1], a[2]
    t0 = time.time(); f = open(dst, "wb", buffering=0)
    with open(src, "rb") as s_:
        for blk in iter(lambda: s_.read(1 << 20), b""):
            f.write(blk)
    t1 = time.time(); f.close(); t2 = time.time()
    open(tf, "w").write(f"write_s\t{t1 - t0:.3f}\nclose_s\t{t2 - t1:.3f}\n")
elif cmd == "mkbucket":
    try: s3.create_bucket(Bucket=a[0])
    except Exception: pass
EOF

# bucketfs log handling: remember the log size before a mount, parse the stats block after unmount
logpos() { stat -c %s $B/log_bfs.txt 2>/dev/null || echo 0; }
stats_since() {  # POS -> "op=N op=N ... total=N" (ops with N>0)
  tail -c +$(($1 + 1)) $B/log_bfs.txt 2>/dev/null | grep -o 's3_requests{op="[a-z_]*"} [0-9]*' \
    | sed 's/s3_requests{op="\([a-z_]*\)"} \([0-9]*\)/\1 \2/' \
    | awk '$2>0 {printf "%s=%s ", $1, $2; t+=$2} END {printf "total=%d\n", t}'
}
rec_stats() {  # LABEL WORKLOAD POS [PER]
  local s; s=$(stats_since "$3")
  if [ "$s" = "total=0" ]; then rec "$1" "$2" s3_requests "not_in_log"; return; fi
  rec "$1" "$2" s3_requests "$(echo "$s" | tr ' ' ',')"
  local tot; tot=$(echo "$s" | sed 's/.*total=//')
  [ -n "${4:-}" ] && rec "$1" "$2" s3_requests_per_item "$(python3 -c "print(f'{$tot/$4:.3f}')")"
}
mnt() { bash $SH/run_all.sh mount "$1" "$2" "$3" >> $ERRLOG 2>&1; }
umnt() { bash $SH/run_all.sh umount "$1" >> $ERRLOG 2>&1; }

phase_F() {
  local bkt=find10k-$(date +%s) r cfg m pid pos t0 t1
  echo "=== F: populating $bkt with $NKEYS keys on moto" >&2
  python3 $py $MOTO populate $bkt $NKEYS >&2
  for r in $(seq 1 "$REPS"); do for cfg in $FIND_CONFIGS; do
    echo "=== F rep $r $cfg $(uptime)" >&2
    if [ "$cfg" = raw ]; then
      python3 $py $MOTO find $bkt | while IFS=$'\t' read -r k v; do rec "raw#$r" find10k "$k" "$v"; done
      continue
    fi
    m=$B/mnt/$cfg; pos=$(logpos)
    mnt $cfg moto $bkt || { rec "$cfg#$r" find10k rc mount_failed; continue; }
    pid=$(pidof_cfg $cfg)
    t0=$(now); n=$(timeout -s KILL $TMO find $m/k -type f 2>>$ERRLOG | wc -l); t1=$(now)
    rec "$cfg#$r" find10k cold_s "$(el $t0 $t1)"; rec "$cfg#$r" find10k cold_count "$n"
    t0=$(now); timeout -s KILL $TMO find $m/k -type f 2>>$ERRLOG | wc -l >/dev/null; t1=$(now)
    rec "$cfg#$r" find10k warm_s "$(el $t0 $t1)"
    rec "$cfg#$r" find10k daemon_VmHWM_MiB "$(hwm $pid)"
    rec "$cfg#$r" find10k daemon_cpu_s "$(cpu_s $pid)"
    umnt $cfg
    [ "$cfg" = bfs ] && rec_stats "$cfg#$r" find10k "$pos" "$NKEYS"
  done; done
  python3 $py $MOTO empty $bkt
}

# one bucketfs operation on a fresh mount: LABEL WORKLOAD BACKEND BUCKET ITEMS CMD...
bfs_op() {
  local lab=$1 w=$2 be=$3 bkt=$4 items=$5; shift 5
  local pos pid c0 t0 t1 rc perfpid=
  pos=$(logpos); mnt bfs $be $bkt || { rec "$lab" "$w" rc mount_failed; return; }
  pid=$(pidof_cfg bfs); c0=$(cpu_s $pid)
  if [ "${PROFILE:-0}" = 1 ]; then
    perf record -q -F 499 -g -p $pid -o $B/perf_$w.data >/dev/null 2>&1 & perfpid=$!
  fi
  t0=$(now); timeout -s KILL $TMO "$@" 2>>$ERRLOG; rc=$?; t1=$(now)
  [ -n "$perfpid" ] && { kill -INT $perfpid; wait $perfpid; }
  local dt; dt=$(el $t0 $t1)
  rec "$lab" "$w" s "$dt"; rec "$lab" "$w" rc "$rc"
  case $items in 1024|2400) rec "$lab" "$w" MBps "$(python3 -c "print(f'{$items/$dt:.1f}')")";; esac
  [ "$items" = 2000 ] && rec "$lab" "$w" files_per_s "$(python3 -c "print(f'{2000/$dt:.0f}')")"
  rec "$lab" "$w" daemon_VmHWM_MiB "$(hwm $pid)"
  rec "$lab" "$w" daemon_cpu_s "$(python3 -c "print(f'{$(cpu_s $pid)-$c0:.2f}')")"
  rec "$lab" "$w" daemon_threads_cpu "$(threads $pid)"
  umnt bfs
  rec_stats "$lab" "$w" "$pos" "$items"
}

phase_R() {
  local bkt=rss-$(date +%s) r
  python3 $py $S3SFS mkbucket $bkt
  for r in $(seq $((1 + ${REP_OFFSET:-0})) $(("$REPS" + ${REP_OFFSET:-0}))); do
    echo "=== R rep $r $L BUCKETFS_ARGS='${BUCKETFS_ARGS:-}' $(uptime)" >&2
    # the write: 1 MiB write()s then close(), timed apart (close = last parts + complete + any fix-up)
    rm -f $B/.wtimes
    bfs_op "$L#$r" rss_write1g s3sfs $bkt 1024 python3 $py $S3SFS writer $B/data/src1g $B/mnt/bfs/big $B/.wtimes
    while IFS=$'\t' read -r k v; do rec "$L#$r" rss_write1g "$k" "$v"; done < <(cat $B/.wtimes 2>/dev/null)
    rec "$L#$r" rss_write1g on_server_after_close "$(S3_URL=$S3SFS python3 $SH/s3util.py size $bkt big)"
    bfs_op "$L#$r" rss_read1g_cold s3sfs $bkt 1024 dd if=$B/mnt/bfs/big of=/dev/null bs=1M status=none
    [ "${PROFILE:-0}" = 1 ] && for w in rss_write1g rss_read1g_cold; do
      perf report -i $B/perf_$w.data --no-children --stdio --sort comm,dso,symbol 2>/dev/null \
        | grep -v '^#' | grep '%' | head -25 > $B/perf_$w.txt; done
    PROFILE=0
  done
  python3 $py $S3SFS empty $bkt
}

phase_C() {
  local bkt=cptree-$(date +%s) r
  python3 $py $MOTO mkbucket $bkt
  for r in $(seq 1 "$REPS"); do
    echo "=== C rep $r $(uptime)" >&2
    bfs_op "$L#$r" cp_tree2000 moto $bkt 2000 cp -r $B/data/tree $B/mnt/bfs/tree$r
  done
  python3 $py $MOTO empty $bkt
}

phase_W() {
  local bkt=w24-$(date +%s) r i ok
  python3 $py $S3SFS mkbucket $bkt
  for r in $(seq 1 "$REPS"); do
    echo "=== W rep $r $(uptime)" >&2
    bfs_op "$L#$r" write24x100m s3sfs $bkt 2400 bash -c \
      'for i in $(seq 1 24); do dd if='$B'/data/src1g of='$B'/mnt/bfs/w$i bs=1M count=100 status=none & done; wait'
    ok=0
    for i in $(seq 1 24); do
      [ "$(S3_URL=$S3SFS python3 $SH/s3util.py size $bkt w$i)" = 104857600 ] && ok=$((ok + 1))
    done
    rec "$L#$r" write24x100m objects_of_100MiB_in_bucket "$ok"
  done
  python3 $py $S3SFS empty $bkt
}

for p in $PHASES; do phase_$p; done

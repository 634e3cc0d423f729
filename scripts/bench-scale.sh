#!/usr/bin/env bash
# bench-scale.sh - big directories and bulk operations (issue #16), on the in-process test
# server (release build, seeded from a directory of empty files), rotated REPS times:
#   L  `ls -f` of one directory of SCALE_KEYS (100,000) keys, cold (fresh mount) and warm,
#      beside a raw walk of the same ListObjectsV2 pages over one keep-alive connection; the
#      daemon's peak RSS after both
#   S  `ls -l` of SCALE_FOREIGN (10,000) objects another tool wrote, cold, default and with
#      --stat-from-listing: time and S3 requests (from the stats at unmount)
#   B  bulk operations at N = 1,000 and BULK_FACTOR (10) x that: cp -r of N 1-byte files into
#      the mount, rsync -a of the same files into another directory, chmod -R, chown -R, touch
#      of every file, rm -rf: seconds per 1,000 files at each N; with BULK_COLD=1 the mount is
#      remounted before each command after rsync, so each starts with nothing cached (as one
#      run long after the files were written: without it, a larger N outlasts the attribute
#      TTL and its later commands fetch attributes a smaller N still has); for chmod, chown
#      and touch also until their metadata copies landed (they are sent 1 s after the change,
#      in the background: with few files the command ends before they start, with many they
#      run beside it), counted with the test server's CopyObject requests
# Results: TSV lines (config#rep, workload, metric, value, load1) in $OUT.
#
# usage: scripts/bench-scale.sh [REPS] [PHASES]      (defaults: 3, "L S B")
# env:   SCALE_KEYS=100000 SCALE_FOREIGN=10000 BULK_N=1000 BULK_FACTOR=10 BULK_COLD=0
#        BUCKETFS_BIN=target/release/bucketfs
#        OUT=/tmp/bench/results_scale.tsv PORT=19060
#        MOUNT_ARGS="--cache-dir /tmp/x" (extra mount options, split on spaces)
# Loopback only. Needs root and /dev/fuse; builds nothing (cargo build --release first).
set -u
cd "$(dirname "$0")/.."
export AWS_EC2_METADATA_DISABLED=true
REPS=${1:-3}; PHASES=${2:-"L S B"}
NKEYS=${SCALE_KEYS:-100000}; NFOREIGN=${SCALE_FOREIGN:-10000}; BULK=${BULK_N:-1000}
BIN=${BUCKETFS_BIN:-target/release/bucketfs}
SRV=${TEST_SERVER_BIN:-target/release/bucketfs-test-server}
PORT=${PORT:-19060}; EP=http://127.0.0.1:$PORT
W=$(mktemp -d /tmp/bench-scale.XXXXXX); MNT=$W/mnt; mkdir -p "$MNT"
OUT=${OUT:-/tmp/bench/results_scale.tsv}; mkdir -p "$(dirname "$OUT")"
export AWS_ACCESS_KEY_ID=AKIATEST AWS_SECRET_ACCESS_KEY=testsecret
for b in "$BIN" "$SRV"; do [ -x "$b" ] || { echo "bench-scale: $b missing (cargo build --release)" >&2; exit 2; }; done

now() { date +%s.%N; }
el() { python3 -c "import sys; print(f'{float(sys.argv[2])-float(sys.argv[1]):.3f}')" "$1" "$2"; }
rec() { printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$(cut -d' ' -f1 /proc/loadavg)" | tee -a "$OUT"; }
srv_pid=
cleanup() {
  mountpoint -q "$MNT" && umount "$MNT"
  [ -n "$srv_pid" ] && kill "$srv_pid" 2>/dev/null
  rm -rf "$W"
}
trap cleanup EXIT

# seed: SCALE_KEYS empty keys under big/, SCALE_FOREIGN 1-byte keys under foreign/ with an s3fs
# mode header is not possible from a seed dir, so foreign objects carry no metadata (mode and
# owner come from the defaults in both configurations, which is what --stat-from-listing shows)
python3 - "$W/seed" "$NKEYS" "$NFOREIGN" <<'EOF'
import os, sys
root, n, nf = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
os.makedirs(f"{root}/big"); os.makedirs(f"{root}/foreign")
for i in range(n):
    open(f"{root}/big/f{i:07d}", "w").close()
for i in range(nf):
    with open(f"{root}/foreign/g{i:06d}", "w") as f:
        f.write("x")
EOF
"$SRV" --port "$PORT" --seed-dir "$W/seed" --allow-anonymous >"$W/srv.log" 2>&1 &
srv_pid=$!
# seeded once the last key of each directory is there
last_big=$(printf 'big/f%07d' $((NKEYS - 1))); last_foreign=$(printf 'foreign/g%06d' $((NFOREIGN - 1)))
for _ in $(seq 1500); do
  curl -fs "$EP/test-bucket?list-type=2&prefix=$last_big" | grep -q "<Key>" &&
    curl -fs "$EP/test-bucket?list-type=2&prefix=$last_foreign" | grep -q "<Key>" && break
  sleep 0.2
done

mnt() {  # mnt LOG [ARGS...]: mount in the background, wait until mounted; sets pid
  local log=$1; shift
  "$BIN" mount test-bucket "$MNT" --endpoint "$EP" --region us-east-1 --path-style --foreground \
    --log-file "$log" ${MOUNT_ARGS:-} "$@" &
  pid=$!
  for _ in $(seq 100); do mountpoint -q "$MNT" && return 0; sleep 0.1; done
  echo "bench-scale: mount failed ($log)" >&2; return 1
}
umnt() { umount "$MNT"; wait "$pid" 2>/dev/null; }
# CPU seconds the daemon has used (user + system): per file it does not depend on the box's load
# the way wall time does, so it shows a cost growing with N even in a noisy run
cpu() { awk '{printf "%.2f\n", ($14+$15)/100}' "/proc/$pid/stat" 2>/dev/null || echo 0; }
per1000() { python3 -c "import sys; print(f'{float(sys.argv[1])*1000/float(sys.argv[2]):.3f}')" "$1" "$2"; }
# requests of the last mount, from the stats it logs at unmount
reqs() { grep -o 's3_requests{op="[a-z_]*"} [0-9]*' "$1" | awk '{s+=$2} END {print s+0}'; }
heads() { grep -o 's3_requests{op="\(head\|get\)"} [0-9]*' "$1" | awk '{s+=$2} END {print s+0}'; }

rawwalk() {  # rawwalk PREFIX: seconds for every page of a delimiter listing
  python3 - "$PORT" "$1" <<'EOF'
import http.client, re, sys, time
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1])); tok = None; n = 0
t = time.time()
while True:
    q = f"/test-bucket?list-type=2&prefix={sys.argv[2]}&delimiter=/"
    if tok: q += "&continuation-token=" + tok
    c.request("GET", q); body = c.getresponse().read(); n += body.count(b"<Key>")
    m = re.search(rb"<NextContinuationToken>([^<]*)</NextContinuationToken>", body)
    if not m: break
    tok = m.group(1).decode()
print(f"{time.time() - t:.3f}")
EOF
}

copies() {  # CopyObject requests the test server has served
  curl -fs "$EP/__control/stats" | grep -o '"CopyObject":[0-9]*' | cut -d: -f2 | grep . || echo 0
}
landed() {  # landed WANT: wait (at most 600 s) until the server has served WANT CopyObjects
  for _ in $(seq 30000); do [ "$(copies)" -ge "$1" ] && return; sleep 0.02; done
  echo "bench-scale: only $(copies) of $1 copies landed" >&2
}
quiet() {  # wait until no copy was served for 1.5 s (what an earlier command deferred landed)
  local a=-1 b; b=$(copies)
  while [ "$a" != "$b" ]; do sleep 1.5; a=$b; b=$(copies); done
}

fresh() {  # fresh LOG: with BULK_COLD=1, unmount (what is pending lands) and mount again, so
  # the next command starts with nothing cached (every file's attributes fetched again), as a
  # command run long after the files were written does; else nothing
  [ "${BULK_COLD:-0}" = 1 ] || return 0
  umnt; mnt "$1"
}

bulk() {  # bulk REP N
  local r=$1 n=$2 t0 t1 u0 c0 cfg=bfs
  [ "${BULK_COLD:-0}" = 1 ] && cfg=bfs-cold
  local src=$W/src$n log=$W/log_bulk.txt
  [ -d "$src" ] || { mkdir -p "$src"; for i in $(seq "$n"); do printf x > "$src/f$i"; done; }
  mnt "$log" || return
  # timed OP CMD...: run CMD, record its seconds and the daemon's CPU seconds per 1,000 files
  timed() {
    local op=$1; shift
    local u1; u0=$(cpu); t0=$(now); "$@" || echo "bench-scale: $op failed" >&2; t1=$(now); u1=$(cpu)
    rec "$cfg#$r" "B_${op}_$n" s_per_1000 "$(per1000 "$(el "$t0" "$t1")" "$n")"
    rec "$cfg#$r" "B_${op}_$n" cpu_s_per_1000 "$(per1000 "$(el "$u0" "$u1")" "$n")"
  }
  timed cp_r cp -r "$src" "$MNT/bulk$n"
  [ "$(find "$MNT/bulk$n" -type f | wc -l)" = "$n" ] || echo "bench-scale: cp -r left $(find "$MNT/bulk$n" -type f | wc -l) of $n files" >&2
  timed rsync rsync -a "$src/" "$MNT/rsync$n/"
  [ "$(find "$MNT/rsync$n" -type f | wc -l)" = "$n" ] || echo "bench-scale: rsync left $(find "$MNT/rsync$n" -type f | wc -l) of $n files" >&2
  rm -rf "$MNT/rsync$n"
  # metadata changes: each until its command returns, and until its copies landed
  for op in chmod_R chown_R touch; do
    quiet; fresh "$log"; c0=$(copies)
    case $op in
      chmod_R) timed $op chmod -R 0640 "$MNT/bulk$n" ;;
      chown_R) timed $op chown -R 1234:1234 "$MNT/bulk$n" ;;
      touch) timed $op find "$MNT/bulk$n" -type f -exec touch {} + ;;
    esac
    landed $((c0 + n)); t2=$(now)
    rec "$cfg#$r" "B_${op}_$n" s_per_1000_landed "$(per1000 "$(el "$t0" "$t2")" "$n")"
    # the same less the 1 s the copies wait after a change (a fixed delay, not a cost per file)
    rec "$cfg#$r" "B_${op}_$n" s_per_1000_landed_less_1s "$(python3 -c "print(f'{max(0, $t2-$t0-1)*1000/$n:.3f}')")"
    rec "$cfg#$r" "B_${op}_$n" cpu_s_per_1000_landed "$(per1000 "$(el "$u0" "$(cpu)")" "$n")"
  done
  quiet; fresh "$log"
  timed rm_rf rm -rf "$MNT/bulk$n"
  [ -e "$MNT/bulk$n" ] && echo "bench-scale: rm -rf left $MNT/bulk$n" >&2
  umnt
}

for r in $(seq "$REPS"); do
  for ph in $PHASES; do
    case $ph in
      L)
        rec "raw#$r" "L_ls_f_$NKEYS" s "$(rawwalk big/)"
        mnt "$W/log_l.txt" || continue
        t0=$(now); n=$(ls -f "$MNT/big" | wc -l); t1=$(now)
        t2=$(now); ls -f "$MNT/big" >/dev/null; t3=$(now)
        hwm=$(awk '/VmHWM/ {print int($2/1024)}' /proc/$pid/status)
        umnt
        rec "bfs#$r" "L_ls_f_$NKEYS" daemon_VmHWM_MiB "$hwm"
        rec "bfs#$r" "L_ls_f_$NKEYS" s "$(el "$t0" "$t1")"
        rec "bfs#$r" "L_ls_f_${NKEYS}_warm" s "$(el "$t2" "$t3")"
        rec "bfs#$r" "L_ls_f_$NKEYS" entries "$n"
        ;;
      S)
        for cfg in default listing; do
          args=(); [ $cfg = listing ] && args=(--stat-from-listing)
          log=$W/log_s_${cfg}_${r}.txt; : > "$log"
          mnt "$log" "${args[@]}" || continue
          t0=$(now); ls -l "$MNT/foreign" >/dev/null; t1=$(now)
          umnt
          rec "bfs-$cfg#$r" "S_ls_l_$NFOREIGN" s "$(el "$t0" "$t1")"
          rec "bfs-$cfg#$r" "S_ls_l_$NFOREIGN" requests "$(reqs "$log")"
          rec "bfs-$cfg#$r" "S_ls_l_$NFOREIGN" head_or_get "$(heads "$log")"
        done
        ;;
      B)
        bulk "$r" "$BULK"
        bulk "$r" $((BULK * ${BULK_FACTOR:-10}))
        ;;
    esac
  done
done

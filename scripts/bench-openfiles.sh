#!/usr/bin/env bash
# bench-openfiles.sh - programs that use an open file as a file, on bucketfs and on s3fs-fuse with
# its local cache (use_cache), in rotation, on moto (127.0.0.1:19001, from ../shared/bench/setup.sh):
#   zip    `zip -r` of a 108 MiB tree (6 x 18 MiB incompressible + a small file) into the mount
#   sqlite a SQLite database grown past 64 MiB (16 transactions of inserts, updates, deletes)
# Prints one TSV line per run: workload, config#rep, seconds, S3 requests (counted in moto's log),
# and whether the result checks out (unzip -t / PRAGMA integrity_check after a remount), then the
# check's own seconds and requests (reads of the file after a remount: bounded by CHECK_TIMEOUT,
# default 600 s; "timeout" when it did not finish). WORKLOADS="zip sqlite", CONFIGS="bfs s3fsc".
#
#   REPS=2 scripts/bench-openfiles.sh            (build first: cargo build --release)
set -u
cd "$(dirname "$0")/.."
SH=../shared/bench; B=/tmp/bench; REPS=${REPS:-2}
OUT=${OUT:-$B/results_openfiles.tsv}
export BUCKETFS_BIN=${BUCKETFS_BIN:-$PWD/target/release/bucketfs}
(exec 3<>/dev/tcp/127.0.0.1/19001) 2>/dev/null || { echo "moto is not up on :19001: run $SH/setup.sh" >&2; exit 2; }
src=$B/data/openfiles-tree
if [ ! -d "$src" ]; then
  mkdir -p "$src"
  for i in 1 2 3 4 5 6; do head -c $((18 << 20)) /dev/urandom > "$src/f$i.bin"; done
  echo "a small one" > "$src/small.txt"
fi
requests() { grep -c "\"[A-Z]* /$1[/? ]" $B/moto.log; }
run() {  # WORKLOAD CFG REP
  local wl=$1 cfg=$2 r=$3 bkt="of-$1-$2-$3" mnt=$B/mnt/$2 t0 t1 n0 n1 ok
  curl -fsS -X PUT -o /dev/null "http://127.0.0.1:19001/$bkt" || return 1
  bash $SH/run_all.sh mount "$cfg" moto "$bkt" || return 1
  n0=$(requests "$bkt"); t0=$(date +%s.%N)
  case $wl in
    zip) (cd "$(dirname "$src")" && zip -q -r "$mnt/backup.zip" "$(basename "$src")") ;;
    sqlite) python3 scripts/sqlite_workload.py "$mnt/app.db" ;;
  esac
  local rc=$?
  t1=$(date +%s.%N); n1=$(requests "$bkt")
  bash $SH/run_all.sh remount "$cfg" moto "$bkt" >/dev/null 2>&1
  local c0 c1 m0 m1 tmo=${CHECK_TIMEOUT:-600}
  m0=$(requests "$bkt"); c0=$(date +%s.%N)
  case $wl in
    zip) timeout "$tmo" unzip -tq "$mnt/backup.zip" >/dev/null 2>&1 && ok=ok || ok=BAD ;;
    sqlite) [ "$(timeout "$tmo" sqlite3 "$mnt/app.db" 'PRAGMA integrity_check;' 2>/dev/null)" = ok ] && ok=ok || ok=BAD ;;
  esac
  c1=$(date +%s.%N); m1=$(requests "$bkt")
  [ "$ok" = BAD ] && [ "$(echo "$c1 - $c0 >= $tmo" | bc)" = 1 ] && ok=timeout
  [ $rc -eq 0 ] || ok="BAD(rc=$rc)"
  bash $SH/run_all.sh umount "$cfg" moto "$bkt" >/dev/null 2>&1
  printf '%s\t%s#%s\t%.1f\t%s\t%s\t%.1f\t%s\n' "$wl" "$cfg" "$r" "$(echo "$t1 - $t0" | bc)" "$((n1 - n0))" "$ok" \
    "$(echo "$c1 - $c0" | bc)" "$((m1 - m0))" | tee -a "$OUT"
}
for r in $(seq 1 "$REPS"); do
  for wl in ${WORKLOADS:-zip sqlite}; do
    for cfg in ${CONFIGS:-bfs s3fsc}; do
      run "$wl" "$cfg" "$r"
    done
  done
done

#!/usr/bin/env bash
# bench.sh - the bucketfs benchmark: bucketfs beside s3fs-fuse, rclone mount and a raw boto3 client on
# loopback S3 servers, every configuration in rotation (A B C … A B C …) so ratios hold on a noisy box.
#
# usage: scripts/bench.sh [STEPS]        STEPS default "build setup big dirs extra summary"
#   build    cargo build --release (skip with SKIP_BUILD=1 to bench an existing target/release/bucketfs)
#   setup    ../shared/bench/setup.sh: s3fs, rclone, fio, s3s-fs 0.14.1, inputs, servers :19000/:19001
#   big      run_all.sh REPS "raw bfs s3fs rcoff"     on s3s-fs, workloads "a b f g" (1 GiB write/read,
#            fio random reads, rename/append/overwrite on 100 MiB)
#   dirs     run_all.sh REPS "raw bfs s3fs rcoff rcw" on moto, workloads "c d e g" (cp -r, ls -lR/find,
#            rsync, rename/append/overwrite)
#   extra    scripts/bench-extra.sh REPS: find over 10,000 keys (bfs/s3fs/rclone/raw), bucketfs daemon
#            peak RSS + CPU + S3 requests per operation (1 GiB write, 1 GiB cold read, cp -r 2,000 files)
#   knobs    scripts/bench-knobs.sh REPS: bucketfs alone with several settings in rotation (not in the default set)
#   The issues' dedicated benchmarks (not in the default set; each prints its own table):
#   write    scripts/bench-write.sh REPS "raw bfs bfsmem": the 1 GiB write with the data in the
#            bucket at close beside the raw client's multipart upload (s3s-fs; BASE_BIN=… adds a build)
#   openfiles scripts/bench-openfiles.sh: zip and SQLite on the mount beside s3fs use_cache (moto)
#   cache    scripts/bench-cache.sh REPS: cold/warm sequential and random reads with the data cache
#            beside the raw client, rclone's and s3fs's caches and Mountpoint's (s3s-fs)
#   scale    scripts/bench-scale.sh REPS "L S B": big directories and bulk operations (the
#            in-process test server), CONFIGS="raw local bfs" by default here
#   summary  markdown tables (medians, each rep in brackets) of all result files
# env: REPS=3  SKIP_SETUP=1 (servers already up)   BUCKETFS_ARGS="--max-memory 128M …"   FIO_SECS=15   KEEP_RESULTS=1 (append instead of
#      starting fresh result files)   PROFILE=1 (perf record the daemon in `extra`, see bench-extra.sh)
# Results: /tmp/bench/results_s3sfs.tsv, results_moto.tsv, results_extra.tsv; progress in
# /tmp/bench/progress.log, tool errors in /tmp/bench/errors.log, daemon logs in /tmp/bench/log_*.txt.
# The servers started by setup are left running (stop them: kill $(cat /tmp/bench/*.pid)); every
# mount is unmounted when its workload ends.
set -u
cd "$(dirname "$0")/.."
SH=../shared/bench; B=/tmp/bench
REPS=${REPS:-3}; export FIO_SECS=${FIO_SECS:-15}
STEPS=${*:-"build setup big dirs extra summary"}
export PATH=$HOME/.cargo/bin:$PATH
has() { case " $STEPS " in *" $1 "*) return 0;; esac; return 1; }
fresh() { [ "${KEEP_RESULTS:-0}" = 1 ] || { [ -f "$1" ] && mv "$1" "$1.prev"; }; true; }
info() { echo "[bench $(date +%T)] $*" >&2; }

if has build && [ "${SKIP_BUILD:-0}" != 1 ]; then
  info "cargo build --release"; cargo build --release || exit 1
fi
[ -x "${BUCKETFS_BIN:-target/release/bucketfs}" ] || { echo "no bucketfs binary; run cargo build --release" >&2; exit 1; }
# Others rebuild target/ while we measure: bench a private copy of the binary, the same for every rep.
mkdir -p $B
if [ -z "${BUCKETFS_BIN:-}" ] && { has big || has dirs || has extra || has knobs || has write || has openfiles || has scale; }; then cp target/release/bucketfs $B/bucketfs.bin; fi
[ -n "${BUCKETFS_BIN:-}" ] || export BUCKETFS_BIN=$B/bucketfs.bin
if [ "${SKIP_SETUP:-0}" != 1 ] && { has setup || has big || has dirs || has extra || has write || has openfiles || has cache; }; then
  info "setup"; bash $SH/setup.sh || exit 1
fi
info "bucketfs $(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet 2>/dev/null || echo +dirty), BUCKETFS_ARGS='${BUCKETFS_ARGS:-}', REPS=$REPS, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
if has big; then
  fresh $B/results_s3sfs.tsv; info "big-file workloads on s3s-fs"
  bash $SH/run_all.sh bench "$REPS" "raw bfs s3fs rcoff" s3sfs "a b f g"
fi
if has dirs; then
  fresh $B/results_moto.tsv; info "directory workloads on moto"
  bash $SH/run_all.sh bench "$REPS" "raw bfs s3fs rcoff rcw" moto "c d e g"
fi
if has extra; then
  fresh $B/results_extra.tsv; info "find over 10,000 keys; bucketfs RSS, CPU, requests per operation"
  OUT=$B/results_extra.tsv bash scripts/bench-extra.sh "$REPS"
fi
if has knobs; then
  fresh $B/results_knobs.tsv; info "bucketfs settings in rotation"
  OUT=$B/results_knobs.tsv bash scripts/bench-knobs.sh "$REPS" > /dev/null
fi
if has write; then
  info "1 GiB write beside the raw client (bench-write.sh)"
  OUT=$B/results_write.tsv BUCKETFS_BIN=$BUCKETFS_BIN bash scripts/bench-write.sh "$REPS" "raw bfs bfsmem${BASE_BIN:+ base}"
fi
if has openfiles; then
  info "zip and SQLite beside s3fs (bench-openfiles.sh)"
  REPS=$REPS BUCKETFS_BIN=$BUCKETFS_BIN bash scripts/bench-openfiles.sh
fi
if has cache; then
  info "reads with the data cache beside the peers (bench-cache.sh)"
  BUCKETFS_BIN=$BUCKETFS_BIN bash scripts/bench-cache.sh "$REPS"
fi
if has scale; then
  info "big directories and bulk operations (bench-scale.sh)"
  OUT=$B/results_scale.tsv CONFIGS=${CONFIGS:-"raw local bfs"} BUCKETFS_BIN=$BUCKETFS_BIN \
    bash scripts/bench-scale.sh "$REPS" "L S B" && python3 scripts/bench-scale-table.py $B/results_scale.tsv
fi
if has summary; then
  for be in s3sfs moto extra knobs; do
    f=$B/results_$be.tsv; [ -s "$f" ] || continue
    echo; echo "### $be ($f)"; echo
    if [ $be = extra ]; then python3 $SH/summarize.py "$f" raw bfs s3fs rcoff
    elif [ $be = knobs ]; then python3 $SH/summarize.py "$f" $(cut -f1 "$f" | cut -d'#' -f1 | awk '!s[$0]++')
    else python3 $SH/summarize.py "$f" raw bfs s3fs rcoff rcw; fi
  done
  # bucketfs S3 requests per operation (one mount per operation, stats logged at unmount)
  if [ -s $B/results_extra.tsv ]; then
    echo; echo "bucketfs S3 requests per operation (bench-extra, each rep):"
    awk -F'\t' '$3 ~ /^s3_requests/ {print "  " $1 "\t" $2 "\t" $3 "\t" $4}' $B/results_extra.tsv
    echo; echo "bucketfs busiest daemon threads (CPU s):"
    awk -F'\t' '$3 == "daemon_threads_cpu" {print "  " $1 "\t" $2 "\t" $4}' $B/results_extra.tsv
  fi
fi

#!/usr/bin/env bash
# bench-knobs.sh - bucketfs alone, several settings in rotation: 1 GiB write (write()s and close()
# timed apart) and cold 1 GiB read on s3s-fs, each on a fresh mount, with peak RSS, daemon CPU and
# S3 requests (bench-extra.sh phase R).
# usage: scripts/bench-knobs.sh [REPS] ["name|BUCKETFS_ARGS|ENV ..." ...]
#   default variants: bfs (defaults), mem256 (--max-memory 256M), thr4 (--threads 4),
#                     arena2 (MALLOC_ARENA_MAX=2 MALLOC_MMAP_THRESHOLD_=1048576: glibc keeps less)
# Results: /tmp/bench/results_knobs.tsv (OUT=...); table: summarize.py FILE NAME...
set -u
cd "$(dirname "$0")/.."
REPS=${1:-3}; shift || true
[ $# -gt 0 ] || set -- "bfs||" "mem256|--max-memory 256M|" "thr4|--threads 4|" \
  "arena2||MALLOC_ARENA_MAX=2 MALLOC_MMAP_THRESHOLD_=1048576"
export OUT=${OUT:-/tmp/bench/results_knobs.tsv}
for r in $(seq 1 "$REPS"); do
  for v in "$@"; do
    IFS='|' read -r name args envs <<< "$v"
    env $envs LABEL="$name" BUCKETFS_ARGS="$args" REP_OFFSET=$((r - 1)) bash scripts/bench-extra.sh 1 R
  done
done
names=$(for v in "$@"; do echo "${v%%|*}"; done | tr '\n' ' ')
python3 ../shared/bench/summarize.py "$OUT" $names

# bench-order.sh - sourced by the benchmarks that rotate configurations: the order of one rep.
# usage: bench_order REP CONFIG...   prints the configs of rep REP (1-based): `raw` first when
# present, then the others rotated by REP - 1, so that each follows raw in as many reps. A
# bucketfs rep run right after the raw client's was ~15 % slower in every pair (1 GiB write on
# s3s-fs, 2026-12-04, whichever build or mode it was): a fixed order put that on one config.
bench_order() {
  local r=$1 raw= others=() n i; shift
  for c in "$@"; do if [ "$c" = raw ]; then raw=raw; else others+=("$c"); fi; done
  n=${#others[@]}; [ -n "$raw" ] && printf 'raw '
  for ((i = 0; i < n; i++)); do printf '%s ' "${others[$(( (i + r - 1) % n ))]}"; done
}

#!/usr/bin/env bash
# bench-scale.sh - big directories and bulk operations (issue #16), on the in-process test
# server (release build, seeded from a directory of empty files) or on moto (BACKEND=moto,
# seeded straight into its in-memory store), rotated REPS times; phases L, S and P run for each
# of CONFIGS in turn (bfs = bucketfs, s3fs = s3fs-fuse, rcoff = rclone mount with
# --vfs-cache-mode off, raw = a raw S3 walk where one fits), every step bounded by TMO seconds
# (a step that does not finish gets the value "timeout"), each daemon's peak RSS (VmHWM) after
# each workload:
#   L  `ls -f` of one directory of N keys for each N in SCALE_KEYS (100,000), cold (fresh
#      mount) and warm, then `find` of it cold (mounted again), beside a raw walk of the same
#      ListObjectsV2 pages over one keep-alive connection; keys past 100,000 only in the first
#      SCALE_BIG_REPS reps; config `local` times the same two commands over a directory of the
#      same names in tmpfs (/dev/shm), warm: the commands' own work (fts keeps and prints every
#      entry; on tmpfs it does not sort them by inode as it does on a mount), which no mount
#      can take off the raw walk's time
#   P  for each FUSE config: rsync -a of 1,000 and of PEER_RSYNC (20,000) 1-byte files into
#      the mount (seconds per 1,000 files), then, each on a fresh mount, chmod -R of a directory
#      of PEER_N (10,000) objects another tool wrote and mv of another such directory: seconds
#      until the command returned and (mv) until the server lists every key at the new name
#      (chmod: until the copies landed, for bfs on the test server); each config and rep gets
#      its own seeded directories
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
#      run beside it), counted with the test server's CopyObject requests, and the CPU of the
#      daemon, the server and the command together until then (like for like at both sizes)
# Results: TSV lines (config#rep, workload, metric, value, load1) in $OUT.
#
# usage: scripts/bench-scale.sh [REPS] [PHASES]      (defaults: 3, "L S B")
# env:   SCALE_KEYS=100000 SCALE_FOREIGN=10000 BULK_N=1000 BULK_FACTOR=10 BULK_COLD=0
#        BUCKETFS_BIN=target/release/bucketfs
#        OUT=/tmp/bench/results_scale.tsv PORT=19060
#        MOUNT_ARGS="--cache-dir /tmp/x" (extra mount options, split on spaces)
#        CONFIGS="raw bfs" (add s3fs rcoff for the peers, local for the commands' own time,
#        base for another bucketfs build: BASE_BIN=path) BACKEND=test|moto TMO=300
#        SCALE_KEYS="100000 1000000" SCALE_BIG_REPS=1 PEER_N=10000 PEER_RSYNC=20000
#        e.g. CONFIGS="raw bfs s3fs rcoff" PORT=19200 scripts/bench-scale.sh 2 "L S P"
#        (B is bfs only, on the test server: it counts the server's CopyObject requests;
#        moto lists in time linear in the bucket's size: keep SCALE_KEYS to ~20,000 there)
# Table (medians, each rep, bucketfs's ratios): scripts/bench-scale-table.py $OUT $TMO
# Peers: s3fs and rclone (apt), moto 5.2.5 (pip 'moto[server]==5.2.5'); AWS_CA_BUNDLE is unset
# for rclone (1.60 refuses to start with it).
# Loopback only. Needs root and /dev/fuse; builds nothing (cargo build --release first).
set -u
cd "$(dirname "$0")/.."
export AWS_EC2_METADATA_DISABLED=true
REPS=${1:-3}; PHASES=${2:-"L S B"}
NKEYS=${SCALE_KEYS:-100000}; NFOREIGN=${SCALE_FOREIGN:-10000}; BULK=${BULK_N:-1000}
CONFIGS=${CONFIGS:-"raw bfs"}; BACKEND=${BACKEND:-test}; TMO=${TMO:-300}
BIG_REPS=${SCALE_BIG_REPS:-1}; PEER_N=${PEER_N:-10000}; PEER_RSYNC=${PEER_RSYNC:-20000}
case "$BACKEND: $PHASES : $CONFIGS " in
  moto:*" B "*) echo "bench-scale: B counts the test server's copies: not on moto" >&2; exit 2 ;;
  test:* | moto:*) ;;
  *) echo "bench-scale: BACKEND is test or moto" >&2; exit 2 ;;
esac
BIN=${BUCKETFS_BIN:-target/release/bucketfs}
SRV=${TEST_SERVER_BIN:-target/release/bucketfs-test-server}
PORT=${PORT:-19060}; EP=http://127.0.0.1:$PORT
W=$(mktemp -d /tmp/bench-scale.XXXXXX); MNT=$W/mnt; mkdir -p "$MNT"
OUT=${OUT:-/tmp/bench/results_scale.tsv}; mkdir -p "$(dirname "$OUT")"
export AWS_ACCESS_KEY_ID=AKIATEST AWS_SECRET_ACCESS_KEY=testsecret
for b in "$BIN" $([ "$BACKEND" = test ] && echo "$SRV"); do [ -x "$b" ] || { echo "bench-scale: $b missing (cargo build --release)" >&2; exit 2; }; done

now() { date +%s.%N; }
el() { python3 -c "import sys; print(f'{float(sys.argv[2])-float(sys.argv[1]):.3f}')" "$1" "$2"; }
rec() { printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$(cut -d' ' -f1 /proc/loadavg)" | tee -a "$OUT"; }
srv_pid=; pid=
cleanup() {
  mountpoint -q "$MNT" && { umount "$MNT" 2>/dev/null || umount -l "$MNT"; }
  [ -n "$pid" ] && kill "$pid" 2>/dev/null
  [ -n "$srv_pid" ] && kill "$srv_pid" 2>/dev/null
  rm -rf "$W" ${LOC:+"$LOC"}
}
trap cleanup EXIT; trap "exit 143" INT TERM  # so that cleanup runs on a signal too

# seed: for each N in SCALE_KEYS, N empty keys under bigN/; SCALE_FOREIGN 1-byte keys under
# foreign/ with an s3fs mode header is not possible from a seed dir, so foreign objects carry
# no metadata (mode and owner come from the defaults in both configurations, which is what
# --stat-from-listing shows); with P, for each FUSE config and rep PEER_N 1-byte keys under
# ch/CFG_REP/ (chmod -R) and under mv/CFG_REP/ (mv), and the rsync sources src1000 and
# srcPEER_RSYNC (files f1..fN of 1 byte, as bulk makes them) on local disk
npeer=0
case " $PHASES " in *" P "*) for c in $CONFIGS; do case $c in raw | local) ;; *) npeer=$((npeer + 1)); esac; done;; esac
cat > "$W/seed.py" <<'EOF'
import os, sys
root, keys, nf, peers, npeer, reps, w = sys.argv[1:8]
nf, npeer, reps = int(nf), int(npeer), int(reps)
def seed(write):  # write(key, body) for every seeded key
    for n in map(int, keys.split()):
        for i in range(n):
            write(f"big{n}/f{i:07d}", b"")
    for i in range(nf):
        write(f"foreign/g{i:06d}", b"x")
    for c in peers.split():
        for r in range(1, reps + 1):
            for d in ("ch", "mv"):
                for i in range(npeer):
                    write(f"{d}/{c}_{r}/g{i:06d}", b"x")
if __name__ == "__main__":
    def write(key, body):
        os.makedirs(os.path.dirname(f"{root}/{key}"), exist_ok=True)
        with open(f"{root}/{key}", "wb") as f:
            f.write(body)
    seed(write)
    for n in ((1000, int(sys.argv[8])) if int(sys.argv[8]) else ()):
        os.makedirs(f"{w}/src{n}", exist_ok=True)
        for i in range(1, n + 1):
            with open(f"{w}/src{n}/f{i}", "w") as f:
                f.write("x")
EOF
LOC=; case " $CONFIGS " in *" local "*)  # tmpfs directories of the keys' names, for config local
  LOC=$(mktemp -d /dev/shm/bench-scale.XXXXXX)
  python3 -c 'import sys, os
for n in map(int, sys.argv[2:]):
    d = f"{sys.argv[1]}/big{n}"; os.mkdir(d)
    for i in range(n): open(f"{d}/f{i:07d}", "wb").close()' "$LOC" $NKEYS ;;
esac
fuses=$(echo $(for c in $CONFIGS; do case $c in raw | local) ;; *) echo "$c"; esac; done))  # the FUSE configs
pn=0; pr=0; [ "$npeer" -gt 0 ] && { pn=$PEER_N; pr=$PEER_RSYNC; }
seedargs=("$W/seed" "$NKEYS" "$NFOREIGN" "$fuses" "$pn" "$REPS" "$W" "$pr")
if [ "$BACKEND" = moto ]; then
  # moto in this process, the keys put straight into its store (1,000 PUTs/s over HTTP at best)
  mkdir -p "$W/seed"
  python3 - "$PORT" "${seedargs[@]}" >"$W/srv.log" 2>&1 <<'EOF' &
import sys, threading
sys.path.insert(0, sys.argv[8])
port = int(sys.argv[1]); sys.argv = sys.argv[1:]
from moto.server import ThreadedMotoServer
from moto.backends import get_backend
import seed
b = get_backend("s3")["123456789012"]["global"]
b.create_bucket("test-bucket", "us-east-1")
seed.seed(lambda key, body: b.put_object("test-bucket", key, body))
ThreadedMotoServer(ip_address="127.0.0.1", port=port).start()
threading.Event().wait()
EOF
  srv_pid=$!
  python3 "$W/seed.py" "$W/seed" "" 0 "" 0 0 "$W" "$pr"  # the rsync sources only
else
  python3 "$W/seed.py" "${seedargs[@]}"
  "$SRV" --port "$PORT" --seed-dir "$W/seed" --allow-anonymous >"$W/srv.log" 2>&1 &
  srv_pid=$!
fi
# seeded once the last key of each directory is there
lasts=$(printf 'foreign/g%06d ' $((NFOREIGN - 1)); for n in $NKEYS; do printf 'big%d/f%07d ' "$n" $((n - 1)); done)
ok=
for _ in $(seq 3000); do
  ok=1; for k in $lasts; do curl -fs "$EP/test-bucket?list-type=2&prefix=$k" | grep -q "<Key>" || { ok=; break; }; done
  [ -n "$ok" ] && break; sleep 0.2
done
[ -n "$ok" ] || { echo "bench-scale: the server did not come up seeded ($W/srv.log)" >&2; exit 1; }

mnt() {  # mnt LOG [ARGS...]: mount in the background, wait until mounted; sets pid
  local log=$1; shift
  "${MBIN:-$BIN}" mount test-bucket "$MNT" --endpoint "$EP" --region us-east-1 --path-style --foreground \
    --log-file "$log" ${MOUNT_ARGS:-} "$@" &
  pid=$!
  for _ in $(seq 100); do mountpoint -q "$MNT" && return 0; sleep 0.1; done
  echo "bench-scale: mount failed ($log)" >&2; return 1
}
umnt() { umount "$MNT"; wait "$pid" 2>/dev/null; }
# CPU seconds the daemon has used (user + system): per file it does not depend on the box's load
# the way wall time does, so it shows a cost growing with N even in a noisy run
cpu() { awk '{printf "%.2f\n", ($14+$15)/100}' "/proc/$pid/stat" 2>/dev/null || echo 0; }
# CPU seconds of the test server, and of the commands this script has run and waited for (the
# command timed; read right around it, so the polls of landed() are not counted): with the
# daemon's, the work of an operation whether its parts ran one after another (a few files) or
# side by side (many)
srvcpu() { awk '{printf "%.2f\n", ($14+$15)/100}' "/proc/$srv_pid/stat" 2>/dev/null || echo 0; }
cmdcpu() { awk '{printf "%.2f\n", ($16+$17)/100}' "/proc/$$/stat"; }
per1000() { python3 -c "import sys; print(f'{float(sys.argv[1])*1000/float(sys.argv[2]):.3f}')" "$1" "$2"; }
# requests of the last mount, from the stats it logs at unmount
reqs() { grep -o 's3_requests{op="[a-z_]*"} [0-9]*' "$1" | awk '{s+=$2} END {print s+0}'; }
heads() { grep -o 's3_requests{op="\(head\|get\)"} [0-9]*' "$1" | awk '{s+=$2} END {print s+0}'; }

# the peers, with the test server's credentials (moto takes any)
printf 'AKIATEST:testsecret\n' > "$W/passwd-s3fs"; chmod 600 "$W/passwd-s3fs"
printf '[t]\ntype = s3\nprovider = Other\naccess_key_id = AKIATEST\nsecret_access_key = testsecret
endpoint = %s\nregion = us-east-1\nforce_path_style = true\n' "$EP" > "$W/rclone.conf"
pmnt() {  # pmnt CFG LOG [ARGS...]: mount CFG (bfs, s3fs, rcoff) at MNT, ARGS for bfs; sets pid
  local cfg=$1 log=$2; shift 2
  case $cfg in
    bfs) mnt "$log" "$@"; return ;;
    base) [ -n "${BASE_BIN:-}" ] || { echo "bench-scale: base needs BASE_BIN" >&2; return 1; }
          MBIN=$BASE_BIN mnt "$log" "$@"; return ;;
    s3fs) s3fs test-bucket "$MNT" -f \
            -o "passwd_file=$W/passwd-s3fs,url=$EP,use_path_request_style,dbglevel=warn" >>"$log" 2>&1 & ;;
    rcoff) env -u AWS_CA_BUNDLE rclone mount t:test-bucket "$MNT" --config "$W/rclone.conf" \
             --vfs-cache-mode off --cache-dir "$W/rccache" --log-level NOTICE --log-file "$log" & ;;
    *) echo "bench-scale: no config $cfg" >&2; return 1 ;;
  esac
  pid=$!
  for _ in $(seq 300); do mountpoint -q "$MNT" && return 0; kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  echo "bench-scale: mount $cfg failed ($log)" >&2; pumnt; return 1
}
pumnt() {  # unmount MNT, wait for the daemon to end (what it still sends, at most TMO s; 10 s
  # after a step that timed out: s3fs busy with a million entries ignores even TERM), then end it
  local w=$TMO; [ "${DT:-}" = timeout ] && w=10
  mountpoint -q "$MNT" && { umount "$MNT" 2>/dev/null || umount -l "$MNT"; }
  for _ in $(seq $((w * 10))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    echo "bench-scale: daemon $pid still there, ended" >&2; kill "$pid"
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
  fi
  wait "$pid" 2>/dev/null; pid=
}
hwm() { awk '/VmHWM/ {print int($2/1024)}' "/proc/$pid/status" 2>/dev/null | grep . || echo NA; }
ERR=${OUT%.tsv}.err
step() {  # step CMD: run CMD in bash, at most TMO s; sets DT (seconds, or "timeout")
  local t0 rc; t0=$(now)
  timeout -s KILL "$TMO" bash -c "$1" 2> >(sed "s|^|[$cfg#$r] |" >>"$ERR"); rc=$?
  DT=$(el "$t0" "$(now)"); [ $rc = 137 ] && DT=timeout
  [ $rc = 0 ] || echo "bench-scale: [$cfg#$r] $1: exit $rc" | tee -a "$ERR" >&2
}
per1000() { [ "$1" = timeout ] && echo timeout || python3 -c "print(f'{$1*1000/$2:.3f}')"; }
srvstat() {  # srvstat: "requests HeadObjects" the test server has served (nothing on moto)
  curl -fs "$EP/__control/stats" | python3 -c 'import json, sys; c = json.load(sys.stdin)["counts"]
print(sum(c.values()), c.get("HeadObject", 0))' 2>/dev/null
}

rawwalk() {  # rawwalk PREFIX [keys]: seconds for every page of a delimiter listing (or its
  # keys, less directory markers)
  timeout -s KILL "$TMO" python3 - "$PORT" "$1" "${2:-}" <<'EOF' || echo timeout
import http.client, re, sys, time
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1])); tok = None; n = 0
t = time.time()
while True:
    q = f"/test-bucket?list-type=2&prefix={sys.argv[2]}&delimiter=/"
    if tok: q += "&continuation-token=" + tok
    c.request("GET", q); body = c.getresponse().read()
    n += len(re.findall(rb"<Key>[^<]*[^/<]</Key>", body))  # not directory markers
    m = re.search(rb"<NextContinuationToken>([^<]*)</NextContinuationToken>", body)
    if not m: break
    tok = m.group(1).decode()
print(n if sys.argv[3] == "keys" else f"{time.time() - t:.3f}")
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
  local r=$1 n=$2 t0 t1 u0 s0 k0 k1 c0 cfg=bfs
  [ "${BULK_COLD:-0}" = 1 ] && cfg=bfs-cold
  local src=$W/src$n log=$W/log_bulk.txt
  [ -d "$src" ] || { mkdir -p "$src"; for i in $(seq "$n"); do printf x > "$src/f$i"; done; }
  mnt "$log" || return
  # timed OP CMD...: run CMD, record its seconds and the daemon's CPU seconds per 1,000 files
  timed() {
    local op=$1; shift
    local u1; u0=$(cpu); s0=$(srvcpu); k0=$(cmdcpu); t0=$(now)
    "$@" || echo "bench-scale: $op failed" >&2
    t1=$(now); k1=$(cmdcpu); u1=$(cpu)
    rec "$cfg#$r" "B_${op}_$n" s_per_1000 "$(per1000 "$(el "$t0" "$t1")" "$n")"
    rec "$cfg#$r" "B_${op}_$n" cpu_s_per_1000 "$(per1000 "$(el "$u0" "$u1")" "$n")"
    # the daemon's, the server's and the command's own CPU (rsync's grows with its file list)
    rec "$cfg#$r" "B_${op}_$n" cmd_cpu_s_per_1000 "$(per1000 "$(el "$k0" "$k1")" "$n")"
    rec "$cfg#$r" "B_${op}_$n" all_cpu_s_per_1000 "$(per1000 "$(python3 -c "print($u1 - $u0 + $(srvcpu) - $s0 + $k1 - $k0)")" "$n")"
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
    rec "$cfg#$r" "B_${op}_$n" all_cpu_s_per_1000_landed "$(per1000 "$(python3 -c "print($(cpu) - $u0 + $(srvcpu) - $s0 + $k1 - $k0)")" "$n")"
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
        for n in $NKEYS; do
          [ "$n" -gt 100000 ] && [ "$r" -gt "$BIG_REPS" ] && continue
          for cfg in $CONFIGS; do
            if [ "$cfg" = raw ]; then  # find of one flat directory reads the same pages
              rec "raw#$r" "L_ls_f_$n" s "$(rawwalk "big$n/")"
              rec "raw#$r" "L_find_$n" s "$(rawwalk "big$n/")"
              continue
            fi
            if [ "$cfg" = local ]; then  # the commands' own time over the same names in tmpfs
              # (read once before: nothing to fetch, every entry cached)
              step "find '$LOC/big$n' > /dev/null"
              step "ls -f '$LOC/big$n' | wc -l > '$W/count'"; rec "local#$r" "L_ls_f_$n" s "$DT"
              step "find '$LOC/big$n' | wc -l > '$W/count'"; rec "local#$r" "L_find_$n" s "$DT"
              continue
            fi
            pmnt "$cfg" "$W/log_l_$cfg.txt" || continue
            step "ls -f '$MNT/big$n' | wc -l > '$W/count'"; cold=$DT; cnt=$(cat "$W/count")
            warm=skipped; [ "$cold" = timeout ] || { step "ls -f '$MNT/big$n' > /dev/null"; warm=$DT; }
            hwm=$(hwm)
            pumnt
            rec "$cfg#$r" "L_ls_f_$n" daemon_VmHWM_MiB "$hwm"
            rec "$cfg#$r" "L_ls_f_$n" s "$cold"
            rec "$cfg#$r" "L_ls_f_${n}_warm" s "$warm"
            rec "$cfg#$r" "L_ls_f_$n" entries "$cnt"
            pmnt "$cfg" "$W/log_l_$cfg.txt" || continue
            step "find '$MNT/big$n' | wc -l > '$W/count'"
            hwm=$(hwm)
            pumnt
            rec "$cfg#$r" "L_find_$n" s "$DT"
            rec "$cfg#$r" "L_find_$n" entries "$(cat "$W/count")"
            rec "$cfg#$r" "L_find_$n" daemon_VmHWM_MiB "$hwm"
          done
        done
        ;;
      S)
        for cfg in $CONFIGS; do
          subs=-; [ "$cfg" = bfs ] && subs="default listing"
          [ "$cfg" = raw ] && { rec "raw#$r" "S_ls_l_$NFOREIGN" s "$(rawwalk foreign/)"; continue; }
          [ "$cfg" = local ] && continue
          for sub in $subs; do
            args=(); [ "$sub" = listing ] && args=(--stat-from-listing)
            lab=$cfg; [ "$cfg" = bfs ] && lab=bfs-$sub
            log=$W/log_s_${lab}_${r}.txt; : > "$log"
            pmnt "$cfg" "$log" "${args[@]}" || continue
            q0=$(srvstat)  # the server's count from here leaves out what a mount does by itself
            step "ls -l '$MNT/foreign' > /dev/null"
            q1=$(srvstat); hwm=$(hwm)
            pumnt
            rec "$lab#$r" "S_ls_l_$NFOREIGN" s "$DT"
            if [ "$cfg" = bfs ]; then
              rec "$lab#$r" "S_ls_l_$NFOREIGN" requests "$(reqs "$log")"
              rec "$lab#$r" "S_ls_l_$NFOREIGN" head_or_get "$(heads "$log")"
            fi
            if [ -n "$q0" ]; then
              rec "$lab#$r" "S_ls_l_$NFOREIGN" srv_requests $(( ${q1% *} - ${q0% *} ))
              rec "$lab#$r" "S_ls_l_$NFOREIGN" srv_heads $(( ${q1#* } - ${q0#* } ))
            fi
            rec "$lab#$r" "S_ls_l_$NFOREIGN" daemon_VmHWM_MiB "$hwm"
          done
        done
        ;;
      P)
        for cfg in $fuses; do
          for n in 1000 "$PEER_RSYNC"; do
            pmnt "$cfg" "$W/log_p_$cfg.txt" || continue
            step "rsync -a '$W/src$n/' '$MNT/rs_${cfg}_${r}_$n/'"
            hwm=$(hwm)
            pumnt
            rec "$cfg#$r" "P_rsync_$n" s_per_1000 "$(per1000 "$DT" "$n")"
            rec "$cfg#$r" "P_rsync_$n" daemon_VmHWM_MiB "$hwm"
          done
          d=ch/${cfg}_$r
          pmnt "$cfg" "$W/log_p_$cfg.txt" || continue
          [ "$BACKEND" = test ] && { quiet; c0=$(copies); }
          t0=$(now); step "chmod -R 0640 '$MNT/$d'"
          rec "$cfg#$r" "P_chmod_R_$PEER_N" s "$DT"
          if [ "$cfg" = bfs ] && [ "$BACKEND" = test ] && [ "$DT" != timeout ]; then
            landed $((c0 + PEER_N)); rec "$cfg#$r" "P_chmod_R_$PEER_N" s_landed "$(el "$t0" "$(now)")"
          fi
          rec "$cfg#$r" "P_chmod_R_$PEER_N" daemon_VmHWM_MiB "$(hwm)"
          pumnt
          d=mv/${cfg}_$r
          pmnt "$cfg" "$W/log_p_$cfg.txt" || continue
          t0=$(now); step "mv '$MNT/$d' '$MNT/$d.moved'"
          rec "$cfg#$r" "P_mv_$PEER_N" s "$DT"
          # until the server lists every key at the new name and none at the old (at most TMO s)
          until [ "$(rawwalk "$d.moved/" keys)" = "$PEER_N" ] && [ "$(rawwalk "$d/" keys)" = 0 ]; do
            [ "$(el "$t0" "$(now)" | cut -d. -f1)" -ge "$TMO" ] && break; sleep 0.5
          done
          lt=$(el "$t0" "$(now)"); [ "${lt%.*}" -ge "$TMO" ] && lt=timeout
          rec "$cfg#$r" "P_mv_$PEER_N" s_until_listed "$lt"
          rec "$cfg#$r" "P_mv_$PEER_N" daemon_VmHWM_MiB "$(hwm)"
          pumnt
        done
        ;;
      B)
        bulk "$r" "$BULK"
        bulk "$r" $((BULK * ${BULK_FACTOR:-10}))
        ;;
    esac
  done
done

#!/usr/bin/env bash
# bench-cache.sh - reads with a local data cache, bucketfs beside the peers' caches and the raw
# client, every configuration in rotation (raw first, the others turned each rep:
# scripts/bench-order.sh) on the s3s-fs server of
# ../shared/bench (127.0.0.1:19000; start it with ../shared/bench/setup.sh).
#
# usage: scripts/bench-cache.sh [REPS]        (default 2)
# Configs: bfs (bucketfs, its data cache on, the default), bfsoff (--data-cache off),
#   s3fsc (s3fs use_cache), rcfull (rclone --vfs-cache-mode full), mp (Mountpoint --cache, when
#   MOUNTPOINT_BIN or /tmp/mountpoint/mount-s3 exists), raw (boto3: parallel ranged GETs, and
#   4 KiB ranged GETs one at a time).
# Per config and rep: a cold 1 GiB sequential read (fresh cache dir, fresh mount); the same
# read again in the same mount after dropping the kernel's page cache (samemount: Mountpoint's
# cached read, since it empties its cache at every mount); a remount keeping the cache dir, the
# page cache dropped again, then the same read warm; fio 4 KiB random reads (1 job, FIO_SECS)
# warm; then a fresh cache dir and fio 4 KiB random reads cold.
# env: EP, AK, SK: another server (default the s3s-fs above; e.g. Ceph RGW from
#   ../shared/ceph-rgw.sh); CONFIGS="bfs rcfull" to run only some; FIO_SECS (15); BASE_BIN=path adds config "base"
#   (another bucketfs build, run like bfs: an A/B of a change); ONLY=cold_seq runs only the
#   cold sequential read (raw, and each mount's first read); bfsshm: bfs with its cache
#   directory in /dev/shm (no disk shared with the server, as Ceph RGW's OSD shares it on this
#   box; but tmpfs refuses O_DIRECT, so the cache's writes go through the page cache).
# Results: /tmp/bench/results_cache.tsv (config, rep, workload, value); a median table at the end.
set -u
cd "$(dirname "$0")/.."
REPS=${1:-2}
B=/tmp/bench; OUT=$B/results_cache.tsv; mkdir -p $B/mnt/cache
FIO_SECS=${FIO_SECS:-15}
URL=${EP:-http://127.0.0.1:19000}; AK=${AK:-benchak}; SK=${SK:-benchsk}; BKT=cachebench
export AWS_EC2_METADATA_DISABLED=true
BIN=$B/bucketfs-cachebench; cp target/release/bucketfs "$BIN"
MP=${MOUNTPOINT_BIN:-/tmp/mountpoint/mount-s3}
CONFIGS=${CONFIGS:-"raw bfs bfsoff s3fsc rcfull"}; [ -n "${BASE_BIN:-}" ] && CONFIGS="$CONFIGS base"; [ -x "$MP" ] && [ -z "${NO_MP:-}" ] && CONFIGS="$CONFIGS mp"
MNT=$B/mnt/cache
: > "$OUT"

python3 - "$URL" "$AK" "$SK" "$BKT" <<'PY'
import sys, boto3
url, ak, sk, bkt = sys.argv[1:]
s3 = boto3.client("s3", endpoint_url=url, aws_access_key_id=ak, aws_secret_access_key=sk, region_name="us-east-1")
try: s3.create_bucket(Bucket=bkt)
except Exception: pass
try: s3.head_object(Bucket=bkt, Key="big")
except Exception: s3.upload_file("/tmp/bench/data/src1g", bkt, "big")
PY

printf '%s:%s\n' "$AK" "$SK" > $B/passwd-cache; chmod 600 $B/passwd-cache
cat > $B/rclone-cache.conf <<EOF
[s3l]
type = s3
provider = Other
access_key_id = $AK
secret_access_key = $SK
endpoint = $URL
region = us-east-1
force_path_style = true
EOF

mnt() {  # CFG CACHE_DIR
  local cfg=$1 cache=$2; mkdir -p "$cache"
  case $cfg in
    bfs|bfsoff|bfsshm|base)
      local extra="" bin=$BIN; [ "$cfg" = bfsoff ] && extra="--data-cache off"; [ "$cfg" = base ] && bin=$BASE_BIN
      AWS_ACCESS_KEY_ID=$AK AWS_SECRET_ACCESS_KEY=$SK "$bin" mount $BKT $MNT --endpoint $URL \
        --region us-east-1 --path-style --foreground --cache-dir "$cache" $extra >> $B/log_cache_$cfg.txt 2>&1 & ;;
    s3fsc)
      s3fs $BKT $MNT -f -o "passwd_file=$B/passwd-cache,url=$URL,use_path_request_style,dbglevel=warn,use_cache=$cache" \
        >> $B/log_cache_$cfg.txt 2>&1 & ;;
    rcfull)
      env -u AWS_CA_BUNDLE rclone mount s3l:$BKT $MNT --config $B/rclone-cache.conf --vfs-cache-mode full \
        --cache-dir "$cache" --log-level NOTICE --log-file $B/log_cache_$cfg.txt & ;;
    mp)
      AWS_ACCESS_KEY_ID=$AK AWS_SECRET_ACCESS_KEY=$SK "$MP" $BKT $MNT --endpoint-url $URL --force-path-style \
        --region us-east-1 --foreground --cache "$cache" --maximum-throughput-gbps 10 >> $B/log_cache_$cfg.txt 2>&1 & ;;
  esac
  for _ in $(seq 1 100); do mountpoint -q $MNT && return 0; sleep 0.1; done
  echo "mount $cfg failed" >&2; return 1
}
# before every cold read (each configuration's, the raw client's too): the last one's writes on
# disk and its freed cache files' discards done, and the page cache dropped, so that no
# configuration reads while another's writeback runs
quiet() { sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null; sync; }
umnt() { fusermount -u $MNT 2>/dev/null || umount $MNT; for _ in $(seq 1 100); do mountpoint -q $MNT || break; sleep 0.1; done; sleep 1; }
rec() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" | tee -a "$OUT"; }
seqread() {  # seconds → MB/s of reading the whole object
  local t0 t1; t0=$(date +%s.%N); timeout 300 cat $MNT/big > /dev/null || { echo FAIL; return; }
  t1=$(date +%s.%N); python3 -c "print(round(1073741824/($t1-$t0)/1e6))"
}
fiorand() {
  timeout $((FIO_SECS + 60)) fio --name=rr --filename=$MNT/big --rw=randread --bs=4k --size=1g --ioengine=psync \
    --iodepth=1 --numjobs=1 --time_based --runtime=$FIO_SECS --readonly --output-format=json \
    --output=$B/.fio_cache.json > /dev/null 2>&1 || { echo FAIL; return; }
  python3 -c "import json;print(round(json.load(open('$B/.fio_cache.json'))['jobs'][0]['read']['iops']))"
}

. scripts/bench-order.sh
for rep in $(seq 1 "$REPS"); do
  for cfg in $(bench_order "$rep" $CONFIGS); do
    quiet
    if [ "$cfg" = raw ]; then
      rec raw "$rep" cold_seq_MBps "$(S3_URL=$URL S3_AK=$AK S3_SK=$SK python3 - $BKT <<'PY'
import os, sys, time, boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
s3 = boto3.client("s3", endpoint_url=os.environ["S3_URL"], aws_access_key_id=os.environ["S3_AK"],
                  aws_secret_access_key=os.environ["S3_SK"], region_name="us-east-1",
                  config=Config(s3={"addressing_style": "path"}, max_pool_connections=16))
class Null:
    def write(self, b): return len(b)
tc = TransferConfig(multipart_threshold=8 << 20, multipart_chunksize=8 << 20, max_concurrency=10)
t0 = time.time(); s3.download_fileobj(sys.argv[1], "big", Null(), Config=tc)
print(round(1073741824 / (time.time() - t0) / 1e6))
PY
)"
      [ "${ONLY:-}" = cold_seq ] && continue
      rec raw "$rep" cold_rand4k_IOPS "$(S3_URL=$URL S3_AK=$AK S3_SK=$SK python3 - $BKT "$FIO_SECS" <<'PY'
import os, sys, time, random, boto3
from botocore.config import Config
s3 = boto3.client("s3", endpoint_url=os.environ["S3_URL"], aws_access_key_id=os.environ["S3_AK"],
                  aws_secret_access_key=os.environ["S3_SK"], region_name="us-east-1",
                  config=Config(s3={"addressing_style": "path"}))
r = random.Random(1); n = 0; stop = time.time() + float(sys.argv[2])
while time.time() < stop:
    off = r.randrange(0, (1 << 30) // 4096) * 4096
    s3.get_object(Bucket=sys.argv[1], Key="big", Range=f"bytes={off}-{off + 4095}")["Body"].read(); n += 1
print(round(n / float(sys.argv[2])))
PY
)"
      continue
    fi
    cache=$B/cachedir_$cfg; [ "$cfg" = bfsshm ] && cache=/dev/shm/bucketfs-cachebench; rm -rf "$cache"
    mnt "$cfg" "$cache" || continue
    rec "$cfg" "$rep" cold_seq_MBps "$(seqread)"
    if [ "${ONLY:-}" = cold_seq ]; then umnt; rm -rf "$cache"; continue; fi
    # the same mount, the kernel's page cache dropped: what the mount's own cache gives
    # (Mountpoint empties its cache at every mount, so this is its cached read)
    sync; echo 1 > /proc/sys/vm/drop_caches 2>/dev/null
    rec "$cfg" "$rep" samemount_seq_MBps "$(seqread)"
    # a remount, and the page cache dropped as for the read above: every configuration reads its
    # cache files from the disk (Mountpoint's cached read above did too), with no writeback of
    # the last configuration's files under way
    umnt; sync; echo 1 > /proc/sys/vm/drop_caches 2>/dev/null; mnt "$cfg" "$cache" || continue
    rec "$cfg" "$rep" warm_seq_MBps "$(seqread)"
    rec "$cfg" "$rep" warm_rand4k_IOPS "$(fiorand)"
    umnt; rm -rf "$cache"; quiet; mnt "$cfg" "$cache" || continue
    rec "$cfg" "$rep" cold_rand4k_IOPS "$(fiorand)"
    umnt; rm -rf "$cache"
  done
done

echo
python3 - "$OUT" <<'PY'
import sys, statistics, collections
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
vals = collections.defaultdict(list)
for cfg, rep, w, v in rows:
    vals[(w, cfg)].append(v)
works = sorted({w for _, _, w, _ in rows}); cfgs = list(dict.fromkeys(c for c, _, _, _ in rows))
print("| workload | " + " | ".join(cfgs) + " |"); print("|---" * (len(cfgs) + 1) + "|")
for w in works:
    cells = []
    for c in cfgs:
        v = vals.get((w, c), [])
        nums = [float(x) for x in v if x not in ("FAIL", "")]
        cells.append("–" if not v else (f"{statistics.median(nums):.0f} [{', '.join(v)}]" if nums else "FAIL"))
    print(f"| {w} | " + " | ".join(cells) + " |")
PY

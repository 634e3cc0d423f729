#!/usr/bin/env bash
# The mount test suites against Ceph RADOS Gateway: a one-node Ceph cluster on 127.0.0.1 from
# Debian's packages (../shared/ceph-rgw.sh, or $CEPH_RGW_SCRIPT), a fresh bucket, then
# scripts/compat.sh with BUCKETFS_TEST_ENDPOINT pointing at it. Stops the cluster afterwards if
# this script started it.
#
#   scripts/rgw.sh                    # mount_read, mount_write, mount_posix, mount_open_files,
#                                     # mount_write_back, mount_faults (those that need no
#                                     # in-process server)
#   scripts/rgw.sh mount_write        # one suite
#   RGW_KEEP=1 scripts/rgw.sh         # leave the cluster running
#   RGW_WIPE=1 scripts/rgw.sh         # delete the cluster afterwards (the default when CI is set)
#   RGW_SOAK=0 scripts/rgw.sh         # without the soak runs (default mode and --write-back,
#                                     # each with a remount and a kill -9: scripts/soak.sh)
#
# Needs root (apt-get, FUSE). About 1 GiB of RAM; ~70 s to install and start from nothing.
set -uo pipefail
cd "$(dirname "$0")/.."
export AWS_EC2_METADATA_DISABLED=true

script=${CEPH_RGW_SCRIPT:-../shared/ceph-rgw.sh}
if [ ! -f "$script" ]; then
    echo "rgw: $script not found (set CEPH_RGW_SCRIPT to the ceph-rgw.sh that starts Ceph)" >&2
    exit 2
fi
dir=${CEPH_RGW_DIR:-/tmp/ceph-rgw}
started=0
# show_logs: the last lines of the cluster's logs, so that a failed start says why in CI's output
show_logs() {
    local f
    echo "rgw: uid $(id -u), free space: $(df -h "$dir" 2>/dev/null | awk 'NR==2{print $4" of "$2}')" >&2
    for f in "$dir"/log/mkfs.log "$dir"/log/start.log "$dir"/log/mon.a.log "$dir"/log/osd.0.log \
             "$dir"/log/client.rgw.a.log; do
        [ -s "$f" ] || continue
        echo "rgw: --- last lines of $f" >&2
        tail -n 8 "$f" | cut -c1-300 >&2
    done
}
if ! bash "$script" status >/dev/null 2>&1 || [ ! -s "$dir/env" ]; then
    started=1
    # A cluster left stopped by an earlier run is restarted (~8 s). If that fails (its store
    # damaged by a killed run, its OSD file grown until the disk is nearly full so that the mon
    # refuses to start, ...), say why, wipe it and start one from nothing (~20 s); then once more
    # in a directory of its own on other ports, in case something else holds these.
    if ! bash "$script" start; then
        show_logs
        echo "rgw: starting again from a wiped cluster" >&2
        bash "$script" wipe >/dev/null 2>&1
        if ! bash "$script" start; then
            show_logs
            dir=$(mktemp -d /tmp/bucketfs-rgw.XXXXXX)
            export CEPH_RGW_DIR=$dir CEPH_RGW_PORT=28880 CEPH_RGW_MON_PORT=28810 \
                CEPH_RGW_OSD_PORTS=28820-28849
            echo "rgw: starting again in $dir on ports 28810-28880" >&2
            bash "$script" start || { show_logs; echo "rgw: Ceph did not start" >&2; exit 2; }
        fi
    fi
fi
stop() {
    if [ "$started" = 1 ] && [ -z "${RGW_KEEP:-}" ]; then
        # in CI, or with RGW_WIPE=1, the cluster's files go too: its OSD file keeps the
        # high-water mark of what the suites wrote (GiBs) and a later run starts from nothing
        if [ -n "${CI:-}" ] || [ -n "${RGW_WIPE:-}" ]; then
            bash "$script" wipe >/dev/null 2>&1
            case $dir in /tmp/bucketfs-rgw.*) rm -rf "$dir" ;; esac
        else
            bash "$script" stop >/dev/null 2>&1
        fi
    fi
}
trap stop EXIT INT TERM
# shellcheck disable=SC1091
. "$dir/env"

suites=("$@")
[ ${#suites[@]} -eq 0 ] && suites=(mount_read mount_write mount_posix mount_open_files mount_write_back mount_faults)
# make_bucket NAME: a signed PUT of the bucket (curl's SigV4); RGW accepts any signing region.
# Bounded: an OSD past its full ratio (its sparse file grown by earlier runs) leaves RGW
# silent, and this PUT waited for it forever.
make_bucket() {
    local empty_sha=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
    curl -fsS --max-time 60 -X PUT -o /dev/null --aws-sigv4 "aws:amz:us-east-1:s3" \
        --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" -H "x-amz-content-sha256: $empty_sha" \
        "$S3_ENDPOINT/$1" || {
        echo "rgw: cannot create bucket $1 at $S3_ENDPOINT" >&2
        timeout 20 ceph -c "$dir/ceph.conf" health 2>/dev/null | head -3 >&2
        show_logs
        return 1
    }
}
bucket=bucketfs-rgw-$(date +%s)
make_bucket "$bucket" || exit 2
echo "rgw: Ceph RGW at $S3_ENDPOINT, bucket $bucket"
rc=0
BUCKETFS_TEST_ENDPOINT=$S3_ENDPOINT BUCKETFS_TEST_BUCKET=$bucket \
    BUCKETFS_TEST_ACCESS_KEY=$AWS_ACCESS_KEY_ID BUCKETFS_TEST_SECRET_KEY=$AWS_SECRET_ACCESS_KEY \
    COMPAT_VERBOSE=${COMPAT_VERBOSE:-1} bash scripts/compat.sh "${suites[@]}" || rc=$?
# The randomized differential run (scripts/soak.sh) against RGW, each in a bucket of its own:
# the default mode, then --write-back, each with a clean remount and a kill -9 of the daemon
# between its phases. With the default suites, or RGW_SOAK=1; RGW_SOAK=0 leaves it out.
if { [ $# -eq 0 ] && [ "${RGW_SOAK:-1}" != 0 ]; } || [ "${RGW_SOAK:-}" = 1 ]; then
    for mode in "" "--write-back"; do
        b=bucketfs-rgw-soak-$(date +%s%N)
        make_bucket "$b" || exit 2
        echo "rgw: soak ${mode:-(default mode)}, bucket $b"
        SOAK_ENDPOINT=$S3_ENDPOINT SOAK_BUCKET=$b SOAK_CRASH=1 SOAK_MOUNT_ARGS="$mode" \
            SOAK_SECONDS=${RGW_SOAK_SECONDS:-45} SOAK_SEED=${SOAK_SEED:-1} bash scripts/soak.sh || rc=1
    done
fi
exit $rc

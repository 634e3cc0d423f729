#!/usr/bin/env bash
# One-time set-up of a machine for building, demoing and testing bucketfs:
# the FUSE user tools, rsync, zip and sqlite3 (tests drive the mount with them) and moto (the STS
# of tests/sts_moto.rs, and the second S3 server of scripts/compat.sh). Safe to run again.
set -euo pipefail
need_apt=()
command -v fusermount3 >/dev/null 2>&1 || need_apt+=(fuse3)
command -v rsync >/dev/null 2>&1 || need_apt+=(rsync)
# the mount tests drive zip and SQLite on the mount
command -v zip >/dev/null 2>&1 || need_apt+=(zip)
command -v unzip >/dev/null 2>&1 || need_apt+=(unzip)
command -v sqlite3 >/dev/null 2>&1 || need_apt+=(sqlite3)
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi
# moto 5.2.5 exactly: 5.2.1 answers CompleteMultipartUpload with the wrong root element
if [ "$(python3 -c 'import moto; print(moto.__version__)' 2>/dev/null)" != "5.2.5" ]; then
  if ! python3 -m pip install -q 'moto[server]==5.2.5'; then
    if [ -n "${CI:-}" ]; then
      echo "setup: moto could not be installed: CI runs the STS tests (tests/sts_moto.rs) against it" >&2
      exit 1
    fi
    echo "setup: moto not installed (tests/sts_moto.rs will say SKIPPED; scripts/compat.sh needs it)"
  fi
fi
echo "setup: done"

#!/usr/bin/env bash
# Demo: a local S3 server on 127.0.0.1 with a sample bucket, mounted at ./mnt, ready for cp.
# Ctrl-C (or `kill` of this script) unmounts and stops the server.
set -euo pipefail
cd "$(dirname "$0")/.."
# the FUSE tools (and the rest of what the tests use): installed if missing
bash scripts/setup.sh
PORT=${PORT:-9000}
MNT=${MNT:-$PWD/mnt}
cargo build --release --workspace -q
sample=$(mktemp -d)
mkdir -p "$sample/docs" "$sample/photos/2024"
echo "Hello from bucketfs" > "$sample/hello.txt"
printf 'line %s\n' $(seq 1 1000) > "$sample/docs/numbers.txt"
head -c 3000000 /dev/urandom > "$sample/photos/2024/noise.bin"
export AWS_ACCESS_KEY_ID=demo AWS_SECRET_ACCESS_KEY=demosecret
./target/release/bucketfs-test-server --port "$PORT" --bucket demo \
  --access-key "$AWS_ACCESS_KEY_ID" --secret-key "$AWS_SECRET_ACCESS_KEY" --seed-dir "$sample" &
server=$!
cleanup() {
  umount "$MNT" 2>/dev/null || fusermount3 -u "$MNT" 2>/dev/null || true
  kill "$server" 2>/dev/null || true
  rm -rf "$sample"
}
trap cleanup EXIT INT TERM
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/"$PORT") 2>/dev/null && break; sleep 0.1; done
mkdir -p "$MNT"
./target/release/bucketfs mount demo "$MNT" --endpoint "http://127.0.0.1:$PORT" --region us-east-1 --path-style
cat <<TXT

bucketfs: bucket "demo" on http://127.0.0.1:$PORT is mounted at $MNT
Try:
  ls -la $MNT; cat $MNT/hello.txt; find $MNT
  cp -r /etc/ssl $MNT/ssl; ls -l $MNT/ssl; mkdir $MNT/new; mv $MNT/hello.txt $MNT/new/
  ./target/release/bucketfs stats $MNT
Stop: press Ctrl-C here (unmounts and stops the server).
TXT
wait "$server"

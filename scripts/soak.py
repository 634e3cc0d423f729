#!/usr/bin/env python3
"""Differential soak test: the same random workload on a bucketfs mount and on a local
directory, trees compared after every step and after a remount. Bounded in time and steps.

Usage (normally through scripts/soak.sh): soak.py MOUNTPOINT LOCALDIR --seconds N --seed S
        [--remount-cmd CMD]   (run between phases; must leave MOUNTPOINT mounted again)
        [--crash-cmd CMD]     (kill -9 the daemon and mount again: every file is closed first,
                               so everything acknowledged must be there afterwards)
        [--open-files] [--max-size BYTES] [--check-every N]
--max-size: how far pwrite/ftruncate reach in files kept open (default 20 MiB; 512 MiB for the
large run). --check-every: compare whole trees (contents) every N steps and after every close
and remount; the steps between compare names and sizes only (reading 512 MiB files after every
step would take the run's whole time).
Prints the number of operations and any divergence; exits 1 on divergence.
"""
import argparse, errno, hashlib, mmap, os, random, subprocess, sys, time

def digest(p):
    h = hashlib.md5()
    with open(p, "rb") as fh:
        while True:
            b = fh.read(1 << 20)
            if not b:
                return h.hexdigest()
            h.update(b)

def tree(root, contents=True):
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        for d in dirnames:
            out[os.path.normpath(os.path.join(rel, d))] = ("dir",)
        for f in filenames:
            p = os.path.join(dirpath, f)
            size = os.stat(p).st_size
            out[os.path.normpath(os.path.join(rel, f))] = ("file", size, digest(p) if contents else None)
    out.pop(".bucketfs", None)
    return out

def outcome(fn):
    try:
        fn()
        return "ok"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mount"); ap.add_argument("local")
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--max-ops", type=int, default=100000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--remount-cmd")
    ap.add_argument("--crash-cmd")
    ap.add_argument("--open-files", action="store_true",
                    help="also keep files open across steps: pwrite/pread/ftruncate/close")
    ap.add_argument("--max-size", type=int, default=20 * 1024 * 1024)
    ap.add_argument("--check-every", type=int, default=1)
    ap.add_argument("--trace", action="store_true", help="print every step")
    a = ap.parse_args()
    held = []      # {base: fd} for files open on both sides
    pending = []   # fds opened by the current "hold" step, local first
    reads = []     # what the current "pread" step read, local first

    def close_all():
        for h in held:
            for fd in h.values():
                os.close(fd)
        held.clear()
    rnd = random.Random(a.seed)
    names = ["a", "b", "c", "d e", "f%", "g+h"]
    dirs = ["", "x", "x/y", "z"]
    sizes = [0, 1, 100, 4096, 70000, 6 * 1024 * 1024 + 3, 11 * 1024 * 1024]

    def path(base, d, n=None):
        return os.path.join(base, d, n) if n is not None else os.path.join(base, d)

    def blob(n):
        return rnd.getrandbits(8 * min(n, 1 << 16)).to_bytes(min(n, 1 << 16), "little") * (n // (1 << 16) + 1)

    desc = [""]

    def op_pairs():
        d, n = rnd.choice(dirs), rnd.choice(names)
        desc[0] = os.path.join(d, n)
        kinds = ["create", "create", "write", "append", "truncate", "rename", "unlink",
                 "mkdir", "rmdir", "read", "renamedir"]
        if a.open_files:
            kinds += ["hold", "pwrite", "pwrite", "pwrite", "pread", "ftruncate", "mmap", "release"]
        kind = rnd.choice(kinds)
        if kind in ("pwrite", "pread", "ftruncate", "mmap", "release") and not held:
            kind = "hold"
        if kind == "hold":
            if len(held) >= 3:
                kind = "release"
            else:
                def f(base):
                    fd = os.open(path(base, d, n), os.O_RDWR | os.O_CREAT, 0o644)
                    pending.append(fd)
                return kind, f
        if kind in ("pwrite", "pread", "ftruncate", "mmap", "release"):
            i = rnd.randrange(len(held))
            desc[0] = os.path.relpath(os.readlink(f"/proc/self/fd/{held[i][a.local]}"), a.local)
            if kind == "pwrite":
                off = rnd.randrange(0, a.max_size)
                data = blob(rnd.choice([1, 4096, 70000, 300000]))[:300000]
                desc[0] += f" at {off} len {len(data)}"
                def f(base): os.pwrite(held[i][base], data, off)
            elif kind == "pread":
                off, size = rnd.randrange(0, a.max_size + (1 << 20)), rnd.choice([10, 4096, 200000])
                def f(base): reads.append(os.pread(held[i][base], size, off))
            elif kind == "mmap":
                frac, data = rnd.random(), blob(rnd.choice([1, 4096, 70000]))[:70000]
                def f(base):
                    fd = held[i][base]
                    size = os.fstat(fd).st_size
                    if size == 0:
                        return
                    mm = mmap.mmap(fd, size)
                    off = int(frac * size)
                    chunk = data[: size - off]
                    mm[off:off + len(chunk)] = chunk
                    mm.flush()
                    mm.close()
            elif kind == "ftruncate":
                size = rnd.choice([0, 1000, 3 * 1024 * 1024, 7 * 1024 * 1024 + 5, 16 * 1024 * 1024,
                                   a.max_size // 2 + 3, a.max_size])
                desc[0] += f" to {size}"
                def f(base): os.ftruncate(held[i][base], size)
            else:
                def f(base):
                    fd = held[i].pop(base)
                    if not held[i]:
                        held.pop(i)
                    os.close(fd)
            return kind, f
        if kind == "create":
            data = blob(rnd.choice(sizes))[: rnd.choice(sizes)]
            def f(base): 
                with open(path(base, d, n), "wb") as fh: fh.write(data)
        elif kind == "write":
            off, data = rnd.randrange(0, 8 * 1024 * 1024), blob(rnd.choice([1, 5000, 300000]))[:300000]
            def f(base):
                with open(path(base, d, n), "r+b") as fh: fh.seek(off); fh.write(data)
        elif kind == "append":
            data = blob(rnd.choice([1, 2000, 100000]))[:100000]
            def f(base):
                with open(path(base, d, n), "ab") as fh: fh.write(data)
        elif kind == "truncate":
            size = rnd.choice(sizes)
            desc[0] += f" to {size}"
            def f(base): os.truncate(path(base, d, n), size)
        elif kind == "rename":
            d2, n2 = rnd.choice(dirs), rnd.choice(names)
            desc[0] += f" -> {d2}/{n2}"
            def f(base): os.rename(path(base, d, n), path(base, d2, n2))
        elif kind == "unlink":
            def f(base): os.unlink(path(base, d, n))
        elif kind == "mkdir":
            def f(base): os.mkdir(path(base, rnd_dir))
            rnd_dir = rnd.choice(["x", "z", "x/y", "x/w"])
        elif kind == "rmdir":
            rnd_dir = rnd.choice(["x", "z", "x/y", "x/w"])
            def f(base): os.rmdir(path(base, rnd_dir))
        elif kind == "renamedir":
            src, dst = rnd.choice(["x", "z", "x/y"]), rnd.choice(["z", "q", "x/w"])
            def f(base): os.rename(path(base, src), path(base, dst))
        else:
            def f(base):
                with open(path(base, d, n), "rb") as fh: fh.read()
        return kind, f

    ops, divergences = 0, 0
    start = time.time()
    deadline = start + a.seconds
    # between phases: a clean remount, then (with --crash-cmd) a kill -9 and a mount again
    breaks = [c for c in (("remount", a.remount_cmd), ("crash", a.crash_cmd)) if c[1]]
    due = [start + a.seconds * (i + 1) / (len(breaks) + 1) for i in range(len(breaks))]
    while time.time() < deadline and ops < a.max_ops:
        kind, f = op_pairs()
        pending.clear(); reads.clear()
        r_local, r_mount = outcome(lambda: f(a.local)), outcome(lambda: f(a.mount))
        ops += 1
        if a.trace:
            print(f"{ops} {kind} {desc[0]}: {r_local}/{r_mount}", flush=True)
        if kind == "hold":
            if len(pending) == 2:
                held.append({a.local: pending[0], a.mount: pending[1]})
            else:
                for fd in pending:
                    os.close(fd)
        if kind == "pread" and len(reads) == 2 and reads[0] != reads[1]:
            print(f"DIVERGENCE op {ops} pread: local {len(reads[0])} bytes, mount {len(reads[1])}")
            divergences += 1
        if r_local != r_mount:
            print(f"DIVERGENCE op {ops} {kind}: local={r_local} mount={r_mount}")
            divergences += 1
        full = kind == "release" or ops % a.check_every == 0
        tl, tm = tree(a.local, full), tree(a.mount, full)
        if tl != tm:
            diff = sorted(set(tl.items()) ^ set(tm.items()))
            print(f"DIVERGENCE after op {ops} {kind}: {diff[:6]}")
            divergences += 1
        if divergences:
            break
        if breaks and time.time() > due[0]:
            (what, cmd), _ = breaks.pop(0), due.pop(0)
            close_all()
            subprocess.run(cmd, shell=True, check=True)
            tl, tm = tree(a.local), tree(a.mount)
            if tl != tm:
                diff = sorted(set(tl.items()) ^ set(tm.items()))
                print(f"DIVERGENCE after the {what} (op {ops}): {diff[:6]}")
                divergences += 1
                break
            if a.trace:
                print(f"{ops}: {what} done, trees equal", flush=True)
    close_all()
    if a.remount_cmd and not divergences:
        subprocess.run(a.remount_cmd, shell=True, check=True)
        if tree(a.local) != tree(a.mount):
            print("DIVERGENCE after final remount")
            divergences += 1
    print(f"soak: {ops} operations, {divergences} divergences")
    sys.exit(1 if divergences else 0)

if __name__ == "__main__":
    main()

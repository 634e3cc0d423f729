#!/usr/bin/env python3
"""A SQLite database grown past 64 MiB: 16 transactions of inserts, then updates and deletes,
the same bytes every run (seeded). Used by tests/mount_open_files.rs and bench-openfiles.sh.

Usage: sqlite_workload.py DATABASE
"""
import random, sqlite3, sys

db = sqlite3.connect(sys.argv[1])
db.execute("PRAGMA page_size=4096")
db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body BLOB)")
rnd = random.Random(7)
for batch in range(16):
    with db:
        db.executemany("INSERT INTO t (body) VALUES (?)",
                       [(rnd.randbytes(1000),) for _ in range(4500)])
    with db:
        for _ in range(300):
            db.execute("UPDATE t SET body = ? WHERE id = ?",
                       (rnd.randbytes(1000), rnd.randrange(1, 4500 * (batch + 1))))
        db.execute("DELETE FROM t WHERE id % 97 = ?", (batch,))
db.close()

"""The launcher of the nameko services (``tuoyu_shared.serve``) patches the standard library
for eventlet and makes psycopg wait through it: ten green threads each waiting half a second
on PostgreSQL take half a second, not five (DESIGN: psycopg's C wait blocks the hub), and the
C implementation stays in use."""

from __future__ import annotations

import json
import subprocess
import sys

PROGRAM = """
import json, sys, time
import tuoyu_shared.serve  # noqa: F401  (patches eventlet and psycopg's wait first)
import eventlet, psycopg
url = sys.argv[1]
def sleep(_):
    with psycopg.connect(url) as conn:
        conn.execute("SELECT pg_sleep(0.5)")
def lock(hold):
    with psycopg.connect(url) as conn:
        conn.execute("LOCK TABLE serve_probe IN EXCLUSIVE MODE")
        eventlet.sleep(hold)
        conn.commit()
with psycopg.connect(url, autocommit=True) as conn:
    conn.execute("CREATE TABLE IF NOT EXISTS serve_probe (x int)")
pool = eventlet.GreenPool()
started = time.monotonic()
list(pool.imap(sleep, range(10)))
sleeps = time.monotonic() - started
started = time.monotonic()
pool.spawn(lock, 0.5); eventlet.sleep(0.05); pool.spawn(lock, 0); pool.spawn(lock, 0)
pool.waitall()
locks = time.monotonic() - started
print(json.dumps({"impl": psycopg.pq.__impl__, "sleeps": sleeps, "locks": locks}))
"""


def test_queries_wait_green_under_the_launcher(fresh_database):
    url = fresh_database("serve", migrated=False)
    done = subprocess.run([sys.executable, "-c", PROGRAM, url], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["sleeps"] < 2.0, result  # in parallel: about 0.5 s, serialised 5 s
    # a writer waiting on a table lock lets the holder's green thread run and commit
    assert result["locks"] < 2.0, result
    assert result["impl"] in ("binary", "c"), result

#!/usr/bin/env python3
"""Tasklane on a big account: one user with 100,000 tasks, the task model's queries timed.

    python3 bench/big_account.py            # or: TASKS=100000 DURATION=10 python3 bench/big_account.py

For each backend (PostgreSQL, and the SQLite default) it builds and starts the release server as
bench/run.py does, registers a user, and loads TASKS tasks for that user straight into the
database, as the server would have written them: random titles and descriptions from a
vocabulary of 2,000 words, 0 to 3 of 20 labels, a due date spread over a year (none on a tenth
of them) and a random priority. Two words are planted: a rare one in 10 tasks, a common one in a
fifth of them. Then wrk, at each of CONNECTIONS (default 1 and 4: one client of the user, then
four at once on the two cores) for DURATION seconds, asks:

  q=<rare word>          a search that finds few tasks
  q=<common word>        a search that finds many (a page of 50, and their count)
  label=<one label>      the tasks with one label
  label=<two labels>     the tasks with both
  sort=due_at            the first page by due date
  label+sort=due_at      one label, by due date

and the table shows each one's requests/s, p50 and p99 (wrk's latency distribution). The
server's default page size (50) and count (X-Total-Count) are part of every answer.
"""

import csv
import json
import os
import random
import sqlite3
import sys
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as harness  # noqa: E402  (the load harness: server, wrk and services helpers)

TASKS = int(os.environ.get("TASKS", "100000"))
CONNECTIONS = [int(c) for c in os.environ.get("CONNECTIONS", "1,4").split(",")]
BACKENDS = os.environ.get("BACKENDS", "postgres,sqlite").split(",")
RARE, COMMON = "quixotic", "budget"
LABELS = [f"label{i:02d}" for i in range(20)]
QUERIES = [
    ("q, rare word", f"/tasks/?q={RARE}"),
    ("q, common word", f"/tasks/?q={COMMON}"),
    ("label, one", f"/tasks/?label={LABELS[3]}"),
    ("label, two", f"/tasks/?label={LABELS[3]}&label={LABELS[7]}"),
    ("sort=due_at", "/tasks/?sort=due_at"),
    ("label + sort=due_at", f"/tasks/?label={LABELS[5]}&sort=due_at"),
]


def rfc3339(at):
    # As sqlx writes a whole-second time on SQLite (and PostgreSQL reads it alike).
    return at.strftime("%Y-%m-%dT%H:%M:%S+00:00")


def generate(user_id):
    """The tasks, as rows of (id, title, description, due_at, priority, labels), and their
    label rows (task id, label). Seeded, so every run loads the same account."""
    rng = random.Random(7)
    words = [f"w{rng.randrange(36 ** 5):05x}" for _ in range(2000)]
    rare = set(rng.sample(range(TASKS), 10))
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    tasks, labels = [], []
    for i in range(TASKS):
        id_ = i + 1
        title = " ".join(rng.choices(words, k=rng.randint(2, 6)))
        description = " ".join(rng.choices(words, k=rng.randint(0, 25))) or None
        if i in rare:
            title += f" {RARE}"
        if rng.random() < 0.2:
            description = f"{description or ''} {COMMON}".strip()
        due = None if rng.random() < 0.1 else start + timedelta(seconds=rng.randrange(365 * 86400))
        own = sorted(rng.sample(LABELS, rng.randint(0, 3)))
        tasks.append((id_, title, description, due, rng.randint(0, 3), json.dumps(own)))
        labels.extend((id_, label) for label in own)
    return tasks, labels


def load_postgres(url, user_id, tasks, labels, work):
    now = rfc3339(datetime.now(timezone.utc))
    tasks_csv, labels_csv = Path(work) / "tasks.csv", Path(work) / "labels.csv"
    with tasks_csv.open("w", newline="") as f:
        out = csv.writer(f)
        for id_, title, description, due, priority, own in tasks:
            out.writerow([id_, user_id, title, description if description is not None else "\\N", "pending", now, now,
                          rfc3339(due) if due else "\\N", priority, own])
    with labels_csv.open("w", newline="") as f:
        csv.writer(f).writerows((id_, user_id, label) for id_, label in labels)
    os.chmod(work, 0o755)
    script = (
        f"\\copy tasks (id, user_id, title, description, status, created_at, updated_at, due_at, priority, labels) "
        f"FROM '{tasks_csv}' WITH (FORMAT csv, NULL '\\N')\n"
        f"\\copy task_labels (task_id, user_id, label) FROM '{labels_csv}' WITH (FORMAT csv)\n"
        "SELECT setval(pg_get_serial_sequence('tasks', 'id'), (SELECT max(id) FROM tasks));\n"
        "VACUUM ANALYZE tasks; VACUUM ANALYZE task_labels;\n"
    )
    harness.run(["psql", url, "-q", "-v", "ON_ERROR_STOP=1"], input=script, capture_output=True)


def load_sqlite(path, user_id, tasks, labels):
    db = sqlite3.connect(path)
    now = rfc3339(datetime.now(timezone.utc))
    with db:
        db.executemany(
            "INSERT INTO tasks (id, user_id, title, description, status, created_at, updated_at, due_at, priority, labels) "
            "VALUES (?, ?, ?, ?, 'pending', ?, ?, ?, ?, ?)",
            ((id_, user_id, t, d, now, now, rfc3339(due) if due else None, p, own)
             for id_, t, d, due, p, own in tasks))
        db.executemany("INSERT INTO task_labels (task_id, user_id, label) VALUES (?, ?, ?)",
                       ((id_, user_id, label) for id_, label in labels))
    db.execute("ANALYZE")
    db.close()


def bench_backend(backend, work, tasks, labels):
    env = {"SECRET_KEY": harness.SECRET, "ROCKET_ADDRESS": "127.0.0.1", "ROCKET_PORT": str(harness.SERVER_PORT),
           "RATE_LIMIT_ACCOUNT_PER_MINUTE": "0", "RATE_LIMIT_ADDRESS_PER_MINUTE": "0"}
    if backend == "postgres":
        admin = f"postgres://postgres@127.0.0.1:{harness.PG_PORT}/postgres"
        harness.run(["psql", admin, "-qc", "DROP DATABASE IF EXISTS tasklane_big WITH (FORCE)"], capture_output=True)
        harness.run(["psql", admin, "-qc", "CREATE DATABASE tasklane_big"], capture_output=True)
        env["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:{harness.PG_PORT}/tasklane_big"
    else:
        env["DATABASE_URL"] = f"sqlite:{work}/big.db"
    server = harness.Server(env, f"{work}/server-{backend}.log")
    try:
        pair = harness.http("POST", "/auth/register", {"username": "big", "password": harness.PASSWORD})
        user_id = harness.http("GET", "/auth/me", token=pair["access_token"])["id"]
    finally:
        server.stop()
    harness.log(f"{backend}: loading {TASKS} tasks")
    if backend == "postgres":
        load_postgres(env["DATABASE_URL"], user_id, tasks, labels, work)
    else:
        load_sqlite(f"{work}/big.db", user_id, tasks, labels)
    server = harness.Server(env, f"{work}/server-{backend}.log")
    rows = {}
    try:
        token = harness.http("POST", "/auth/login", {"username": "big", "password": harness.PASSWORD})["access_token"]
        for name, path in QUERIES:
            for connections in CONNECTIONS:
                result = harness.wrk("get.lua", {"BENCH_TOKEN": token, "BENCH_PATH": path}, connections=connections)
                harness.log(f"{backend} {name} c{connections}: {result['rps']:.0f} rps, p50 {result['p50']} ms, "
                            f"p99 {result['p99']} ms, {result['errors']} errors")
                rows[(name, connections)] = result
    finally:
        server.stop()
    return rows


def main():
    harness.log("building the server (release)")
    harness.run(["cargo", "build", "--release", "-q", "-p", "tasklane-server"], cwd=harness.ROOT)
    work = tempfile.mkdtemp(prefix="tasklane-big-")
    os.chmod(work, 0o755)
    results = {}
    with harness.services(work, "postgres" in BACKENDS):
        for backend in BACKENDS:
            # The user is the first one registered on a fresh database: id 1 on both.
            tasks, labels = generate(1)
            results[backend] = bench_backend(backend, work, tasks, labels)
    print(f"\none user with {TASKS} tasks; wrk -t{harness.THREADS} -d{harness.DURATION}s per query and connection "
          f"count, nproc={os.cpu_count()}")
    print("| backend | query | connections | rps | p50 ms | p99 ms | errors |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for backend, rows in results.items():
        name = "PostgreSQL" if backend == "postgres" else "SQLite"
        for (query, connections), r in rows.items():
            print(f"| {name} | {query} | {connections} | {r['rps']:.0f} | {r['p50']:.2f} | {r['p99']:.2f} | "
                  f"{r['errors']} |")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""What offline-safe clients cost the server: conditional writes, idempotent creates and the
change feed, each beside its plain counterpart, alternating in one run.

    python3 bench/sync_costs.py            # DURATION=10 REPEAT=3 CONNECTIONS=64 BACKENDS=postgres,sqlite

For each backend it starts the release server as bench/run.py does (PostgreSQL with Redis, and
the SQLite default), registers a user with 1,000 tasks, and runs with wrk, REPEAT times each in
alternation:

  list                          GET /tasks/?limit=20 (scenario 1 of bench/run.py)
  feed poll, nothing new        GET /tasks/changes?since=<the current cursor>
  PATCH, plain                  PATCH /tasks/{id}
  PATCH, If-Match               the same, carrying the ETag of the task's last answer
  create, plain                 POST /tasks/
  create, Idempotency-Key       the same, with a fresh key each time (as the SDK sends)

and prints each one's median requests/s, p50 and p99, with the ratios the issue's targets name.
"""

import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as harness  # noqa: E402

# The list and the feed first, while the account holds its 1,000 tasks: the creates add many
# more, and the list's exact count grows with them.
PAIRS = [
    ("list", "get.lua", {"BENCH_PATH": "/tasks/?limit=20"}, "feed poll, nothing new", "get.lua", None),
    ("PATCH, plain", "patch.lua", {}, "PATCH, If-Match", "patch.lua", {"BENCH_IF_MATCH": "1"}),
    ("create, plain", "create.lua", {}, "create, Idempotency-Key", "create_keyed.lua", {}),
]


def bench_backend(backend, work):
    env = {"SECRET_KEY": harness.SECRET, "ROCKET_ADDRESS": "127.0.0.1", "ROCKET_PORT": str(harness.SERVER_PORT),
           "RATE_LIMIT_ACCOUNT_PER_MINUTE": "0", "RATE_LIMIT_ADDRESS_PER_MINUTE": "0"}
    if backend == "postgres":
        admin = f"postgres://postgres@127.0.0.1:{harness.PG_PORT}/postgres"
        harness.run(["psql", admin, "-qc", "DROP DATABASE IF EXISTS tasklane_sync WITH (FORCE)"], capture_output=True)
        harness.run(["psql", admin, "-qc", "CREATE DATABASE tasklane_sync"], capture_output=True)
        env["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:{harness.PG_PORT}/tasklane_sync"
        env["REDIS_URL"] = f"redis://127.0.0.1:{harness.REDIS_PORT}"
    else:
        env["DATABASE_URL"] = f"sqlite:{work}/sync.db"
    server = harness.Server(env, f"{work}/server-{backend}.log")
    results = {}
    try:
        pair = harness.http("POST", "/auth/register", {"username": "syncbench", "password": harness.PASSWORD})
        token = pair["access_token"]
        ids = [str(harness.http("POST", "/tasks/", {"title": f"task {i}"}, token=token)["id"]) for i in range(1000)]
        base = {"BENCH_TOKEN": token, "BENCH_TASK_IDS": ",".join(ids)}
        for name_a, script_a, env_a, name_b, script_b, env_b in PAIRS:
            runs = {name_a: [], name_b: []}
            for i in range(harness.REPEAT):
                if env_b is None:
                    # The cursor of an account that nothing changes while it is polled.
                    cursor = harness.http("GET", "/tasks/changes?limit=1000", token=token)["cursor"]
                    while True:
                        page = harness.http("GET", f"/tasks/changes?limit=1000&since={cursor}", token=token)
                        cursor = page["cursor"]
                        if not page["has_more"]:
                            break
                    b_env = {"BENCH_PATH": f"/tasks/changes?since={cursor}"}
                else:
                    b_env = env_b
                for name, script, extra in ((name_a, script_a, env_a), (name_b, script_b, b_env)):
                    result = harness.measured_run(server, name, i, lambda: harness.wrk(script, {**base, **extra}))
                    runs[name].append(result)
            for name, rs in runs.items():
                results[name] = harness.median_of(rs)
    finally:
        server.stop()
    return results


def main():
    harness.log("building the server (release)")
    harness.run(["cargo", "build", "--release", "-q", "-p", "tasklane-server"], cwd=harness.ROOT)
    work = tempfile.mkdtemp(prefix="tasklane-sync-bench-")
    os.chmod(work, 0o755)
    results = {}
    with harness.services(work, "postgres" in harness.BACKENDS):
        for backend in harness.BACKENDS:
            harness.log(f"backend: {backend}")
            results[backend] = bench_backend(backend, work)
    print(f"\nwrk -t{harness.THREADS} -c{harness.CONNECTIONS} -d{harness.DURATION}s, medians of {harness.REPEAT} "
          f"alternating runs, nproc={os.cpu_count()}")
    print("| backend | scenario | rps | p50 ms | p99 ms | errors |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    label = {"postgres": "PostgreSQL + Redis", "sqlite": "SQLite"}
    for backend, rs in results.items():
        for name, r in rs.items():
            print(f"| {label[backend]} | {name} | {r['rps']:.0f} | {harness.fmt(r['p50'], '.2f')} | "
                  f"{harness.fmt(r['p99'], '.2f')} | {r['errors']} |")
    for backend, rs in results.items():
        ratio = lambda a, b: rs[b]["rps"] / rs[a]["rps"]  # noqa: E731
        print(f"{label[backend]}: If-Match PATCH at {ratio('PATCH, plain', 'PATCH, If-Match'):.0%} of plain; "
              f"keyed create at {ratio('create, plain', 'create, Idempotency-Key'):.0%} of plain; "
              f"feed poll at {ratio('list', 'feed poll, nothing new'):.0%} of the list")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

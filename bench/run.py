#!/usr/bin/env python3
"""Tasklane load benchmark: one command, bounded in time, one table.

    python3 bench/run.py            # or: DURATION=5 REPEAT=3 python3 bench/run.py

It builds the server in release mode, starts PostgreSQL + Redis on 127.0.0.1 (own ports and
data dir, PostgreSQL with its durable defaults), then for each backend (PostgreSQL + Redis, and
the SQLite default) starts the server, seeds a user with 20 tasks, and drives the scenarios with
wrk at CONNECTIONS connections:

  1 list      GET /tasks/ of a user with 20 tasks
  2 create    POST /tasks/
  3 update    PUT /tasks/{id}
  4 login     POST /auth/login
  5 storm     scenario 1 while a login storm runs at full concurrency beside it; each run
              follows a run of scenario 1 alone on the same data, the p99 it is compared with
  6 refresh   POST /auth/refresh (rotation off: wrk repeats one body on every connection)

On PostgreSQL, scenario 1 runs alternately with its floor (list, floor, pgbench, list, ...) on
the same data: the floor is bench/floor-server, Rocket 0.5.1 answering the same request with the
same driver, pool and statement as Tasklane and the same JSON, and nothing else (no auth, request
id, log line or metrics), so the share of it that Tasklane reaches is what Tasklane's own work
per request leaves. pgbench running that statement alone is shown beside it, for the database's
own ceiling. The statement is the one the server sent, read back from pg_stat_activity, not a
copy. Around those runs it reads /proc for the CPU each list request costs the server,
PostgreSQL and the whole machine.
Each scenario runs REPEAT times; the table shows medians (rps, p50, p99), the sum of errors and
the peak RSS of the server during the scenario (VmHWM, reset before each run). Everything it
starts, it stops.

With BENCH_BASELINE=<paths of other tasklane-server binaries, comma-separated>, it also runs
scenario 1 on each backend with those binaries and this build in turn (REPEAT rounds, same
database, same seeded user), so a before/after comparison comes from one run, not from two runs
minutes apart on a machine whose speed drifts. A baseline runs on the schema this build
migrated, as an older release does during a rolling deploy.
"""

import contextlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LUA = ROOT / "bench" / "lua"
DURATION = int(os.environ.get("DURATION", "10"))
REPEAT = int(os.environ.get("REPEAT", "3"))
CONNECTIONS = int(os.environ.get("CONNECTIONS", "64"))
THREADS = int(os.environ.get("THREADS", "2"))
PG_PORT = int(os.environ.get("BENCH_PG_PORT", "55442"))
REDIS_PORT = int(os.environ.get("BENCH_REDIS_PORT", "56389"))
SERVER_PORT = int(os.environ.get("BENCH_SERVER_PORT", "8790"))
# The server's RUST_LOG; unset by default, so the server runs with its own default filter (one
# access line per request), as an operator who sets nothing gets.
SERVER_LOG = os.environ.get("BENCH_RUST_LOG")
BACKENDS = os.environ.get("BACKENDS", "postgres,sqlite").split(",")
SECRET = "bench-secret-0123456789abcdef0123456789"
PASSWORD = "correct horse battery"

def log(*args):
    print("bench:", *args, file=sys.stderr, flush=True)


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, text=True, **kw)


def http(method, path, body=None, token=None, port=SERVER_PORT):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    data = json.dumps(body).encode() if body is not None else None
    with urllib.request.urlopen(req, data=data, timeout=30) as res:
        text = res.read()
        return json.loads(text) if text else None


BINARY = ROOT / "target" / "release" / "tasklane-server"
STORM = "5 list + login storm"
STORM_ALONE = "5 list alone, just before the storm"
BASELINES = [b for b in os.environ.get("BENCH_BASELINE", "").split(",") if b]
FLOOR_BINARY = ROOT / "target" / "release" / "tasklane-floor-server"
FLOOR_PORT = int(os.environ.get("BENCH_FLOOR_PORT", "8791"))
FLOOR = "floor: bare Rocket, same pool and statement"
PGBENCH = "pgbench: the list statement alone"


def wait_until_up(proc, port, seconds, failure):
    """Waits for the server `proc` to answer GET /health on `port`; exits with `failure` if it
    stops or does not answer within `seconds`."""
    deadline = time.time() + seconds
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5).read()
            return
        except Exception:
            if proc.poll() is not None or time.time() > deadline:
                raise SystemExit(failure)
            time.sleep(0.1)


@contextlib.contextmanager
def services(work, needed=True):
    """PostgreSQL (with its durable defaults) and Redis on the harness's own ports, with their
    data under `work`, for the duration of the block; nothing when not `needed`."""
    env = dict(os.environ, TASKLANE_PG_PORT=str(PG_PORT), TASKLANE_REDIS_PORT=str(REDIS_PORT),
               TASKLANE_REDIS_TLS_PORT=str(REDIS_PORT + 1), TASKLANE_SERVICES_DIR=f"{work}/services",
               TASKLANE_PG_DURABLE="1")
    script = str(ROOT / "scripts" / "services.sh")
    if needed:
        run([script, "start"], env=env, capture_output=True)
    try:
        yield
    finally:
        if needed:
            subprocess.run([script, "stop"], env=env, capture_output=True)


class Server:
    def __init__(self, env, log_path, binary=BINARY, port=SERVER_PORT):
        self.log = open(log_path, "a")
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_", "ROCKET_", "RUST_LOG", "LOG_"))}
        full_env.update(env)
        self.proc = subprocess.Popen(
            [str(binary)],
            env=full_env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=env.get("BENCH_CWD", ROOT),
        )
        wait_until_up(self.proc, port, 60, f"server did not start; see {log_path}")

    def rss_mb(self, field="VmRSS"):
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def reset_peak(self):
        # Writing 5 to clear_refs resets VmHWM (peak RSS) to the current RSS.
        Path(f"/proc/{self.proc.pid}/clear_refs").write_text("5")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def parse_wrk(out):
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    pct = {}
    for p, value, unit in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M):
        pct[p] = float(value) * UNITS[unit]
    kinds = {}
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        kinds["non-2xx"] = int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        kinds.update(zip(("connect", "read", "write", "timeout (2 s)"), map(int, m.groups())))
    kinds = {kind: n for kind, n in kinds.items() if n}
    errors = sum(kinds.values())
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    return {"rps": rps, "p50": pct.get("50"), "p99": pct.get("99"), "errors": errors, "error_kinds": kinds,
            "requests": requests}


def wrk(script, env, connections=CONNECTIONS, background=False, port=SERVER_PORT):
    cmd = ["wrk", f"-t{min(THREADS, connections)}", f"-c{connections}", f"-d{DURATION}s", "--latency", "-s", str(LUA / script),
           f"http://127.0.0.1:{port}"]
    full_env = dict(os.environ, BENCH_LUA_DIR=str(LUA), **env)
    if background:
        return subprocess.Popen(cmd, env=full_env, stdout=subprocess.PIPE, text=True)
    return parse_wrk(run(cmd, env=full_env, capture_output=True).stdout)


def median_of(runs):
    def med(key):
        values = [r[key] for r in runs if r.get(key) is not None]
        return statistics.median(values) if values else None
    return {"rps": med("rps"), "p50": med("p50"), "p99": med("p99"),
            "errors": sum(r["errors"] for r in runs), "rss": max(r.get("rss", 0) for r in runs)}


def measured_run(server, name, i, runner):
    """One run of a scenario, with the server's peak RSS during it, logged."""
    server.reset_peak()
    result = runner()
    result["rss"] = server.rss_mb("VmHWM")
    log(f"{name} run {i + 1}/{REPEAT}: {result['rps']:.0f} rps, p99 {result['p99']} ms, {result['errors']} errors"
        + (f" {result['error_kinds']}" if result.get("error_kinds") else ""))
    return result


def scenario(server, name, runner):
    return median_of([measured_run(server, name, i, runner) for i in range(REPEAT)])


def bench_backend(backend, work):
    env = {
        "SECRET_KEY": SECRET,
        "ROCKET_ADDRESS": "127.0.0.1",
        "ROCKET_PORT": str(SERVER_PORT),
        "RATE_LIMIT_ACCOUNT_PER_MINUTE": "0",
        "RATE_LIMIT_ADDRESS_PER_MINUTE": "0",
        "REFRESH_TOKEN_ROTATION": "false",
    }
    if SERVER_LOG:
        env["RUST_LOG"] = SERVER_LOG
    if backend == "postgres":
        admin = f"postgres://postgres@127.0.0.1:{PG_PORT}/postgres"
        run(["psql", admin, "-qc", "DROP DATABASE IF EXISTS tasklane_bench WITH (FORCE)"], capture_output=True)
        run(["psql", admin, "-qc", "CREATE DATABASE tasklane_bench"], capture_output=True)
        env["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:{PG_PORT}/tasklane_bench"
        env["REDIS_URL"] = f"redis://127.0.0.1:{REDIS_PORT}"
        run(["redis-cli", "-p", str(REDIS_PORT), "flushall"], capture_output=True)
    else:
        env["DATABASE_URL"] = f"sqlite:{work}/bench.db"
    def start(**extra):
        return Server(dict(env, **extra), f"{work}/server-{backend}.log")

    server = start()
    rows = {}
    try:
        time.sleep(1)
        rows["idle RSS"] = {"rss": server.rss_mb()}
        reader = http("POST", "/auth/register", {"username": "reader", "password": PASSWORD})
        writer = http("POST", "/auth/register", {"username": "writer", "password": PASSWORD})
        ids = [http("POST", "/tasks/", {"title": f"task {i}"}, reader["access_token"])["id"] for i in range(20)]
        read_env = {"BENCH_TOKEN": reader["access_token"], "BENCH_TASK_IDS": ",".join(map(str, ids))}
        if BASELINES:
            # First, on the freshly seeded database (before the write scenarios grow it and
            # keep PostgreSQL's autovacuum busy).
            server.stop()
            ab = ab_list(env, work, backend, read_env)
            server = start()

        list_scenario = lambda: wrk("list.lua", read_env)
        if backend == "postgres":
            reader_id = http("GET", "/auth/me", token=reader["access_token"])["id"]
            rows["1 list"], rows[FLOOR], rows[PGBENCH] = list_and_floor(
                server, list_scenario, env["DATABASE_URL"], reader_id, read_env)
        else:
            rows["1 list"] = scenario(server, "list", list_scenario)
        rows["2 create"] = scenario(server, "create", lambda: wrk("create.lua", {"BENCH_TOKEN": writer["access_token"]}))
        rows["3 update"] = scenario(server, "update", lambda: wrk("update.lua", read_env))
        rows["4 login"] = scenario(server, "login", lambda: wrk("login.lua", {"BENCH_USER": "reader"}))

        def storm():
            logins = wrk("login.lua", {"BENCH_USER": "writer"}, background=True)
            time.sleep(0.5)
            listed = wrk("list.lua", read_env)
            logins.wait()
            return listed

        def paired_storm(name):
            """Scenario 5, each run just after scenario 1 alone on the same server and data: the
            write scenarios before it leave dead row versions and autovacuum work behind, which
            a comparison with scenario 1 on the fresh table would charge to the storm."""
            alone, stormed = [], []
            for i in range(REPEAT):
                alone.append(measured_run(server, f"{name}: list alone, just before", i, list_scenario))
                stormed.append(measured_run(server, name, i, storm))
            return median_of(alone), median_of(stormed)
        rows[STORM_ALONE], rows[STORM] = paired_storm("storm")
        rows["6 refresh"] = scenario(server, "refresh", lambda: wrk("refresh.lua", {"BENCH_REFRESH": reader["refresh_token"]}))
        time.sleep(2)
        rows["idle RSS, after the scenarios"] = {"rss": server.rss_mb()}
        if backend == "sqlite":
            # The WAL must stay bounded however busy the readers were (DESIGN.md, Storage).
            wal = Path(f"{work}/bench.db-wal")
            rows["idle RSS, after the scenarios"]["wal"] = wal.stat().st_size / 1e6 if wal.exists() else 0.0
    finally:
        server.stop()
    if BASELINES:
        rows.update(ab)
    return rows


def ab_list(env, work, backend, read_env):
    """Scenario 1 with each baseline binary and this build, in turn, REPEAT rounds."""
    binaries = [(f"baseline {Path(b).name}", b) for b in BASELINES] + [("this build", BINARY)]
    runs = {name: [] for name, _ in binaries}
    for i in range(REPEAT):
        for name, binary in binaries:
            server = Server(env, f"{work}/server-{backend}-ab.log", binary)
            try:
                time.sleep(1)
                result = wrk("list.lua", read_env)
                result["rss"] = server.rss_mb("VmHWM")
            finally:
                server.stop()
            runs[name].append(result)
            log(f"A/B list, {name} run {i + 1}/{REPEAT}: {result['rps']:.0f} rps, p99 {result['p99']} ms")
    return {f"1 list, A/B: {name}": median_of(r) for name, r in runs.items()}


TICK_US = 1_000_000 / os.sysconf("SC_CLK_TCK")


def process_ticks(pid):
    """utime + stime of a process, in clock ticks (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0
    return int(fields[11]) + int(fields[12])


def postgres_ticks():
    """CPU of every PostgreSQL process alive now (the server's pooled backends stay alive)."""
    total = 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    total += process_ticks(entry.name)
            except (FileNotFoundError, ProcessLookupError):
                pass
    return total


def machine_ticks():
    """Busy time of the whole machine: user, nice, system, irq, softirq."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    return sum(int(fields[i]) for i in (0, 1, 2, 5, 6))


def sent_list_statement(url):
    """The list statement exactly as the server sent it: its connections sit idle after
    scenario 1, and pg_stat_activity keeps each one's last statement, placeholders and all."""
    out = run(["psql", url, "-AtF", "\x1f", "-R", "\x1e", "-c",
               "SELECT DISTINCT query FROM pg_stat_activity WHERE datname = current_database() "
               "AND pid <> pg_backend_pid() AND query LIKE '%FROM tasks%LIMIT $2 OFFSET $3%'"],
              capture_output=True).stdout
    statements = [q for q in out.split("\x1e") if q.strip()]
    if len(statements) != 1:
        raise SystemExit(f"expected the server's one list statement in pg_stat_activity, found {statements!r}")
    return statements[0].strip()


def pgbench_script(sql, user_id):
    log(f"pgbench statement (from pg_stat_activity): {' '.join(sql.split())}")
    # pgbench variables stand where the server binds parameters; -M prepared makes it a
    # prepared statement, as sqlx's are. (pgbench numbers each occurrence of :uid as its own
    # parameter, so the user id is bound twice with the same value; the plan is the same.)
    sql = sql.replace("$1", ":uid").replace("$2", ":lim").replace("$3", ":off")
    script = Path(tempfile.mkstemp(suffix=".sql")[1])
    script.write_text(f"\\set uid {user_id}\n\\set lim 50\n\\set off 0\n{sql};\n")
    return script


def pgbench(url, script):
    out = run(["pgbench", "-n", "-M", "prepared", "-c", str(CONNECTIONS), "-j", str(THREADS), "-T", str(DURATION),
               "-f", str(script), url], capture_output=True).stdout
    tps = float(re.search(r"tps = ([\d.]+)", out).group(1))
    failed = re.search(r"number of failed transactions: (\d+)", out)
    done = int(re.search(r"number of transactions actually processed: (\d+)", out).group(1))
    return {"rps": tps, "p50": None, "p99": None, "errors": int(failed.group(1)) if failed else 0, "requests": done}


def floor_server_run(url, reader_id, sql, read_env):
    """One run of scenario 1 against the floor server, on FLOOR_PORT beside the idle Tasklane."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "RUST_LOG"))}
    env.update(READER=str(reader_id), PORT=str(FLOOR_PORT), DATABASE_URL=url, SQL=sql)
    proc = subprocess.Popen([str(FLOOR_BINARY)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until_up(proc, FLOOR_PORT, 30, "floor server did not start")
        return wrk("list.lua", read_env, port=FLOOR_PORT)
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def list_and_floor(server, list_scenario, url, reader_id, read_env):
    """Scenario 1, the floor server and pgbench with the server's list statement, alternately,
    REPEAT times each, on the same data: the machine's speed drifts over minutes, and the write
    scenarios grow the table, so a floor measured at another time would not be comparable. Each
    run's share is taken against the floor run just after it."""
    lists, floors, pgbenches, shares = [], [], [], []
    cpu = {name: [] for name in ("server", "PostgreSQL", "the rest (wrk, kernel threads)", "whole machine")}
    script = None
    try:
        for i in range(REPEAT):
            before = (process_ticks(server.proc.pid), postgres_ticks(), machine_ticks())
            listed = measured_run(server, "list", i, list_scenario)
            after = (process_ticks(server.proc.pid), postgres_ticks(), machine_ticks())
            server_us, postgres_us, machine_us = ((b - a) * TICK_US / listed["requests"] for a, b in zip(before, after))
            cpu["server"].append(server_us)
            cpu["PostgreSQL"].append(postgres_us)
            cpu["the rest (wrk, kernel threads)"].append(machine_us - server_us - postgres_us)
            cpu["whole machine"].append(machine_us)
            lists.append(listed)
            if script is None:
                sql = sent_list_statement(url)
                script = pgbench_script(sql, reader_id)
            floor = floor_server_run(url, reader_id, sql, read_env)
            floors.append(floor)
            shares.append(listed["rps"] / floor["rps"])
            log(f"floor run {i + 1}/{REPEAT}: {floor['rps']:.0f} rps, {floor['errors']} errors; "
                f"list/floor {shares[-1]:.0%}")
            pgbenches.append(pgbench(url, script))
            log(f"pgbench run {i + 1}/{REPEAT}: {pgbenches[-1]['rps']:.0f} tps")
    finally:
        if script is not None:
            script.unlink()
    floor = dict(median_of(floors), rss=None, shares=shares, cpu={k: statistics.median(v) for k, v in cpu.items()})
    return median_of(lists), floor, dict(median_of(pgbenches), rss=None)


def main():
    if not shutil.which("wrk"):
        log("installing wrk")
        run(["apt-get", "install", "-y", "-qq", "wrk"], capture_output=True)
    log("building the server (release)")
    run(["cargo", "build", "--release", "-q", "-p", "tasklane-server", "-p", "tasklane-floor-server"], cwd=ROOT)
    work = tempfile.mkdtemp(prefix="tasklane-bench-")
    os.chmod(work, 0o755)  # PostgreSQL runs as its own user and must reach its data dir inside
    results = {}
    with services(work, "postgres" in BACKENDS):
        for backend in BACKENDS:
            log(f"backend: {backend}")
            results[backend] = bench_backend(backend, work)
    print_table(results)
    shutil.rmtree(work, ignore_errors=True)


def fmt(value, spec):
    return "-" if value is None else format(value, spec)


def print_table(results):
    if BASELINES:
        print(f"\nA/B baselines: {', '.join(BASELINES)}")
    print(f"\nwrk -t{THREADS} -c{CONNECTIONS} -d{DURATION}s, medians of {REPEAT} runs, nproc={os.cpu_count()}, "
          f"server RUST_LOG={SERVER_LOG or '(unset: the default filter, one access line per request)'}")
    print(f"| backend | scenario | rps | p50 ms | p99 ms | errors | peak RSS MB |")
    print(f"| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for backend, rows in results.items():
        name = "PostgreSQL + Redis" if backend == "postgres" else "SQLite"
        for scenario, r in rows.items():
            print(f"| {name} | {scenario} | {fmt(r.get('rps'), '.0f')} | {fmt(r.get('p50'), '.2f')} | "
                  f"{fmt(r.get('p99'), '.2f')} | {fmt(r.get('errors'), 'd')} | {fmt(r.get('rss'), '.1f')} |")
    pg = results.get("postgres", {})
    if FLOOR in pg:
        floor = pg[FLOOR]
        shares = floor["shares"]
        print(f"\nPostgreSQL list: Tasklane at {statistics.median(shares):.0%} of the floor server (median of the "
              f"{len(shares)} alternating pairs: {', '.join(f'{r:.0%}' for r in shares)}); the floor at "
              f"{floor['rps'] / pg[PGBENCH]['rps']:.0%} of pgbench.")
        print("CPU per list request, µs (medians, from /proc): " + ", ".join(
            f"{name} {value:.0f}" for name, value in floor["cpu"].items()) + ".")
    for backend, rows in results.items():
        wal = rows.get("idle RSS, after the scenarios", {}).get("wal")
        if wal is not None:
            print(f"{backend}: the WAL file after the scenarios: {wal:.1f} MB.")
        if STORM_ALONE in rows and STORM in rows:
            p99 = rows[STORM]["p99"]
            print(f"{backend}: list p99 under the login storm is {p99 / rows[STORM_ALONE]['p99']:.1f}x its p99 alone "
                  f"just before, on the same data; {p99 / rows['1 list']['p99']:.1f}x scenario 1's on the fresh table.")

if __name__ == "__main__":
    main()

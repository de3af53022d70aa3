#!/usr/bin/env python3
"""What exporting traces costs the server: list throughput with OTLP export on and off,
alternating in one run.

    python3 bench/trace_cost.py            # DURATION=10 REPEAT=3 CONNECTIONS=64 BACKENDS=postgres,sqlite

For each backend it starts the release server as bench/run.py does (PostgreSQL with Redis, and
the SQLite default), registers a user with 20 tasks, and then, REPEAT times in alternation,
starts the server afresh and runs scenario 1 of bench/run.py (GET /tasks/) with wrk:

  export off                    no OTEL_* variable: no OpenTelemetry layer, as by default
  export on                     OTEL_EXPORTER_OTLP_ENDPOINT naming a receiver in this script (a
                                plain HTTP server answering 200 to every POST /v1/traces), the
                                batch processor's other settings left at their defaults

With BENCH_BASELINE=<binary>[,<binary>...] each of those builds (say, one from before the
traces) runs in the alternation too, without OTEL_* variables, so that "export off" can be held
against it. It prints each one's median requests/s, p50 and p99, what the receiver got, and the
ratio of on to off.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as harness  # noqa: E402

RECEIVER_PORT = int(os.environ.get("BENCH_OTLP_PORT", "8792"))
OFF, ON = "export off", "export on"


class Receiver(BaseHTTPRequestHandler):
    """An OTLP/HTTP collector that reads what it is sent, counts it, and keeps nothing."""

    protocol_version = "HTTP/1.1"  # keep-alive, as a collector offers
    posts = 0
    body_bytes = 0
    lock = threading.Lock()

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        with Receiver.lock:
            Receiver.posts += 1
            Receiver.body_bytes += len(body)
        # An empty ExportTraceServiceResponse: everything accepted.
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def received():
    with Receiver.lock:
        return Receiver.posts, Receiver.body_bytes


def bench_backend(backend, work):
    env = {"SECRET_KEY": harness.SECRET, "ROCKET_ADDRESS": "127.0.0.1", "ROCKET_PORT": str(harness.SERVER_PORT),
           "RATE_LIMIT_ACCOUNT_PER_MINUTE": "0", "RATE_LIMIT_ADDRESS_PER_MINUTE": "0"}
    if backend == "postgres":
        admin = f"postgres://postgres@127.0.0.1:{harness.PG_PORT}/postgres"
        harness.run(["psql", admin, "-qc", "DROP DATABASE IF EXISTS tasklane_traces WITH (FORCE)"],
                    capture_output=True)
        harness.run(["psql", admin, "-qc", "CREATE DATABASE tasklane_traces"], capture_output=True)
        env["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:{harness.PG_PORT}/tasklane_traces"
        env["REDIS_URL"] = f"redis://127.0.0.1:{harness.REDIS_PORT}"
    else:
        env["DATABASE_URL"] = f"sqlite:{work}/traces.db"
    log_path = f"{work}/server-{backend}.log"
    server = harness.Server(env, log_path)
    try:
        pair = harness.http("POST", "/auth/register", {"username": "tracebench", "password": harness.PASSWORD})
        token = pair["access_token"]
        for i in range(20):
            harness.http("POST", "/tasks/", {"title": f"task {i}"}, token=token)
    finally:
        server.stop()
    read_env = {"BENCH_TOKEN": token}
    exporting = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{RECEIVER_PORT}",
                 "OTEL_SERVICE_NAME": "tasklane-bench"}
    arms = [(OFF, env, harness.BINARY), (ON, {**env, **exporting}, harness.BINARY)]
    arms += [(f"export off, baseline {Path(b).name}", env, b) for b in harness.BASELINES]
    runs = {name: [] for name, _, _ in arms}
    sent = {"posts": 0, "bytes": 0}
    for i in range(harness.REPEAT):
        for name, arm_env, binary in arms:
            server = harness.Server(arm_env, log_path, binary)
            posts_before, bytes_before = received()
            try:
                time.sleep(1)
                result = harness.wrk("list.lua", read_env)
                result["rss"] = server.rss_mb("VmHWM")
            finally:
                # SIGTERM: the server flushes what its batch holds before it exits.
                server.stop()
            posts, body_bytes = received()
            if name == ON:
                sent["posts"] += posts - posts_before
                sent["bytes"] += body_bytes - bytes_before
            elif posts != posts_before:
                raise SystemExit(f"{name}: the receiver got {posts - posts_before} exports; see {log_path}")
            runs[name].append(result)
            harness.log(f"{name} run {i + 1}/{harness.REPEAT}: {result['rps']:.0f} rps, p99 {result['p99']} ms, "
                        f"{result['errors']} errors")
    if sent["posts"] == 0:
        raise SystemExit(f"{ON}: the receiver got nothing; see {log_path}")
    return {name: harness.median_of(rs) for name, rs in runs.items()}, sent


def main():
    # The arms set the OTEL_* variables themselves; none is inherited from this shell.
    for name in [name for name in os.environ if name.startswith("OTEL_")]:
        del os.environ[name]
    harness.log("building the server (release)")
    harness.run(["cargo", "build", "--release", "-q", "-p", "tasklane-server"], cwd=harness.ROOT)
    receiver = ThreadingHTTPServer(("127.0.0.1", RECEIVER_PORT), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    work = tempfile.mkdtemp(prefix="tasklane-trace-bench-")
    os.chmod(work, 0o755)
    services = dict(os.environ, TASKLANE_PG_PORT=str(harness.PG_PORT), TASKLANE_REDIS_PORT=str(harness.REDIS_PORT),
                    TASKLANE_REDIS_TLS_PORT=str(harness.REDIS_PORT + 1),
                    TASKLANE_SERVICES_DIR=f"{work}/services", TASKLANE_PG_DURABLE="1")
    results = {}
    try:
        if "postgres" in harness.BACKENDS:
            harness.run([str(harness.ROOT / "scripts" / "services.sh"), "start"], env=services, capture_output=True)
        for backend in harness.BACKENDS:
            harness.log(f"backend: {backend}")
            results[backend] = bench_backend(backend, work)
    finally:
        if "postgres" in harness.BACKENDS:
            subprocess.run([str(harness.ROOT / "scripts" / "services.sh"), "stop"], env=services, capture_output=True)
        receiver.shutdown()
    print(f"\nwrk -t{harness.THREADS} -c{harness.CONNECTIONS} -d{harness.DURATION}s GET /tasks/ (20 tasks), medians of "
          f"{harness.REPEAT} alternating runs, nproc={os.cpu_count()}, server RUST_LOG unset")
    print("| backend | scenario | rps | p50 ms | p99 ms | errors |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    label = {"postgres": "PostgreSQL + Redis", "sqlite": "SQLite"}
    for backend, (rs, _) in results.items():
        for name, r in rs.items():
            print(f"| {label[backend]} | {name} | {r['rps']:.0f} | {harness.fmt(r['p50'], '.2f')} | "
                  f"{harness.fmt(r['p99'], '.2f')} | {r['errors']} |")
    for backend, (rs, sent) in results.items():
        print(f"{label[backend]}: export on at {rs[ON]['rps'] / rs[OFF]['rps']:.0%} of off; the receiver got "
              f"{sent['posts']} exports, {sent['bytes'] / 1e6:.1f} MB in all")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

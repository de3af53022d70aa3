#!/usr/bin/env python3
"""Live events under load: 1,000 open event streams on one instance.

    python3 bench/live_streams.py          # DURATION=10 REPEAT=3 CONNECTIONS=64 STREAMS=1000 WRITES=200

It starts PostgreSQL + Redis and two release servers on them (instance A and instance B), as
several instances behind a load balancer run. It registers STREAMS/10 users (10 streams each,
the per-user limit) and, REPEAT times in alternation:

  list alone        GET /tasks/?limit=20 on B with wrk, no stream open
  list + streams    the same while STREAMS event streams are open on B

With the streams open it reads B's RSS, and, in the first round, measures delivery: WRITES
creates on A, one at a time, each by one of the users in turn, and the time from the create's
response to the event's arrival on each of that user's 10 streams on B (through Redis). It
prints medians (rps, p50, p99), the RSS, and the delivery latency's p50, p99 and maximum.
"""

import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as harness  # noqa: E402

STREAMS = int(os.environ.get("STREAMS", "1000"))
WRITES = int(os.environ.get("WRITES", "200"))
PER_USER = 10
PORT_A = harness.SERVER_PORT
PORT_B = harness.SERVER_PORT + 2


class Stream:
    """One `GET /tasks/events` on B, read as it arrives; notes when each task's event came."""

    def __init__(self, token, arrivals):
        self.token, self.arrivals = token, arrivals

    async def open(self):
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", PORT_B)
        self.writer.write((f"GET /tasks/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n"
                           f"Authorization: Bearer {self.token}\r\n\r\n").encode())
        await self.writer.drain()
        status = await self.reader.readline()
        if b" 200 " not in status:
            raise SystemExit(f"event stream refused: {status!r}")
        while (await self.reader.readline()) not in (b"\r\n", b""):
            pass
        self.task = asyncio.create_task(self.read())

    async def read(self):
        # The body is chunked: a hex size line, that many bytes, CRLF. SSE lines inside.
        pending = b""
        try:
            while True:
                size = int((await self.reader.readline()).strip() or b"0", 16)
                if size == 0:
                    return
                pending += await self.reader.readexactly(size)
                await self.reader.readexactly(2)
                now = time.monotonic()
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    if line.startswith(b"data:"):
                        change = json.loads(line[5:])
                        if change.get("type") == "upsert":
                            self.arrivals.setdefault(change["task"]["id"], []).append(now)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            return

    async def close(self):
        self.task.cancel()
        self.writer.close()


async def create(token, title):
    """POST /tasks/ on A from a worker thread (the loop keeps reading the streams meanwhile);
    the task's id and when its response had arrived."""
    def post():
        task = harness.http("POST", "/tasks/", {"title": title}, token=token, port=PORT_A)
        return task["id"], time.monotonic()
    return await asyncio.to_thread(post)


async def wrk_list(env):
    """Scenario 1 of bench/run.py on B, without blocking the loop that reads the streams."""
    cmd = ["wrk", f"-t{harness.THREADS}", f"-c{harness.CONNECTIONS}", f"-d{harness.DURATION}s", "--latency",
           "-s", str(harness.LUA / "get.lua"), f"http://127.0.0.1:{PORT_B}"]
    proc = await asyncio.create_subprocess_exec(*cmd, env=dict(os.environ, BENCH_LUA_DIR=str(harness.LUA), **env),
                                                stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    return harness.parse_wrk(out.decode())


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


async def bench(server_b, users, list_env):
    lists = {"list alone": [], f"list + {STREAMS} streams": []}
    rss, latencies = [], []
    for i in range(harness.REPEAT):
        result = await wrk_list(list_env)
        lists["list alone"].append(result)
        harness.log(f"list alone run {i + 1}/{harness.REPEAT}: {result['rps']:.0f} rps, p99 {result['p99']} ms")

        arrivals = {}
        streams = [Stream(token, arrivals) for token in users for _ in range(PER_USER)][:STREAMS]
        for start in range(0, len(streams), 50):
            await asyncio.gather(*(s.open() for s in streams[start:start + 50]))
        await asyncio.sleep(2)
        rss.append(server_b.rss_mb())
        harness.log(f"{len(streams)} streams open on B: RSS {rss[-1]:.1f} MB")

        if i == 0:
            for n in range(WRITES):
                task_id, answered = await create(users[n % len(users)], f"probe {n}")
                await asyncio.sleep(0.025)
                latencies += [(t - answered) * 1000 for t in arrivals.get(task_id, [])]
            await asyncio.sleep(1)
            harness.log(f"delivery: {len(latencies)} events of {WRITES * PER_USER} expected")

        result = await wrk_list(list_env)
        lists[f"list + {STREAMS} streams"].append(result)
        harness.log(f"list + streams run {i + 1}/{harness.REPEAT}: {result['rps']:.0f} rps, p99 {result['p99']} ms")
        await asyncio.gather(*(s.close() for s in streams))
        await asyncio.sleep(1)
    return {name: harness.median_of(runs) for name, runs in lists.items()}, statistics.median(rss), latencies


def main():
    harness.log("building the server (release)")
    harness.run(["cargo", "build", "--release", "-q", "-p", "tasklane-server"], cwd=harness.ROOT)
    work = tempfile.mkdtemp(prefix="tasklane-live-bench-")
    os.chmod(work, 0o755)
    admin = f"postgres://postgres@127.0.0.1:{harness.PG_PORT}/postgres"
    with harness.services(work):
        harness.run(["psql", admin, "-qc", "CREATE DATABASE tasklane_live"], capture_output=True)
        env = {"SECRET_KEY": harness.SECRET, "ROCKET_ADDRESS": "127.0.0.1",
               "RATE_LIMIT_ACCOUNT_PER_MINUTE": "0", "RATE_LIMIT_ADDRESS_PER_MINUTE": "0",
               # Streams end when their access token expires; none should during the run.
               "ACCESS_TOKEN_EXPIRE_MINUTES": "240",
               "DATABASE_URL": f"postgres://postgres@127.0.0.1:{harness.PG_PORT}/tasklane_live",
               "REDIS_URL": f"redis://127.0.0.1:{harness.REDIS_PORT}"}
        server_a = harness.Server(dict(env, ROCKET_PORT=str(PORT_A)), f"{work}/server-a.log", port=PORT_A)
        server_b = harness.Server(dict(env, ROCKET_PORT=str(PORT_B)), f"{work}/server-b.log", port=PORT_B)
        try:
            users = []
            for n in range((STREAMS + PER_USER - 1) // PER_USER):
                pair = harness.http("POST", "/auth/register", {"username": f"live{n}", "password": harness.PASSWORD},
                                    port=PORT_A)
                users.append(pair["access_token"])
            reader = harness.http("POST", "/auth/register", {"username": "reader", "password": harness.PASSWORD},
                                  port=PORT_A)["access_token"]
            for n in range(20):
                harness.http("POST", "/tasks/", {"title": f"task {n}"}, token=reader, port=PORT_A)
            list_env = {"BENCH_TOKEN": reader, "BENCH_PATH": "/tasks/?limit=20"}
            lists, rss, latencies = asyncio.run(bench(server_b, users, list_env))
        finally:
            server_a.stop()
            server_b.stop()

    print(f"\nPostgreSQL + Redis, two instances; wrk -t{harness.THREADS} -c{harness.CONNECTIONS} "
          f"-d{harness.DURATION}s on B, medians of {harness.REPEAT} alternating runs, nproc={os.cpu_count()}")
    print("| scenario | rps | p50 ms | p99 ms | errors |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, r in lists.items():
        print(f"| {name} | {r['rps']:.0f} | {harness.fmt(r['p50'], '.2f')} | {harness.fmt(r['p99'], '.2f')} "
              f"| {r['errors']} |")
    alone, loaded = lists.values()
    print(f"list with {STREAMS} streams open at {loaded['rps'] / alone['rps']:.0%} of without; "
          f"RSS of B with them open {rss:.1f} MB (median of {harness.REPEAT})")
    if latencies:
        print(f"delivery from A's response to B's stream, {len(latencies)} events of {WRITES * PER_USER}: "
              f"p50 {percentile(latencies, 50):.1f} ms, p99 {percentile(latencies, 99):.1f} ms, "
              f"max {max(latencies):.1f} ms")


if __name__ == "__main__":
    main()

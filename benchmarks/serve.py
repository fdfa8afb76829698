"""Throughput and latency of POST /api/v1/recommendations under gunicorn.

Starts `electives serve MODEL --workers 2` on a free local port, then 32 concurrent clients (asyncio, one
connection each, reconnecting when the server closes it) send grade lists for --seconds after a warm-up.
Closed loop (default): each client sends its next request as soon as the last answer arrives, so the figure is the
server's capacity on this machine, with the client's own CPU use included. --rate R: open loop, R requests/s
spread over the clients on a fixed schedule; latency counts from the scheduled send time (no coordinated
omission; sends the server was too far behind to make by the end are counted as "missed"). Prints one table row
per run, with the CPU time the server (gunicorn master and workers, from /proc) and this client spent per request:
on a shared machine throughput depends on what else runs, CPU per request much less, and 2 cores / (server +
client CPU per request) is the ceiling on an idle 2-core machine.
With N closed-loop clients the mean latency is N / throughput (Little's law): p99 ≤ 50 ms at 32 clients needs
well over 640 requests/s; the open-loop run at 500/s measures latency at the target rate itself.

    make demo-model   # once: demo/model and demo/electives.db
    .venv/bin/python benchmarks/serve.py --model demo/model
    .venv/bin/python benchmarks/serve.py --model demo/model --rate 500
    .venv/bin/python benchmarks/serve.py --model demo/model --threads 2   # gthread workers, keep-alive
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PATH = "/api/v1/recommendations"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request_bodies(model_dir: Path, n: int, seed: int) -> list[bytes]:
    """Realistic inputs: 6–20 distinct courses of the model with percent-like grades, k = 5."""
    manifest = json.loads((model_dir / "manifest.json").read_text())
    courses = manifest["course_ids"]
    scale = manifest.get("scale") or ""
    rng = random.Random(seed)
    letters = ["A", "A-", "B+", "B", "B-", "C+", "C", "D", "F"]
    numeric = "numeric = true" in scale
    bodies = []
    for _ in range(n):
        taken = rng.sample(courses, rng.randint(min(6, len(courses)), min(20, len(courses))))
        grades = [
            {"course": c, "grade": round(rng.uniform(55, 100), 1) if numeric else rng.choice(letters)} for c in taken
        ]
        bodies.append(json.dumps({"grades": grades, "k": 5}).encode())
    return bodies


def start_server(args: argparse.Namespace, port: int) -> subprocess.Popen:
    env = dict(os.environ)
    # The limiter stays in the request path, with a limit no benchmark reaches (one address sends everything).
    env["ELECTIVES_WEB_API_RATE"] = "100000000/1"
    env.setdefault("ELECTIVES_WEB_SECRET_KEY", "benchmark-" + "x" * 40)
    cmd = [
        str(Path(sys.executable).with_name("electives")),
        "serve",
        str(args.model),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(args.workers),
        "--threads",
        str(args.threads),
    ]
    if args.db:
        cmd += ["--db", args.db]
    if not args.access_log:
        cmd.append("--no-access-log")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.3)
    stop_server(proc)
    raise SystemExit("server did not become ready in 120 s")


def server_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by the gunicorn master and its workers."""
    tick = os.sysconf("SC_CLK_TCK")
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    total = 0.0
    for p in [pid, *map(int, children)]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


class Client:
    """One HTTP/1.1 connection, reopened whenever the server closes it (gunicorn's sync workers always do)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, body: bytes) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        head = (
            f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nAccept: application/json\r\n\r\n"
        ).encode()
        self.writer.write(head + body)
        assert self.reader is not None
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("server closed the connection")
        status = int(status_line.split()[1])
        length, close = 0, False
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "connection" and value.strip().lower() == "close":
                close = True
        await self.reader.readexactly(length)
        if close:
            self.close()
        return status

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def run_load(
    args: argparse.Namespace, port: int, bodies: list[bytes], pid: int
) -> tuple[list[float], int, int, int, float, float, float]:
    latencies: list[float] = []
    errors = 0
    statuses: dict[int, int] = {}
    start = time.perf_counter()
    measure_from = start + args.warmup
    stop_at = measure_from + args.seconds
    interval = args.clients / args.rate if args.rate else 0.0
    cpu: dict[str, float] = {}

    async def meter() -> None:
        # CPU used by the server and by this client during the measured window only.
        await asyncio.sleep(max(0.0, measure_from - time.perf_counter()))
        cpu["server"], cpu["client"] = server_cpu(pid), time.process_time()
        await asyncio.sleep(max(0.0, stop_at - time.perf_counter()))
        cpu["server"] = server_cpu(pid) - cpu["server"]
        cpu["client"] = time.process_time() - cpu["client"]

    missed = 0  # open loop: sends scheduled inside the window that could not be made (the server was behind)
    done = 0  # answers that arrived inside the window

    async def client(i: int) -> None:
        nonlocal errors, missed, done
        c = Client(port)
        rng = random.Random(i)
        next_send = start + (interval * i / args.clients if interval else 0.0)
        while True:
            now = time.perf_counter()
            if interval:
                if next_send > now:
                    await asyncio.sleep(next_send - now)
                    now = time.perf_counter()
                if now >= stop_at or next_send >= stop_at:
                    if next_send < stop_at:
                        missed += int((stop_at - max(next_send, measure_from)) // interval) + 1
                    break
                t0 = next_send  # latency from the scheduled time: a late send counts as waiting
                next_send += interval
            else:
                if now >= stop_at:
                    break
                t0 = now
            try:
                status = await c.post(bodies[rng.randrange(len(bodies))])
            except (OSError, ConnectionError, asyncio.IncompleteReadError, ValueError, IndexError):
                c.close()
                status = -1
            t1 = time.perf_counter()
            if measure_from <= t1 <= stop_at:
                done += 1
            if t0 >= measure_from:
                statuses[status] = statuses.get(status, 0) + 1
                if status == 200:
                    latencies.append(t1 - t0)
                else:
                    errors += 1
        c.close()

    await asyncio.gather(meter(), *(client(i) for i in range(args.clients)))
    if errors:
        print(f"non-200 answers: {statuses}", file=sys.stderr)
    return latencies, errors, done, missed, args.seconds, cpu["server"], cpu["client"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=ROOT / "demo" / "model", help="model artifact (default: demo/model)")
    p.add_argument("--db", help="grade database URL (cohort figures in the explanations)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=1, help="threads per worker (1: sync workers)")
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--rate", type=float, default=0.0, help="open loop at this many requests/s (0: closed loop)")
    p.add_argument("--access-log", action="store_true", help="keep gunicorn's access log on (to /dev/null)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    if not (args.model / "manifest.json").is_file():
        raise SystemExit(f"{args.model}: no model artifact (run `make demo-model` first)")
    bodies = request_bodies(args.model, 256, args.seed)
    port = free_port()
    proc = start_server(args, port)
    try:
        latencies, errors, total, missed, elapsed, cpu_server, cpu_client = asyncio.run(
            run_load(args, port, bodies, proc.pid)
        )
        load = os.getloadavg()[0]
    finally:
        stop_server(proc)
    lat = np.array(latencies) * 1000
    manifest = json.loads((args.model / "manifest.json").read_text())
    print(
        f"# {platform.node()} · {os.cpu_count()} CPUs · python {platform.python_version()} · "
        f"model {manifest['n_students']} students × {manifest['n_courses']} courses · db {'yes' if args.db else 'no'} · "
        f"load average {load:.1f} at the end"
    )
    print(
        "| mode | workers | threads | clients | seconds | answers | errors | missed | req/s | p50 ms | p90 ms | p99 ms "
        "| max ms | server CPU ms/req | client CPU ms/req |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    mode = f"open {args.rate:g}/s" if args.rate else "closed"
    pct = (*np.percentile(lat, [50, 90, 99]), lat.max()) if len(lat) else (float("nan"),) * 4
    print(
        f"| {mode} | {args.workers} | {args.threads} | {args.clients} | {elapsed:g} | {total} | {errors} | {missed} | "
        f"{total / elapsed:.0f} | {' | '.join(f'{x:.1f}' for x in pct)} | "
        f"{1000 * cpu_server / max(total, 1):.2f} | {1000 * cpu_client / max(total, 1):.2f} |"
    )
    if missed:
        print(
            f"# the server fell behind: {missed} scheduled requests were never sent; their latency would have been "
            "at least the lag, so the percentiles above understate it",
            file=sys.stderr,
        )


if __name__ == "__main__":
    main()

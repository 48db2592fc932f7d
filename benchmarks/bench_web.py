"""Benchmark: web latency of the assessment with a three-plan forecast (issues 6 and 17).

Starts the real server (``bonecast serve --workers`` with ``--workers`` processes, default 2, on
127.0.0.1, a free port, each with ``--forecast-processes`` forecast worker processes, default
the server's: one per core in each server process) on a temporary SQLite registry
seeded as ``bonecast demo`` does (``--patients`` synthetic women and the demo clinician, who gets
an API token), then runs bounded load tests with ``--clients`` concurrent clients
(:class:`httpx.AsyncClient`, one connection each) on ``GET /api/v1/patients/{id}/assessment``:

* **baseline**: the assessment without forecast (``forecast_years=0``), ``--requests`` requests,
  and a tenth of them from one client;
* **cold, one client**: the first 5-year-forecast request of ``--single`` patients, one at a
  time (the time of one cold forecast on an idle server);
* **cold, concurrent**: the first request of ``--clients`` other patients, one per client, all
  at once (``--clients`` concurrent cold requests); repeated on ``--cold-rounds`` fresh servers
  on fresh registries (so no assessment is cached or stored) for more samples. Meanwhile a probe
  asks ``/health`` every 50 ms: its latency shows whether forecasts block the event loop;
* **cold, concurrent, in process**: the same once more on a fresh server started with
  ``--forecast-processes 0`` (each server process computes its forecasts one at a time
  itself), the configuration before the forecast pool, for the ratio in the same run;
* **warm**: ``--requests`` requests over the patients of the cold concurrent phase once they
  are cached (the page view of a patient whose chart has not changed since it was computed, or
  was warmed after a write); a worker that did not compute one finds it stored by the other.

Every request stores its assessment as in use (a repeat of the user's latest stored assessment
of the patient with the same input is not stored again). Server-side latency is the
``Server-Timing`` header (``app;dur=``, from the request reaching the application to the
response start); client-side latency is wall time around the request
(:func:`time.perf_counter`), which adds HTTP and the client's own scheduling on the same cores.
Reported: p50/p95/p99 of both, requests per second, errors, and ratios to the baseline measured
in the same run. Goals: warm p95 server-side <= 200 ms and cold concurrent p95 server-side
<= 1.5 s. Writes ``bench_web.json`` and
``bench_web.png`` (CDF of server-side latency per phase) to ``--out``. Exit status 1 if any
request failed.

Usage::

    python benchmarks/bench_web.py [--patients 50] [--clients 20] [--requests 2000]
        [--single 10] [--cold-rounds 2] [--workers 2] [--forecast-processes N]
        [--max-seconds 120] [--out results/bench]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import matplotlib
import psutil

matplotlib.use("Agg")
import numpy as np
from matplotlib.figure import Figure
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

import bonecast
from bonecast.progress import progress_bar
from bonecast.registry import Registry, TokenIn, upgrade
from bonecast.services.demo import DEMO_USERNAME, seed_demo

console = Console(stderr=True)
GOAL_P95_MS = 200.0
GOAL_COLD_P95_MS = 1500.0
HEALTH_EVERY_S = 0.05


@dataclass
class Phase:
    """The latencies (ms) of one phase; ``server_ms`` from the Server-Timing header."""

    name: str
    clients: int
    client_ms: list[float] = field(default_factory=list)
    server_ms: list[float] = field(default_factory=list)
    health_ms: list[float] = field(default_factory=list)
    errors: int = 0
    seconds: float = 0.0
    server_cpu_s: float = 0.0  # the server's processes (server processes, forecast workers)
    client_cpu_s: float = 0.0  # this process: the clients
    machine_busy_s: float = 0.0  # every core of the machine, anything running on it

    def summary(self) -> dict[str, Any]:
        """Counts, requests per second and percentiles."""

        def pct(values: list[float]) -> dict[str, float] | None:
            if not values:
                return None
            p50, p95, p99 = (float(v) for v in np.percentile(values, [50, 95, 99]))
            return {"p50": round(p50, 1), "p95": round(p95, 1), "p99": round(p99, 1)}

        return {
            "clients": self.clients,
            "requests": len(self.client_ms),
            "errors": self.errors,
            "seconds": round(self.seconds, 2),
            "requests_per_s": round(len(self.client_ms) / self.seconds, 1) if self.seconds else 0,
            "client_ms": pct(self.client_ms),
            "server_ms": pct(self.server_ms),
            "health_during_ms": pct(self.health_ms),
            "cpu_s": {
                "server": round(self.server_cpu_s, 2),
                "client": round(self.client_cpu_s, 2),
                "machine_busy": round(self.machine_busy_s, 2),
                "cores": psutil.cpu_count(),
            },
        }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=50, help="demo patients seeded")
    parser.add_argument("--clients", type=int, default=20, help="concurrent clients")
    parser.add_argument("--requests", type=int, default=2000, help="baseline and warm requests")
    parser.add_argument("--single", type=int, default=10, help="cold one-client patients")
    parser.add_argument("--cold-rounds", type=int, default=2, help="fresh servers for cold runs")
    parser.add_argument("--workers", type=int, default=2, help="server processes")
    parser.add_argument(
        "--forecast-processes",
        type=int,
        default=None,
        help="forecast worker processes per server process (default: the server's)",
    )
    parser.add_argument("--max-seconds", type=float, default=120.0, help="cap per phase")
    parser.add_argument("--out", type=Path, default=Path("results/bench"))
    args = parser.parse_args(argv)
    if min(args.patients, args.clients, args.requests, args.cold_rounds, args.workers) < 1:
        parser.error(
            "--patients, --clients, --requests, --cold-rounds and --workers must be positive"
        )
    if not 0 <= args.single <= args.patients - args.clients:
        parser.error("--single must lie in 0 .. --patients - --clients")
    if args.forecast_processes is not None and args.forecast_processes < 0:
        parser.error("--forecast-processes must be 0 or more")
    if not args.out.is_dir():
        parser.error(f"--out: folder {args.out} does not exist")
    return args


def seeded_registry(folder: Path, patients: int) -> tuple[str, str]:
    """A migrated SQLite registry with the demo data, and a bearer token of the demo clinician."""
    folder.mkdir()
    url = f"sqlite:///{folder / 'bench.db'}"
    upgrade(url)
    registry = Registry(url)
    seed_demo(registry, patients=patients)
    with registry.session(actor="system:bench") as session:
        user = next(u for u in session.list_users() if u.username == DEMO_USERNAME)
        _, token = session.create_token(user.id, TokenIn(name="bench"))
    registry.dispose()
    return url, token


def free_port() -> int:
    """A TCP port nobody listens on now (127.0.0.1)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def server(
    database_url: str, workers: int, forecast_processes: int | None, log: Path
) -> Iterator[tuple[str, int]]:
    """``bonecast serve`` in a child process; yields its base URL once /health answers, and
    its process id."""
    port = free_port()
    command = [
        str(Path(sys.executable).with_name("bonecast")),
        "serve",
        "--database",
        database_url,
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    if forecast_processes is not None:
        command += ["--forecast-processes", str(forecast_processes)]
    with log.open("a") as output:
        child = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if child.poll() is not None:
                raise RuntimeError(f"the server exited ({child.returncode}); see {log}")
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not answer within 120 s; see {log}")
            time.sleep(0.2)
        yield base, child.pid
    finally:
        child.terminate()
        child.wait(30)


def tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by process ``pid`` and its live descendants."""
    root = psutil.Process(pid)
    total = 0.0
    for process in [root, *root.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def machine_busy_s() -> float:
    """Core-seconds every core of the machine has spent busy since boot (not idle, not waiting
    for I/O), whatever ran."""
    times = psutil.cpu_times()
    return float(sum(times)) - times.idle - getattr(times, "iowait", 0.0)


def server_ms(response: httpx.Response) -> float:
    """The ``app;dur=`` of the Server-Timing header (ms)."""
    return float(response.headers["Server-Timing"].split("dur=")[1])


async def load(
    base: str,
    token: str,
    phase: Phase,
    paths: Sequence[str],
    max_seconds: float,
    progress: Progress,
    probe_health: bool = False,
) -> None:
    """Request every path of ``paths`` once, ``phase.clients`` at a time (stops at the cap)."""
    task = progress.add_task(f"{phase.name} ({phase.clients} clients)", total=len(paths))
    queue = iter(paths)
    done = asyncio.Event()
    started = time.perf_counter()
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=phase.clients + 1)
    async with httpx.AsyncClient(
        base_url=base, headers=headers, limits=limits, timeout=300
    ) as http:

        async def client() -> None:
            for path in queue:
                if time.perf_counter() - started > max_seconds:
                    return
                start = time.perf_counter()
                response = await http.get(path)
                elapsed = 1000.0 * (time.perf_counter() - start)
                if response.status_code != 200:
                    phase.errors += 1
                else:
                    phase.client_ms.append(elapsed)
                    phase.server_ms.append(server_ms(response))
                progress.advance(task)

        async def health() -> None:
            while not done.is_set():
                start = time.perf_counter()
                await http.get("/health")
                phase.health_ms.append(1000.0 * (time.perf_counter() - start))
                await asyncio.sleep(HEALTH_EVERY_S)

        prober = asyncio.create_task(health()) if probe_health else None
        await asyncio.gather(*(client() for _ in range(phase.clients)))
        phase.seconds += time.perf_counter() - started
        done.set()
        if prober is not None:
            await prober


def assessment_paths(patient_ids: Sequence[int], years: int, count: int) -> list[str]:
    """``count`` assessment requests cycling over the patients."""
    cycle = itertools.cycle(patient_ids)
    return [
        f"/api/v1/patients/{next(cycle)}/assessment?forecast_years={years}" for _ in range(count)
    ]


def run(args: argparse.Namespace, folder: Path) -> dict[str, Phase]:
    """Every phase, each on the server state it needs (see the module docstring)."""
    ids = list(range(1, args.patients + 1))
    single, rest = ids[: args.single], ids[args.single : args.single + args.clients]
    baseline = Phase("baseline (no forecast)", args.clients)
    baseline_one = Phase("baseline, one client", 1)
    one = Phase("cold, one client", 1)
    concurrent = Phase("cold, concurrent", args.clients)
    in_process = Phase("cold, concurrent, in process", args.clients)
    warm = Phase("warm (cached)", args.clients)
    log = folder / "server.log"
    with progress_bar(console) as progress:

        def measure(
            at: tuple[str, str, int], phase: Phase, paths: list[str], probe: bool = False
        ) -> None:
            base, token, pid = at
            server_cpu, client_cpu, busy = tree_cpu_s(pid), time.process_time(), machine_busy_s()
            asyncio.run(load(base, token, phase, paths, args.max_seconds, progress, probe))
            phase.server_cpu_s += tree_cpu_s(pid) - server_cpu
            phase.client_cpu_s += time.process_time() - client_cpu
            phase.machine_busy_s += machine_busy_s() - busy

        pooled = [args.forecast_processes] * args.cold_rounds
        for round_, processes in enumerate([*pooled, 0]):
            # a fresh registry too: stored assessments would serve as a cache across servers
            url, token = seeded_registry(folder / f"round-{round_}", args.patients)
            with server(url, args.workers, processes, log) as (base, pid):
                at = (base, token, pid)
                # untimed: each worker waits for its compiled engine; no 5-year forecast is made
                start_up = Phase("start-up", args.workers)
                measure(at, start_up, assessment_paths(ids, 6, 4 * args.workers))
                if round_ == args.cold_rounds:
                    measure(at, in_process, assessment_paths(rest, 5, len(rest)), probe=True)
                    continue
                if round_ == 0:
                    measure(at, baseline, assessment_paths(ids, 0, args.requests))
                    measure(at, baseline_one, assessment_paths(ids, 0, args.requests // 10))
                    measure(at, one, assessment_paths(single, 5, len(single)))
                measure(at, concurrent, assessment_paths(rest, 5, len(rest)), probe=True)
                if round_ == args.cold_rounds - 1:
                    measure(at, warm, assessment_paths(rest, 5, args.requests))
    phases = (baseline, baseline_one, one, concurrent, in_process, warm)
    return {phase.name: phase for phase in phases}


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b, rounded (``None`` when either is missing)."""
    return round(a / b, 2) if a is not None and b else None


def ratios(summaries: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    """The figures as ratios to the baseline (and cold to warm), all from this run."""

    def server(phase: str, q: str) -> float | None:
        values = summaries[phase]["server_ms"]
        return None if values is None else float(values[q])

    base, base_one, warm = "baseline (no forecast)", "baseline, one client", "warm (cached)"
    one, many = "cold, one client", "cold, concurrent"
    return {
        "warm_p95_over_baseline_p95": ratio(server(warm, "p95"), server(base, "p95")),
        "cold_one_client_p50_over_baseline_one_client_p50": ratio(
            server(one, "p50"), server(base_one, "p50")
        ),
        "cold_one_client_p50_over_warm_p50": ratio(server(one, "p50"), server(warm, "p50")),
        "cold_concurrent_p95_over_warm_p95": ratio(server(many, "p95"), server(warm, "p95")),
        "cold_concurrent_p95_in_process_over_pool": ratio(
            server("cold, concurrent, in process", "p95"), server(many, "p95")
        ),
    }


def table(summaries: dict[str, dict[str, Any]]) -> Table:
    """The figures as a Rich table."""
    out = Table(title="Assessment + 5-year three-plan forecast, loopback")
    for column in (
        "phase",
        "clients",
        "requests",
        "req/s",
        "server p50/p95/p99 ms",
        "client p50/p95/p99 ms",
        "/health p95 ms",
        "errors",
    ):
        out.add_column(column)

    def triple(values: dict[str, float] | None) -> str:
        return "-" if values is None else f"{values['p50']} / {values['p95']} / {values['p99']}"

    for name, s in summaries.items():
        health = s["health_during_ms"]
        out.add_row(
            name,
            str(s["clients"]),
            str(s["requests"]),
            str(s["requests_per_s"]),
            triple(s["server_ms"]),
            triple(s["client_ms"]),
            "-" if health is None else str(health["p95"]),
            str(s["errors"]),
        )
    return out


def plot(phases: dict[str, Phase], path: Path) -> None:
    """CDF of the server-side latency of every phase (log x axis)."""
    figure = Figure(figsize=(7, 4.5))
    axes = figure.add_subplot()
    for phase in phases.values():
        if phase.server_ms:
            values = np.sort(phase.server_ms)
            share = np.arange(1, values.size + 1) / values.size
            label = f"{phase.name}, {phase.clients} clients (n={values.size})"
            axes.step(values, share, where="post", label=label)
    axes.axvline(GOAL_P95_MS, color="grey", linestyle="--", label="goal: p95 <= 200 ms (warm)")
    axes.axvline(GOAL_COLD_P95_MS, color="grey", linestyle="-.", label="goal: p95 <= 1.5 s (cold)")
    axes.axhline(0.95, color="grey", linestyle=":")
    axes.set_xscale("log")
    axes.set_xlabel("server-side latency (ms, Server-Timing)")
    axes.set_ylabel("share of requests")
    axes.set_title("bonecast assessment + 5-year forecast, loopback")
    axes.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; exit status 1 if any request failed."""
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bonecast-bench-web-") as folder:
        phases = run(args, Path(folder))
    summaries = {name: phase.summary() for name, phase in phases.items()}
    warm_p95 = summaries["warm (cached)"]["server_ms"]
    cold_p95 = summaries["cold, concurrent"]["server_ms"]
    result: dict[str, Any] = {
        "benchmark": "bench_web",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "bonecast": bonecast.__version__,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "phases": summaries,
        "ratios": ratios(summaries),
        "goal": {
            "warm_p95_server_ms_at_most": GOAL_P95_MS,
            "met": warm_p95 is not None and warm_p95["p95"] <= GOAL_P95_MS,
            "cold_concurrent_p95_server_ms_at_most": GOAL_COLD_P95_MS,
            "cold_met": cold_p95 is not None and cold_p95["p95"] <= GOAL_COLD_P95_MS,
        },
    }
    (args.out / "bench_web.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(phases, args.out / "bench_web.png")
    console.print(table(summaries))
    console.print(f"ratios: {result['ratios']}")
    for name in ("cold, concurrent", "cold, concurrent, in process"):
        s, cpu = summaries[name], summaries[name]["cpu_s"]
        others = max(0.0, cpu["machine_busy"] - cpu["server"] - cpu["client"])
        idle = max(0.0, cpu["cores"] * s["seconds"] - cpu["machine_busy"])
        console.print(
            f"{name}: {s['seconds']} s wall on {cpu['cores']} cores; CPU-s used by the server "
            f"{cpu['server']}, the clients {cpu['client']}, other work on the machine "
            f"{others:.2f}, idle {idle:.2f}"
        )
    goal = result["goal"]
    console.print(f"goal warm p95 <= {GOAL_P95_MS:g} ms server-side: {goal['met']}")
    console.print(
        f"goal cold p95 <= {GOAL_COLD_P95_MS:g} ms server-side with {args.clients} clients: "
        f"{goal['cold_met']}"
    )
    console.print(f"wrote {args.out / 'bench_web.json'} and {args.out / 'bench_web.png'}")
    return 1 if any(s["errors"] for s in summaries.values()) else 0


if __name__ == "__main__":
    sys.exit(main())

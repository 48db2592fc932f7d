"""``bonecast serve --workers N``: N server processes, each listening on the port itself.

uvicorn's own multi-process mode hands one shared socket to every process, and asyncio accepts
up to 100 waiting connections per wake-up, so one process can take a whole burst of new
connections while the other idles (measured with benchmarks/bench_web.py: throughput flipped
between about 95 and 200 requests/s from run to run). Here every process binds the port with
``SO_REUSEPORT``, and the kernel spreads new connections over the processes.
"""

from __future__ import annotations

import multiprocessing
import socket
from multiprocessing.connection import wait

import uvicorn

from bonecast.api.app import create_app

BACKLOG = 2048
"""Listen backlog of each process (uvicorn's default)."""


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` that other processes may bind too (``SO_REUSEPORT``).

    ``TCP_NODELAY`` is set on it (accepted connections inherit it): asyncio sets it only on
    sockets it creates, and without it a response's body waits for a delayed ACK (~40 ms).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(BACKLOG)
    return sock


def _serve(
    database_url: str, host: str, port: int, scheduler: str | None, forecast_processes: int
) -> None:
    """One server process (the target of each spawned worker)."""
    with listening_socket(host, port) as sock:
        application = create_app(
            database_url, trial_scheduler=scheduler, forecast_processes=forecast_processes
        )
        config = uvicorn.Config(application, host=host, port=port, access_log=False)
        uvicorn.Server(config).run(sockets=[sock])


def run_workers(
    database_url: str,
    host: str,
    port: int,
    workers: int,
    scheduler: str | None = None,
    forecast_processes: int = 0,
) -> int:
    """Run ``workers`` server processes until one stops or Ctrl-C; then stop them all; each
    with ``forecast_processes`` forecast worker processes.

    Returns the exit code of the first process that stopped on its own (0 after Ctrl-C).
    """
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(
            target=_serve,
            args=(database_url, host, port, scheduler, forecast_processes),
            name=f"bonecast-{k}",
        )
        for k in range(workers)
    ]
    for process in processes:
        process.start()
    code = 0
    try:
        ready = wait([process.sentinel for process in processes])
        first = next(p for p in processes if p.sentinel in ready)
        first.join()
        code = first.exitcode or 0
    except KeyboardInterrupt:
        pass
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()  # SIGTERM: uvicorn finishes open requests, then exits
        for process in processes:
            process.join()
    return code

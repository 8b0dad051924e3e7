"""An API worker outlives its supervisor by seconds at most, whatever it is doing.

The supervisor (``plyr-appview serve``) stops its workers on SIGTERM; killed with SIGKILL it
cannot, and the workers must notice on their own. Here the worker is stuck where an
event-loop watch could not help: opening its pool on a database address that accepts
connections and never answers (psycopg would wait 30 s).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

SUPERVISOR = """
import sys, time
from plyr_appview.runtime import ApiWorkers, bind_api_sockets
workers = ApiWorkers(bind_api_sockets("127.0.0.1", 0, 1), sys.argv[1], 1, "INFO")
workers.start()
print(workers.procs[0].pid, flush=True)
time.sleep(600)
"""


# Killed the moment its worker is spawned: the worker's first line runs with its parent gone.
SUPERVISOR_KILLED_AT_SPAWN = """
import os, signal, sys
from plyr_appview.runtime import ApiWorkers, bind_api_sockets
workers = ApiWorkers(bind_api_sockets("127.0.0.1", 0, 1), sys.argv[1], 1, "INFO")
workers.start()
print(workers.procs[0].pid, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its new parent) counts as gone.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] != "Z"


@contextlib.contextmanager
def _supervised_worker(code: str) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """A supervisor running ``code`` (which prints its worker's pid) whose worker's database
    accepts connections and never answers; both are killed afterwards if still alive."""
    silent = socket.create_server(("127.0.0.1", 0))  # accepts (backlog), never answers
    url = f"postgresql://postgres@127.0.0.1:{silent.getsockname()[1]}/nothing"
    supervisor = subprocess.Popen(
        [sys.executable, "-c", code, url],
        env={**os.environ, "DATABASE_URL": url},
        stdout=subprocess.PIPE,
        text=True,
    )
    worker = 0
    try:
        assert supervisor.stdout is not None
        worker = int(supervisor.stdout.readline())
        yield supervisor, worker
    finally:
        if worker and _alive(worker):
            os.kill(worker, signal.SIGKILL)
        if supervisor.poll() is None:
            supervisor.kill()
        silent.close()


def _gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not _alive(pid)


def test_a_worker_stuck_starting_exits_soon_after_its_supervisor_is_killed() -> None:
    with _supervised_worker(SUPERVISOR) as (supervisor, worker):
        time.sleep(2)  # the worker is up and stuck opening its pool
        assert _alive(worker)
        supervisor.send_signal(signal.SIGKILL)
        supervisor.wait()
        assert _gone_within(worker, 8), "the worker outlived its supervisor"


def test_a_worker_whose_supervisor_died_before_its_first_line_exits() -> None:
    """The worker is told its supervisor's pid: by its first line the supervisor may be gone
    already, and a watch of ``getppid()`` then would watch init, forever (the e2e kill -9
    test left such workers behind)."""
    with _supervised_worker(SUPERVISOR_KILLED_AT_SPAWN) as (supervisor, worker):
        supervisor.wait()
        assert _gone_within(worker, 15), "the worker outlived its supervisor"


def test_the_watch_stops_a_process_that_ignores_sigterm() -> None:
    """Graceful first, then outright: a child ignoring SIGTERM still exits after ``grace``."""
    code = (
        "import os, signal, sys, time\n"
        "from plyr_appview.runtime import exit_with_parent\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "exit_with_parent(int(sys.argv[1]), grace=1.0, every=0.1)\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    # The child watches a parent it never had: as if that parent had already died.
    child = subprocess.Popen(
        [sys.executable, "-c", code, str(os.getpid() + 10**6)], stdout=subprocess.PIPE, text=True
    )
    try:
        started = time.monotonic()
        assert child.wait(timeout=10) == 1  # os._exit(1) after the ignored SIGTERM
        assert time.monotonic() - started >= 1.0
    finally:
        if child.poll() is None:
            child.kill()

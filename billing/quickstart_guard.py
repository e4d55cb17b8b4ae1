"""A guard: however the quickstart (or the test command's services launcher) ends, none of its processes outlives it.

`python -m billing.quickstart_guard OWNER_PID`, started by the quickstart in a session of its own (so neither
Ctrl-C nor a closed terminal reaches it), with a pipe on its stdin for messages. Every quarter of a second,
while the quickstart lives, the guard notes every process below it (the quickstart is a child subreaper, so even
the embedded PostgreSQL, which pg_ctl detaches, stays below it). Once the quickstart has ended (or closed the
pipe), it stops whatever of those is left: normally nothing, as the quickstart stops everything itself, but a
quickstart killed outright (SIGKILL) could not. SIGTERM (SIGINT, a fast shutdown, for a PostgreSQL postmaster
named on the pipe as "fast <pid>"), then SIGKILL after 5 seconds.
"""

import contextlib
import ctypes
import os
import select
import signal
import subprocess
import sys
from pathlib import Path

import psutil

POLL_SECONDS = 0.25
KILL_AFTER_SECONDS = 5.0


def _below(owner: psutil.Process) -> dict[int, psutil.Process]:
    try:
        return {child.pid: child for child in owner.children(recursive=True)}
    except psutil.Error:
        return {}


def _ended(owner: psutil.Process) -> bool:
    """The pipe's end is the quickstart's end, unless a process it forked without exec still holds the pipe."""
    try:
        return not owner.is_running() or owner.status() == psutil.STATUS_ZOMBIE
    except psutil.Error:
        return True


def _stop(processes: dict[int, psutil.Process], fast: set[int]) -> None:
    living = []
    for pid, process in processes.items():
        try:
            if process.is_running():  # the same process (psutil compares its start time), not a reused pid
                process.send_signal(signal.SIGINT if pid in fast else signal.SIGTERM)
                living.append(process)
        except psutil.Error:
            continue
    _gone, left = psutil.wait_procs(living, timeout=KILL_AFTER_SECONDS)
    for process in left:
        try:
            process.kill()
        except psutil.Error:
            continue


def guard(owner_pid: int) -> None:
    for name in ("SIGINT", "SIGHUP", "SIGTERM"):  # only the pipe's end stops the guard
        signal.signal(getattr(signal, name), signal.SIG_IGN)
    owner = psutil.Process(owner_pid)
    seen: dict[int, psutil.Process] = {}
    fast: set[int] = set()
    stdin = sys.stdin.fileno()
    buffered = b""
    while not _ended(owner):
        seen.update(_below(owner))
        ready, _, _ = select.select([stdin], [], [], POLL_SECONDS)
        if not ready:
            continue
        chunk = os.read(stdin, 4096)
        if not chunk:
            break
        buffered += chunk
        *lines, buffered = buffered.split(b"\n")
        for line in lines:  # "fast <pid>": a PostgreSQL postmaster, stopped with a fast shutdown
            kind, _, pid = line.decode().partition(" ")
            if kind == "fast" and pid.isdigit():
                fast.add(int(pid))
                with contextlib.suppress(psutil.Error):
                    seen[int(pid)] = psutil.Process(int(pid))
    # Whatever the quickstart stopped itself is gone by now; the rest is stopped here.
    seen = {pid: process for pid, process in seen.items() if pid != os.getpid()}
    _stop(seen, fast)


PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


def _prctl(option: int, value: int) -> None:
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)


# The guard's process, referenced for the life of this one.
_guard: subprocess.Popen[bytes] | None = None


def guard_start() -> None:
    """Make sure no process started by this one outlives it, however it ends (what the quickstart and the test
    command's services launcher call first).

    This process gets SIGTERM when its parent dies, and stays the parent of every process below it that is
    orphaned (the embedded PostgreSQL's postmaster, which pg_ctl detaches); the guard, in a session of its own,
    watches them and stops what is left once this process is gone.
    """
    global _guard
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    _guard = subprocess.Popen(  # noqa: S603  (this interpreter, our module)
        [sys.executable, "-m", "billing.quickstart_guard", str(os.getpid())],
        cwd=str(Path(__file__).resolve().parents[1]),
        stdin=subprocess.PIPE,
        start_new_session=True,
    )


def guard_tell_fast(pid: int) -> None:
    """Tell the guard that `pid` is a PostgreSQL postmaster (stopped with a fast shutdown, SIGINT)."""
    assert _guard is not None and _guard.stdin is not None
    _guard.stdin.write(f"fast {pid}\n".encode())
    _guard.stdin.flush()


if __name__ == "__main__":
    guard(int(sys.argv[1]))

"""What the test command needs, brought up when missing: `python -m tests.services [--embedded] -- COMMAND...`.

`make test` runs the migrations check and pytest through this. It runs COMMAND with DATABASE_URL and REDIS_URL set:
- PostgreSQL: TEST_DATABASE_URL when its server answers; otherwise an embedded PostgreSQL (from the pinned
  requirements) in a temporary folder, stopped afterwards;
- Redis: TEST_REDIS_URL when it answers; otherwise a redis-server on a free port, stopped afterwards. Redis is not
  on PyPI as a server: its binary is Debian's `redis-server` package. When it is missing and this runs as root on
  a machine with apt-get (a fresh Debian box or CI), it is installed with apt-get; otherwise the message says how.
`--embedded` (TEST_SERVICES=embedded in make) skips the probes and always brings up both.
MAINTENANCE_DATABASE_URL names the server's `postgres` database (for `makemigrations --check`, which only needs
a server to ask).
"""

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import redis

from billing.embedded_postgres import embedded_postgres_start
from billing.quickstart_guard import guard_start, guard_tell_fast

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/billing"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/1"
EMBEDDED_DATABASE = "billing"


def say(text: str) -> None:
    print(f"tests.services: {text}", flush=True)


def database_answers(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with psycopg.connect(urlunsplit(parts._replace(path="/postgres")), connect_timeout=3):
            return True
    except psycopg.Error:
        return False


def redis_answers(url: str) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def maintenance_url(url: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/postgres"))


@contextmanager
def embedded_database() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="billing-test-pg-") as folder:
        started = time.monotonic()
        server = embedded_postgres_start(data_dir=Path(folder) / "data")
        guard_tell_fast(server.postmaster_pid)
        server.database_ensure(EMBEDDED_DATABASE)
        say(f"started an embedded PostgreSQL in {folder} ({time.monotonic() - started:.1f} s)")
        try:
            yield server.url(EMBEDDED_DATABASE)
        finally:
            server.stop()


def redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        say("redis-server is not installed: installing Debian's redis-server package (apt-get)")
        env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "redis-server"], check=True, env=env
        )
        found = shutil.which("redis-server")
        if found:
            return found
    sys.exit(
        "tests.services: no Redis answers at TEST_REDIS_URL and redis-server is not installed. Install it "
        "(apt-get install redis-server), or point TEST_REDIS_URL at a running Redis."
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def embedded_redis() -> Iterator[str]:
    binary = redis_binary()
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="billing-test-redis-") as folder:
        server = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            cwd=folder,
            stdout=subprocess.DEVNULL,
        )
        url = f"redis://127.0.0.1:{port}/1"
        try:
            deadline = time.monotonic() + 10
            while not redis_answers(url):
                if server.poll() is not None or time.monotonic() > deadline:
                    sys.exit(f"tests.services: {binary} did not start on port {port}")
                time.sleep(0.05)
            say(f"started redis-server on port {port}")
            yield url
        finally:
            server.terminate()
            server.wait(timeout=10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--embedded", action="store_true", help="always bring up both, whatever answers")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    options = parser.parse_args()
    command = options.command[1:] if options.command[:1] == ["--"] else options.command
    if not command:
        parser.error("give the command to run after --")
    database_url = os.environ.get("TEST_DATABASE_URL") or DEFAULT_DATABASE_URL
    redis_url = os.environ.get("TEST_REDIS_URL") or DEFAULT_REDIS_URL
    # A SIGTERM ends this process through its clean-ups (the services it started are stopped).
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    guard_start()  # and SIGKILL through the guard's
    with ExitStack() as services:
        if options.embedded or not database_answers(database_url):
            if not options.embedded:
                say(f"no PostgreSQL answers at {database_url}")
            database_url = services.enter_context(embedded_database())
        if options.embedded or not redis_answers(redis_url):
            if not options.embedded:
                say(f"no Redis answers at {redis_url}")
            redis_url = services.enter_context(embedded_redis())
        env = os.environ | {
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "MAINTENANCE_DATABASE_URL": maintenance_url(database_url),
        }
        return subprocess.run(command, env=env, check=False).returncode


if __name__ == "__main__":
    sys.exit(main())

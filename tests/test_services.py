"""`make test` on a machine where nothing answers: tests.services brings up PostgreSQL and Redis itself, hands
them to the command, and leaves nothing running afterwards."""

import os
import subprocess
import sys

import pytest
from django.conf import settings

CHECK = """
import os, psycopg, redis
from urllib.parse import unquote, urlsplit
url = urlsplit(os.environ["DATABASE_URL"])
with psycopg.connect(host=unquote(url.hostname or ""), port=url.port, user=url.username, dbname="billing") as conn:
    print("postgres", conn.execute("SHOW server_version").fetchone()[0])
print("redis", redis.Redis.from_url(os.environ["REDIS_URL"]).ping())
"""


@pytest.mark.slow
def test_what_does_not_answer_is_brought_up_and_stopped_afterwards():
    env = {name: value for name, value in os.environ.items() if name not in ("DATABASE_URL", "REDIS_URL")}
    env |= {"TEST_DATABASE_URL": "postgres://postgres@127.0.0.1:9/billing", "TEST_REDIS_URL": "redis://127.0.0.1:9/1"}
    result = subprocess.run(
        [sys.executable, "-m", "tests.services", "--", sys.executable, "-c", CHECK],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no PostgreSQL answers at postgres://postgres@127.0.0.1:9/billing" in result.stdout
    assert "postgres 18." in result.stdout and "redis True" in result.stdout
    folder = result.stdout.split("embedded PostgreSQL in ")[1].split()[0]
    assert not os.path.exists(folder)  # stopped, and its folder removed
    left = subprocess.run(["pgrep", "-f", folder], capture_output=True, text=True, check=False)
    assert left.stdout == ""


def test_the_command_s_exit_status_is_passed_on():
    env = {name: value for name, value in os.environ.items() if name not in ("DATABASE_URL", "REDIS_URL")}
    result = subprocess.run(
        [sys.executable, "-m", "tests.services", "--", sys.executable, "-c", "raise SystemExit(3)"],
        cwd=settings.BASE_DIR,
        env=env | {"TEST_DATABASE_URL": os.environ["DATABASE_URL"], "TEST_REDIS_URL": os.environ["REDIS_URL"]},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 3, result.stdout + result.stderr

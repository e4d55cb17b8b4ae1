"""Settings: strict parsing (a bad value stops start-up naming the variable), production hardening, and an
.env.example that lists every setting the code reads."""

import os
import re
import secrets
import subprocess
import sys

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from config.settings import env_bool, env_choice, env_db_url, env_int, env_url

SETTINGS_SOURCE = (settings.BASE_DIR / "config" / "settings.py").read_text()
ENV_EXAMPLE = (settings.BASE_DIR / ".env.example").read_text()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1", True),
        ("true", True),
        ("Yes", True),
        (" on ", True),
        ("0", False),
        ("FALSE", False),
        ("no", False),
        ("", False),
    ],
)
def test_env_bool_reads_the_usual_spellings(monkeypatch, raw, expected):
    monkeypatch.setenv("SOME_FLAG", raw)
    assert env_bool("SOME_FLAG", not expected) is expected


def test_env_bool_uses_the_default_when_unset(monkeypatch):
    monkeypatch.delenv("SOME_FLAG", raising=False)
    assert env_bool("SOME_FLAG", True) is True


@pytest.mark.parametrize("raw", ["maybe", "2", "truee", "y e s"])
def test_env_bool_refuses_anything_else_naming_the_variable(monkeypatch, raw):
    monkeypatch.setenv("SOME_FLAG", raw)
    with pytest.raises(ImproperlyConfigured, match="SOME_FLAG must be true or false"):
        env_bool("SOME_FLAG", False)


def test_env_int_parses_and_checks_the_minimum(monkeypatch):
    monkeypatch.setenv("SOME_COUNT", "42")
    assert env_int("SOME_COUNT", 1) == 42
    monkeypatch.setenv("SOME_COUNT", "0")
    with pytest.raises(ImproperlyConfigured, match="SOME_COUNT must be at least 1, got 0"):
        env_int("SOME_COUNT", 5, minimum=1)
    monkeypatch.setenv("SOME_COUNT", "11")
    with pytest.raises(ImproperlyConfigured, match="SOME_COUNT must be at most 10, got 11"):
        env_int("SOME_COUNT", 5, minimum=1, maximum=10)


@pytest.mark.parametrize("raw", ["ten", "1.5", "", "0x10"])
def test_env_int_refuses_non_integers_naming_the_variable(monkeypatch, raw):
    monkeypatch.setenv("SOME_COUNT", raw)
    with pytest.raises(ImproperlyConfigured, match="SOME_COUNT must be an integer"):
        env_int("SOME_COUNT", 1)


def test_env_choice(monkeypatch):
    monkeypatch.setenv("SOME_LEVEL", "WARNING")
    assert env_choice("SOME_LEVEL", "INFO", ("INFO", "WARNING")) == "WARNING"
    monkeypatch.setenv("SOME_LEVEL", "LOUD")
    with pytest.raises(ImproperlyConfigured, match="SOME_LEVEL must be one of INFO, WARNING, got 'LOUD'"):
        env_choice("SOME_LEVEL", "INFO", ("INFO", "WARNING"))


@pytest.mark.parametrize("raw", ["localhost:8420", "ftp://example.com", "http://", "stripe"])
def test_env_url_refuses_what_is_not_a_url_of_the_right_kind(monkeypatch, raw):
    monkeypatch.setenv("SOME_URL", raw)
    with pytest.raises(ImproperlyConfigured, match="SOME_URL must be a URL starting with http or https"):
        env_url("SOME_URL", "", schemes=("http", "https"))


def test_env_url_allows_empty_and_good_urls(monkeypatch):
    monkeypatch.setenv("SOME_URL", "")
    assert env_url("SOME_URL", "", schemes=("http",)) == ""
    monkeypatch.setenv("SOME_URL", "http://127.0.0.1:8420")
    assert env_url("SOME_URL", "", schemes=("http",)) == "http://127.0.0.1:8420"


@pytest.mark.parametrize("raw", ["nonsense", "mysql://u@h/db", "postgres//u@h/db", "postgres://"])
def test_env_db_url_refuses_unusable_database_urls(monkeypatch, raw):
    monkeypatch.setenv("SOME_DB", raw)
    with pytest.raises(ImproperlyConfigured, match="SOME_DB"):
        env_db_url("SOME_DB", "postgres://u@h/db")


@pytest.mark.parametrize("raw", ["sqlite:///x.sqlite3", "sqlite://:memory:"])
def test_a_database_other_than_postgresql_is_refused_saying_why(monkeypatch, raw):
    monkeypatch.setenv("SOME_DB", raw)
    with pytest.raises(ImproperlyConfigured, match="PostgreSQL is the only database"):
        env_db_url("SOME_DB", "postgres://u@h/db")


def test_a_sqlite_database_url_stops_start_up_with_the_reason():
    result = manage("check", DEBUG="true", DATABASE_URL="sqlite:///db.sqlite3")
    assert result.returncode != 0
    assert "DATABASE_URL must be a PostgreSQL URL" in result.stderr and "only database" in result.stderr


def test_env_db_url_parses_postgres(monkeypatch):
    monkeypatch.setenv("SOME_DB", "postgres://app:pw@db.internal:5433/billing")
    config = env_db_url("SOME_DB", "")
    assert (config["ENGINE"], config["NAME"], config["PORT"]) == ("django.db.backends.postgresql", "billing", 5433)


def manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """manage.py in a clean environment (only PATH and what is given), as a fresh production box would run it."""
    clean = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", str(settings.BASE_DIR)),
        **env,
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=settings.BASE_DIR,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def production(**overrides: str) -> dict[str, str]:
    return {
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(64),
        "ALLOWED_HOSTS": "billing.example.com",
        "CSRF_TRUSTED_ORIGINS": "https://billing.example.com",
        "SITE_URL": "https://billing.example.com",
        "DATABASE_URL": "postgres://billing@127.0.0.1:5432/billing",
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        "STRIPE_SECRET_KEY": "sk_live_" + "x" * 24,
        "STRIPE_PUBLISHABLE_KEY": "pk_live_" + "x" * 24,
        "STRIPE_WEBHOOK_SECRET": "whsec_" + secrets.token_hex(16),
        **overrides,
    }


def test_production_settings_pass_the_deploy_checks():
    result = manage("check", "--deploy", "--fail-level", "WARNING", **production())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"DEBUG": "maybe"}, "DEBUG must be true or false, got 'maybe'"),
        ({"DATABASE_URL": "nonsense"}, "DATABASE_URL must be a PostgreSQL URL"),
        ({"DB_POOL_SIZE": "many"}, "DB_POOL_SIZE must be an integer"),
        ({"GATEWAY_DB_POOL_SIZE": "0"}, "GATEWAY_DB_POOL_SIZE must be at least 1"),
        ({"GATEWAY_MAX_CALL_SECONDS": "0"}, "GATEWAY_MAX_CALL_SECONDS must be at least 1"),
        ({"GATEWAY_MAX_CALL_SECONDS": "86400"}, "GATEWAY_MAX_CALL_SECONDS must be at most 21600"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL must be one of"),
        ({"STRIPE_API_BASE": "localhost:8420"}, "STRIPE_API_BASE must be a URL"),
        ({"UPSTREAM_BASE_URL": "vllm:8000"}, "UPSTREAM_BASE_URL must be a URL"),
        ({"UPSTREAM_BASE_URL": "https://user:sk-1@api.example.com/v1"}, "UPSTREAM_BASE_URL must have no credentials"),
        ({"UPSTREAM_BASE_URL": "https://api.example.com/v1?x=1"}, "UPSTREAM_BASE_URL must have no credentials"),
        ({"SECURE_SSL_REDIRECT": "sometimes"}, "SECURE_SSL_REDIRECT must be true or false"),
        ({"EMAIL_URL": "bogus"}, "EMAIL_URL"),
    ],
)
def test_a_bad_value_stops_start_up_with_a_message_naming_the_variable(overrides, message):
    result = manage("check", **production(**overrides))
    assert result.returncode != 0
    assert message in result.stderr


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        # A live key would be sent to whoever listens there.
        ({"STRIPE_API_BASE": "http://localhost:8420"}, "STRIPE_API_BASE is 'http://localhost:8420', which is not"),
        ({"STRIPE_API_BASE": "https://api.stripe.com.attacker.example"}, "which is not Stripe"),
        ({"STRIPE_PUBLISHABLE_KEY": "pk_test_abc"}, "must both be live keys or both test keys"),
    ],
)
def test_stripe_keys_that_do_not_fit_the_site_stop_start_up(overrides, message):
    result = manage("check", **production(**overrides))
    assert result.returncode != 0
    assert message in result.stderr


@pytest.mark.parametrize(
    "overrides",
    [
        {"STRIPE_API_BASE": "https://api.stripe.com"},
        # A staging site that says it runs on test keys, against a stand-in.
        {
            "STRIPE_SECRET_KEY": "sk_test_abc",
            "STRIPE_PUBLISHABLE_KEY": "pk_test_abc",
            "STRIPE_ALLOW_TEST_KEYS": "true",
            "STRIPE_API_BASE": "http://localhost:8420",
        },
    ],
)
def test_stripe_keys_that_fit_the_site_start(overrides):
    result = manage("check", **production(**overrides))
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"SECRET_KEY": ""}, "SECRET_KEY must be set when DEBUG is false"),
        ({"ALLOWED_HOSTS": ""}, "ALLOWED_HOSTS must be set when DEBUG is false"),
        # Test keys in production: orders no card pays for.
        (
            {"STRIPE_SECRET_KEY": "sk_test_abc", "STRIPE_PUBLISHABLE_KEY": "pk_test_abc"},
            "STRIPE_SECRET_KEY is a test key while DEBUG is false",
        ),
    ],
)
def test_a_site_unfit_for_production_stops_its_processes_not_the_tools(overrides, message):
    env = production(**overrides)
    deploy_check = manage("check", "--deploy", **env)
    assert deploy_check.returncode != 0
    assert message in deploy_check.stderr
    for process in (
        "import config.asgi",
        "import config.wsgi",
        "import config; from celery import signals; signals.worker_init.send(sender=None)",
    ):
        started = subprocess.run(
            [sys.executable, "-c", process],
            cwd=settings.BASE_DIR,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert started.returncode != 0, process
        assert message in started.stderr, process
    # Tools that need no secret still run (a build box checking migrations has no production settings).
    tool = manage("makemigrations", "--check", "--dry-run", **env)
    assert tool.returncode == 0, tool.stderr


def test_the_debug_warning_of_the_deploy_check_is_not_silenced():
    result = manage("check", "--deploy", "--fail-level", "WARNING", **production(DEBUG="true"))
    assert result.returncode != 0
    assert "security.W018" in result.stderr


# Every way config/settings.py reads a variable: env.str("X"...), env.list("X"...), env_bool("X"...), ...
ENV_READ = re.compile(r"\benv(?:\.[a-z_]+|_[a-z_]+)\(\s*\"([A-Z][A-Z0-9_]*)\"")


def test_env_example_lists_every_setting_the_code_reads():
    names = set(ENV_READ.findall(SETTINGS_SOURCE))
    assert {"DEBUG", "SECRET_KEY", "DATABASE_URL", "STRIPE_API_BASE", "UPSTREAM_BASE_URL"} <= names  # the grep works
    listed = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE, re.M))
    missing = sorted(names - listed)
    assert missing == [], f"add these to .env.example, each with a comment: {missing}"

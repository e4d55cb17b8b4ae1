"""The Procfile is part of the operator contract: web (ASGI, on $PORT), worker and beat."""

from django.conf import settings


def processes() -> dict[str, str]:
    lines = (settings.BASE_DIR / "Procfile").read_text().splitlines()
    return dict(line.split(":", 1) for line in lines if line.strip() and not line.startswith("#"))


def test_the_procfile_runs_web_worker_and_beat():
    found = processes()
    assert set(found) == {"web", "worker", "beat"}
    assert "uvicorn config.asgi:application" in found["web"] and "${PORT" in found["web"]
    assert "celery -A config worker" in found["worker"]
    assert "celery -A config beat" in found["beat"]

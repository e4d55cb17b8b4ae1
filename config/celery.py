import os

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("config")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.worker_init.connect
@signals.beat_init.connect
def _unfit_refuse(**kwargs: object) -> None:
    # A worker or beat on a site not fit for production stops here, as the web process does (core.startup).
    # SystemExit, because Celery logs and ignores the exceptions of signal handlers.
    from django.core.exceptions import ImproperlyConfigured

    from core.startup import unfit_refuse

    try:
        unfit_refuse()
    except ImproperlyConfigured as exc:
        raise SystemExit(f"ImproperlyConfigured: {exc}") from exc

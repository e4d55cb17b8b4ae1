"""The processes that serve refuse to start on a site that is not fit for production (settings.PRODUCTION_PROBLEMS:
a missing SECRET_KEY or ALLOWED_HOSTS, test Stripe keys without DEBUG); `check --deploy` reports the same."""

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error
from django.core.exceptions import ImproperlyConfigured


def unfit_refuse() -> None:
    """Raise ImproperlyConfigured naming every problem; called by the web (ASGI, WSGI) and Celery processes."""
    if settings.PRODUCTION_PROBLEMS:
        raise ImproperlyConfigured("; ".join(settings.PRODUCTION_PROBLEMS))


def production_problems_check(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """The deploy check (`manage.py check --deploy`) of the same problems."""
    return [Error(problem, id="config.E001") for problem in settings.PRODUCTION_PROBLEMS]

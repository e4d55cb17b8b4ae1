import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

django_application = get_asgi_application()

from core.startup import unfit_refuse  # noqa: E402

unfit_refuse()

# The metered API refuses oversized bodies before Django reads them (imported once Django is set up).
from api.gateway.asgi import gateway_asgi  # noqa: E402

application = gateway_asgi(django_application)

"""The metered API's handler copies Django's ASGIHandler.handle, less the request signals (api.gateway.asgi). This
fails when Django's changes, so that the copy is compared with the new one on every Django upgrade."""

import hashlib
import inspect

from django.core.handlers.asgi import ASGIHandler

# sha256 of the source of ASGIHandler.handle in Django 5.2.19, which GatewayHandler.handle follows.
DJANGO_HANDLE_SHA256 = "98faeb5bef800331e6a8002fbc96b30e4122a23438ae45a047190a531ea11323"


def test_djangos_handler_is_the_one_the_gateway_copied():
    source = inspect.getsource(ASGIHandler.handle)
    assert hashlib.sha256(source.encode()).hexdigest() == DJANGO_HANDLE_SHA256

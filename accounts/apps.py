from django.apps import AppConfig
from django.core import checks


class AccountsConfig(AppConfig):
    name = "accounts"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_login_failed

        from accounts.login_throttle import login_failed_receiver
        from core.startup import production_problems_check

        checks.register(production_problems_check, checks.Tags.security, deploy=True)
        # Every failed authenticate() counts towards the shared log-in throttle, whichever view made it.
        user_login_failed.connect(login_failed_receiver, dispatch_uid="accounts.login_throttle")

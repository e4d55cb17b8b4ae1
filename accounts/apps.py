from django.apps import AppConfig
from django.core import checks


class AccountsConfig(AppConfig):
    name = "accounts"

    def ready(self) -> None:
        from core.startup import production_problems_check

        checks.register(production_problems_check, checks.Tags.security, deploy=True)

from django.apps import AppConfig

from core.lookups import lookups_register


class InvoicingConfig(AppConfig):
    name = "billing.invoicing"
    label = "invoicing"

    def ready(self) -> None:
        # `__any`: the close filters on a thousand ids at a time (see core.lookups).
        lookups_register()

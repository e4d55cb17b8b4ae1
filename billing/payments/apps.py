from django.apps import AppConfig


class PaymentsConfig(AppConfig):
    name = "billing.payments"
    label = "payments"

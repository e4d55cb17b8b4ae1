from django.apps import AppConfig


class UsageConfig(AppConfig):
    name = "billing.usage"
    label = "usage"

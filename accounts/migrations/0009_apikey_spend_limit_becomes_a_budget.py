"""ApiKey.spend_limit_nano and spend_limit_period go: a key's spend limit is a hard budget of the key now
(billing.metering.Budget), made from them by the metering migration this one waits for."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0008_apikey_rate_limits"),
        ("metering", "0003_key_spend_limits_become_budgets"),
    ]

    operations = [
        migrations.RemoveConstraint(model_name="apikey", name="apikey_spend_limit_with_period"),
        migrations.RemoveConstraint(model_name="apikey", name="apikey_access_valid"),
        migrations.AddConstraint(
            model_name="apikey",
            constraint=models.CheckConstraint(
                condition=models.Q(("access", "metered"), models.Q(("access", "admin"), ("scope_endpoints", []), ("scope_models", [])), _connector="OR"),
                name="apikey_access_valid",
            ),
        ),
        migrations.RemoveField(model_name="apikey", name="spend_limit_nano"),
        migrations.RemoveField(model_name="apikey", name="spend_limit_period"),
    ]

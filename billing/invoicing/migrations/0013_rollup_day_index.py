from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("invoicing", "0012_month_rollup")]

    operations = [
        migrations.AddIndex(
            model_name="dailyrollup",
            index=models.Index(fields=["day"], name="invoicing_rollup_day"),
        ),
    ]

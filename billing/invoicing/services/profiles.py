"""Staff's settings of how an organization is invoiced (audited)."""

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from accounts.models import Organization
from accounts.services.audit import audit_record
from billing.invoicing.errors import InvoiceNotFound
from billing.invoicing.models import BillingProfile, CollectionMethod
from core.errors import ApplicationError


@transaction.atomic
def billing_profile_set(
    *,
    organization_id: int,
    anchor_day: int,
    collection_method: str,
    days_until_due: int,
    progressive_threshold_nano: int | None = None,
    actor: AbstractBaseUser | str | None,
    reason: str = "",
) -> BillingProfile:
    """Set the anchor day (1..28: the day periods start; the period already running keeps its end and the next
    one is shortened to the new day), the collection method, the net terms of sent invoices, and the postpaid debt
    that triggers a mid-period invoice (None: the INVOICE_PROGRESSIVE_THRESHOLD setting); `reason` is kept in the
    audit log."""
    if not Organization.objects.filter(pk=organization_id).exists():
        raise InvoiceNotFound(f"No organization {organization_id}.", param="organization_id")
    if isinstance(anchor_day, bool) or not isinstance(anchor_day, int) or not 1 <= anchor_day <= 28:
        raise ApplicationError("anchor_day must be a day of the month from 1 to 28", param="anchor_day")
    if collection_method not in CollectionMethod.values:
        raise ApplicationError(
            f"collection_method must be one of {', '.join(CollectionMethod.values)}", param="collection_method"
        )
    if isinstance(days_until_due, bool) or not isinstance(days_until_due, int) or not 1 <= days_until_due <= 365:
        raise ApplicationError("days_until_due must be from 1 to 365", param="days_until_due")
    if progressive_threshold_nano is not None and (
        isinstance(progressive_threshold_nano, bool)
        or not isinstance(progressive_threshold_nano, int)
        or progressive_threshold_nano <= 0
    ):
        raise ApplicationError("progressive_threshold must be greater than zero", param="progressive_threshold")
    profile, _ = BillingProfile.objects.select_for_update().get_or_create(organization_id=organization_id)
    fields = ("anchor_day", "collection_method", "days_until_due", "progressive_threshold_nano")
    previous = {f: getattr(profile, f) for f in fields}
    profile.anchor_day = anchor_day
    profile.collection_method = collection_method
    profile.days_until_due = days_until_due
    profile.progressive_threshold_nano = progressive_threshold_nano
    profile.save()
    audit_record(
        actor=actor,
        action="invoicing.billing_profile.set",
        organization_id=organization_id,
        target=f"BillingProfile:{profile.pk}",
        reason=reason,
        detail={
            "previous": previous,
            "new": {f: getattr(profile, f) for f in fields},
        },
    )
    return profile

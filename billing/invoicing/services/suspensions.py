"""Staff suspending an organization's postpaid use by hand, and lifting a suspension (dunning's or their own),
each with a reason in the audit log. The suspension itself is dunning's: the overdraft withdrawn (the limit lowered
to what the wallet already owes), given back when lifted."""

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from accounts.models import Organization
from accounts.services.audit import audit_record
from billing.invoicing.errors import InvoiceConflict, InvoiceNotFound
from billing.invoicing.models import Suspension
from billing.ledger import services as ledger
from billing.ledger.models import Wallet
from core.errors import ApplicationError
from core.money import format_amount

MAX_REASON = 500


def _reason_clean(reason: object) -> str:
    if not isinstance(reason, str) or not reason.strip():
        raise ApplicationError("Say why (the reason is kept in the audit log).", param="reason")
    if len(reason.strip()) > MAX_REASON:
        raise ApplicationError(f"The reason must be at most {MAX_REASON} characters.", param="reason")
    return reason.strip()


@transaction.atomic
def postpaid_suspend_manual(*, organization_id: int, reason: str, actor: AbstractBaseUser | str) -> Suspension:
    """Suspend the organization's postpaid use now, for a reason staff give (not an unpaid invoice)."""
    reason = _reason_clean(reason)
    if not Organization.objects.filter(pk=organization_id).exists():
        raise InvoiceNotFound(f"No organization {organization_id}.", param="organization_id")
    wallet = ledger.wallet_get_or_create(organization_id=organization_id)
    wallet = Wallet.objects.select_for_update().get(pk=wallet.pk)
    # Under the wallet's lock: one suspension at a time (the partial unique index refuses a second open one too).
    if Suspension.objects.filter(organization_id=organization_id, lifted_at__isnull=True).exists():
        raise InvoiceConflict("Postpaid use of this organization is already suspended.", param="organization_id")
    suspension = Suspension.objects.create(
        organization_id=organization_id, reason=reason, overdraft_limit_before_nano=wallet.overdraft_limit_nano
    )
    ledger.wallet_overdraft_set(
        organization_id=organization_id,
        overdraft_limit_nano=min(wallet.overdraft_limit_nano, max(0, -wallet.available_nano)),
        actor=actor,
        reason=f"postpaid use suspended by staff: {reason}",
    )
    audit_record(
        actor=actor,
        action="invoicing.postpaid_suspend",
        organization_id=organization_id,
        target=f"Suspension:{suspension.pk}",
        reason=reason,
        detail={"overdraft_limit_before": format_amount(wallet.overdraft_limit_nano)},
    )
    return suspension


@transaction.atomic
def postpaid_restore_manual(*, organization_id: int, reason: str, actor: AbstractBaseUser | str) -> Suspension:
    """Lift the organization's open suspension (by hand or for an invoice) and give its overdraft back. An invoice
    still overdue is suspended again by the next dunning run unless it is paid or settled."""
    reason = _reason_clean(reason)
    if not Organization.objects.filter(pk=organization_id).exists():
        raise InvoiceNotFound(f"No organization {organization_id}.", param="organization_id")
    wallet = ledger.wallet_get_or_create(organization_id=organization_id)
    wallet = Wallet.objects.select_for_update().get(pk=wallet.pk)
    suspension = (
        Suspension.objects.select_for_update().filter(organization_id=organization_id, lifted_at__isnull=True).first()
    )
    if suspension is None:
        raise InvoiceConflict("Postpaid use of this organization is not suspended.", param="organization_id")
    ledger.wallet_overdraft_set(
        organization_id=organization_id,
        overdraft_limit_nano=max(suspension.overdraft_limit_before_nano, wallet.overdraft_limit_nano),
        actor=actor,
        reason=f"postpaid use restored by staff: {reason}",
    )
    suspension.lifted_at = timezone.now()
    suspension.save(update_fields=["lifted_at"])
    audit_record(
        actor=actor,
        action="invoicing.postpaid_restore",
        organization_id=organization_id,
        target=f"Suspension:{suspension.pk}",
        reason=reason,
        detail={
            "overdraft_limit": format_amount(max(suspension.overdraft_limit_before_nano, wallet.overdraft_limit_nano))
        },
    )
    return suspension

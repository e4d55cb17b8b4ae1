"""Reads of the payments area: receipts, top-ups, auto top-up state, refunds."""

from dataclasses import dataclass

from django.db.models import QuerySet

from billing.payments.errors import NotFound
from billing.payments.models import AutoTopUp, ExternalRefund, Refund, StripeEvent, TopUp
from billing.payments.services.auto_topup import auto_topup_over_cap, auto_topup_spent_today


def topups_recent(*, organization_id: int, limit: int = 10) -> list[TopUp]:
    """The organization's latest top-up attempts (paid, failed, in flight), newest first."""
    return list(TopUp.objects.filter(organization_id=organization_id).order_by("-created_at", "-id")[:limit])


def receipts_list(*, organization_id: int) -> QuerySet[TopUp]:
    """Paid top-ups (receipts), newest first."""
    return TopUp.objects.filter(organization_id=organization_id, status=TopUp.Status.SUCCEEDED).order_by(
        "-succeeded_at", "-id"
    )


def topup_get(*, organization_id: int, top_up_id: int) -> TopUp:
    """One of the organization's top-ups; another organization's reads exactly like an unknown id."""
    top_up = TopUp.objects.filter(pk=top_up_id, organization_id=organization_id).first()
    if top_up is None:
        raise NotFound("top-up not found", param="top_up_id")
    return top_up


def receipt_get(*, organization_id: int, top_up_id: int) -> TopUp:
    top_up = receipts_list(organization_id=organization_id).filter(pk=top_up_id).first()
    if top_up is None:
        raise NotFound("receipt not found", param="top_up_id")
    return top_up


@dataclass(frozen=True)
class AutoTopUpState:
    config: AutoTopUp | None
    in_flight: TopUp | None
    spent_today_nano: int
    recent: list[TopUp]

    @property
    def cap_reached(self) -> bool:
        config = self.config
        if config is None or not config.enabled:
            return False
        return auto_topup_over_cap(config=config, spent_today_nano=self.spent_today_nano)


def auto_topup_state(*, organization_id: int) -> AutoTopUpState:
    config = AutoTopUp.objects.filter(organization_id=organization_id).first()
    automatic = TopUp.objects.filter(organization_id=organization_id, kind=TopUp.Kind.AUTO)
    return AutoTopUpState(
        config=config,
        in_flight=automatic.filter(status__in=TopUp.IN_FLIGHT).first(),
        spent_today_nano=auto_topup_spent_today(organization_id=organization_id),
        recent=list(automatic.order_by("-created_at", "-id")[:10]),
    )


def auto_topup_enabled(*, organization_id: int) -> AutoTopUp | None:
    """The organization's auto top-up settings when it is on (None when off or never set up)."""
    return AutoTopUp.objects.filter(organization_id=organization_id, enabled=True).first()


def saved_card(*, organization_id: int) -> AutoTopUp | None:
    """The organization's saved card (the one auto top-up charges), which a manual top-up may use too."""
    return AutoTopUp.objects.filter(organization_id=organization_id).exclude(stripe_payment_method_id="").first()


def topups_for_staff(*, organization_id: int | None = None, status: str | None = None) -> QuerySet[TopUp]:
    queryset = TopUp.objects.select_related("organization").order_by("-created_at", "-id")
    if organization_id is not None:
        queryset = queryset.filter(organization_id=organization_id)
    if status is not None:
        queryset = queryset.filter(status=status)
    return queryset


def refunds_list(*, organization_id: int | None = None, top_up_id: int | None = None) -> QuerySet[Refund]:
    queryset = Refund.objects.select_related("top_up", "created_by").order_by("-created_at", "-id")
    if organization_id is not None:
        queryset = queryset.filter(top_up__organization_id=organization_id)
    if top_up_id is not None:
        queryset = queryset.filter(top_up_id=top_up_id)
    return queryset


def receipt_refunds(*, top_up: TopUp) -> list[Refund | ExternalRefund]:
    """Every refund of a top-up, oldest first: staff refunds and refunds made in Stripe alike."""
    refunds: list[Refund | ExternalRefund] = [*top_up.refunds.all(), *top_up.external_refunds.all()]
    return sorted(refunds, key=lambda refund: refund.created_at)


def stripe_events_for_staff(
    *, status: str | None = None, payment_intent_id: str | None = None
) -> QuerySet[StripeEvent]:
    """Stored Stripe events, newest first: those that wait for their payment, or failed, are what staff look into."""
    events = StripeEvent.objects.order_by("-received_at", "-id")
    if status is not None:
        events = events.filter(status=status)
    if payment_intent_id is not None:
        events = events.filter(payment_intent_id=payment_intent_id)
    return events

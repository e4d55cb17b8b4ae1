"""Forms of the customer pages. They check shapes (numbers, dates, choices); the services check the rules, and
their errors come back onto the form's fields through `form_error_from`."""

from datetime import date, timedelta
from typing import Any

from django import forms
from django.db.models import QuerySet
from django.utils import timezone

from accounts.ids import is_id_text
from accounts.models import ApiKey, ApiKeyAccess, ApiKeyEndpoint, Role
from accounts.services.apikeys import MAX_KEY_REQUESTS_PER_MINUTE, MAX_KEY_TOKENS_PER_MINUTE, MAX_ROTATION_OVERLAP
from accounts.services.organizations import NAME_MAX_LENGTH
from billing.metering.models import BudgetPeriod
from billing.notifications.models import MAX_EXPIRY_WINDOW_DAYS
from billing.pricing.models import AIModel
from billing.usage.selectors import DIMENSION_LABELS, DIMENSIONS, NO_WORKFLOW_LABEL
from core.errors import ApplicationError
from core.money import AmountError, format_amount, parse_amount

DATETIME_INPUT_FORMATS = ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d"]
# The usage page charts up to a year at once; the CSV export streams any range up to ten years.
USAGE_PAGE_MAX_DAYS = 366
USAGE_EXPORT_MAX_DAYS = 3660
# Usage dates a person may pick. Far enough from year 1 and 9999 that the default range (30 days back) and the end
# of the last day (a day forward) stay in the calendar, which would otherwise raise OverflowError.
USAGE_FIRST_DATE = date(2000, 1, 1)
USAGE_LAST_DATE = date(2999, 12, 31)


def form_error_from(form: forms.Form, error: ApplicationError, fields: dict[str, str] | None = None) -> None:
    """Attach a service's error to the form field it names (its `param`), or to the whole form."""
    mapping = fields or {}
    field = mapping.get(error.param or "", error.param)
    form.add_error(field if field in form.fields else None, error.message)


def amount_clean(raw: str, *, field_label: str) -> int:
    try:
        return parse_amount(raw.strip().lstrip("$").replace(",", ""))
    except AmountError as error:
        raise forms.ValidationError(f"{field_label}: {error}") from None


class ApiKeyForm(forms.Form):
    """Create or edit a key. Empty scope lists allow everything. The spend limit is a shortcut onto the key's hard
    budget (billing.metering.budgets.services.key_spend_limit_set): `spend_limit_change` says what to do with it."""

    name = forms.CharField(max_length=200, help_text="For you: what or who uses this key.")
    access = forms.ChoiceField(
        choices=ApiKeyAccess.choices,
        initial=ApiKeyAccess.METERED,
        required=False,  # absent: a metered key
        label="Kind",
        help_text="An admin key reads the organization's costs, usage and balance (/v1/organization/...) for your "
        "programs and calls no model; it takes no scopes or limit. Only owners create admin keys.",
    )
    workflow = forms.CharField(
        max_length=100,
        required=False,
        label="Workflow label",
        help_text="Optional. Usage made with this key is attributed to this workflow unless a request names one.",
    )
    endpoints = forms.MultipleChoiceField(
        choices=ApiKeyEndpoint.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label="Allowed endpoints",
        help_text="None ticked: every endpoint.",
    )
    models = forms.MultipleChoiceField(
        choices=(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        label="Allowed models",
        help_text="None ticked: every model.",
    )
    spend_limit = forms.CharField(
        max_length=30,
        required=False,
        label="Spend limit",
        help_text="Optional, in your currency, e.g. 25.00. Requests beyond it are refused until the period ends. "
        "It is the key's hard budget for the period: change or remove it here or on the budgets page.",
    )
    spend_limit_period = forms.ChoiceField(
        choices=[("", "—"), *BudgetPeriod.choices], required=False, label="Limit period (UTC calendar)"
    )
    requests_per_minute = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_KEY_REQUESTS_PER_MINUTE,
        label="Requests per minute",
        help_text="Optional: this key's own limit, inside the organization's (which still applies).",
    )
    tokens_per_minute = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_KEY_TOKENS_PER_MINUTE,
        label="Tokens per minute",
        help_text="Optional: prompt plus max_tokens of the calls in a minute, inside the organization's limit.",
    )
    expires_at = forms.DateTimeField(
        required=False,
        label="Expires at (UTC)",
        input_formats=DATETIME_INPUT_FORMATS,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        help_text="Optional. The key stops working at this time.",
    )

    def __init__(
        self,
        *args: Any,
        api_key: ApiKey | None = None,
        limit: tuple[int, str] | None = None,
        model_slugs: list[str],
        **kwargs: Any,
    ):
        """`limit`: the key's spend limit (amount in nano-units, period) when it has exactly one."""
        if api_key is not None and "initial" not in kwargs:
            kwargs["initial"] = {
                "name": api_key.name,
                "workflow": api_key.workflow,
                "endpoints": api_key.scope_endpoints,
                "models": api_key.scope_models,
                "spend_limit": _amount_text(limit[0] if limit else None),
                "spend_limit_period": limit[1] if limit else "",
                "requests_per_minute": api_key.requests_per_minute,
                "tokens_per_minute": api_key.tokens_per_minute,
                "expires_at": api_key.expires_at.replace(second=0, microsecond=0) if api_key.expires_at else None,
            }
        super().__init__(*args, **kwargs)
        slugs = sorted({*model_slugs, *(api_key.scope_models if api_key else [])})
        self.fields["models"].choices = [(slug, slug) for slug in slugs]  # type: ignore[attr-defined]
        if api_key is not None and api_key.replaced_by_id is not None:
            # A rotated key expires at the end of its overlap window; that is not editable.
            del self.fields["expires_at"]
        if api_key is not None:
            del self.fields["access"]  # chosen at creation, for good

    def clean_spend_limit(self) -> int | None:
        raw = self.cleaned_data["spend_limit"].strip()
        return amount_clean(raw, field_label="Spend limit") if raw else None

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        limit, period = data.get("spend_limit"), data.get("spend_limit_period")
        if limit is not None and not period:
            self.add_error("spend_limit_period", "Choose the period the spend limit applies to.")
        if period and limit is None and "spend_limit" not in self.errors:
            self.add_error("spend_limit", "Enter the amount of the limit, or choose no period.")
        if limit is not None and data.get("access") == ApiKeyAccess.ADMIN:
            self.add_error("spend_limit", "An admin key calls no model: it takes no spend limit.")
        return data

    def spend_limit_change(self, *, changed_only: bool) -> tuple[int | None, str] | None:
        """(amount in nano-units, period) to set the key's limit to, (None, "") to remove its limits, or None to
        leave them as they are (nothing given at creation, nothing changed when editing)."""
        data = self.cleaned_data
        if changed_only and not set(self.changed_data) & {"spend_limit", "spend_limit_period"}:
            return None
        if data["spend_limit"] is None:
            return None if not changed_only else (None, "")
        return data["spend_limit"], data["spend_limit_period"]

    def service_arguments(self, *, changed_only: bool) -> dict[str, Any]:
        """Keyword arguments for apikey_create / apikey_update (only what changed, when editing)."""
        data = self.cleaned_data
        changed = set(self.changed_data)
        arguments: dict[str, Any] = {}
        if not changed_only or "name" in changed:
            arguments["name"] = data["name"]
        if not changed_only or "workflow" in changed:
            arguments["workflow"] = data["workflow"].strip()
        if not changed_only or changed & {"endpoints", "models"}:
            arguments["scopes"] = {"endpoints": data["endpoints"], "models": data["models"]}
        for limit in ("requests_per_minute", "tokens_per_minute"):
            if not changed_only or limit in changed:
                arguments[limit] = data[limit]
        if "expires_at" in self.fields and (not changed_only or "expires_at" in changed):
            arguments["expires_at"] = data["expires_at"]
        if "access" in self.fields and not changed_only:
            arguments["access"] = data.get("access") or ApiKeyAccess.METERED
        return arguments


# Service error params -> fields of ApiKeyForm.
APIKEY_ERROR_FIELDS = {
    "scopes": "endpoints",
    "scopes.endpoints": "endpoints",
    "scopes.models": "models",
    "overlap_seconds": "overlap_hours",
    # key_spend_limit_set's (budget) errors
    "amount": "spend_limit",
    "period": "spend_limit_period",
    "api_key_id": "spend_limit",
}


def _amount_text(amount_nano: int | None) -> str:
    return format_amount(amount_nano) if amount_nano is not None else ""


class RotateForm(forms.Form):
    overlap_hours = forms.IntegerField(
        min_value=0,
        max_value=int(MAX_ROTATION_OVERLAP.total_seconds() // 3600),
        initial=24,
        label="Overlap (hours)",
        help_text="How long the current secret keeps working beside the new one: 0 to 720 hours (30 days).",
    )


class InviteForm(forms.Form):
    email = forms.EmailField(max_length=254)
    role = forms.ChoiceField(choices=Role.choices, initial=Role.DEVELOPER)


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)


class OrganizationForm(forms.Form):
    name = forms.CharField(max_length=NAME_MAX_LENGTH, label="Organization name")


class NotificationSettingsForm(forms.Form):
    low_balance_enabled = forms.BooleanField(required=False, label="Tell us when available credit is low")
    low_balance_threshold = forms.CharField(
        max_length=30,
        label="Low-balance threshold",
        help_text="A notice goes out while available credit is below this.",
    )
    credit_expiring_enabled = forms.BooleanField(required=False, label="Tell us before credit expires")
    credit_expiring_days = forms.IntegerField(
        min_value=1,
        max_value=MAX_EXPIRY_WINDOW_DAYS,
        label="Days before expiry",
        help_text=f"A notice goes out while some credit expires within this many days (1 to {MAX_EXPIRY_WINDOW_DAYS}).",
    )
    email_enabled = forms.BooleanField(
        required=False,
        label="Email owners and billing admins",
        help_text="Off: notices show on the dashboard only. At most one email per kind per day.",
    )

    def clean_low_balance_threshold(self) -> int:
        return amount_clean(self.cleaned_data["low_balance_threshold"], field_label="Threshold")


NOTIFICATION_ERROR_FIELDS = {"low_balance_threshold": "low_balance_threshold"}


class ApiKeyChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        return f"{obj.name} ({obj.key_id[:6]}…)"

    def to_python(self, value: Any) -> Any:
        # The database lookup would also read other scripts' digits as numbers.
        if value not in self.empty_values and not is_id_text(value):
            raise forms.ValidationError(self.error_messages["invalid_choice"], code="invalid_choice")
        return super().to_python(value)


class UsageFilterForm(forms.Form):
    """The usage page's filters (a GET form). Empty filters mean: the last 30 days, everything."""

    start = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))
    model = forms.ModelChoiceField(
        queryset=AIModel.objects.order_by("slug"), to_field_name="slug", required=False, empty_label="All models"
    )
    key = ApiKeyChoiceField(queryset=ApiKey.objects.none(), required=False, empty_label="All keys")
    workflow = forms.CharField(
        max_length=100,
        required=False,
        help_text=f"Exact workflow tag; {NO_WORKFLOW_LABEL} for usage without one.",
    )
    by = forms.ChoiceField(
        choices=[(d, DIMENSION_LABELS[d].capitalize()) for d in DIMENSIONS], required=False, label="Chart by"
    )

    def __init__(self, *args: Any, keys: QuerySet[ApiKey], max_days: int = USAGE_PAGE_MAX_DAYS, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.max_days = max_days
        key_field = self.fields["key"]
        assert isinstance(key_field, ApiKeyChoiceField)
        key_field.queryset = keys

    def _date_in_range(self, name: str) -> date | None:
        value: date | None = self.cleaned_data.get(name)
        if value is not None and not USAGE_FIRST_DATE <= value <= USAGE_LAST_DATE:
            raise forms.ValidationError(
                f"Choose a date between {USAGE_FIRST_DATE.isoformat()} and {USAGE_LAST_DATE.isoformat()}."
            )
        return value

    def clean_start(self) -> date | None:
        return self._date_in_range("start")

    def clean_end(self) -> date | None:
        return self._date_in_range("end")

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        today = timezone.now().date()
        end: date = data.get("end") or today
        start: date = data.get("start") or (end - timedelta(days=29))
        if "start" in self.errors or "end" in self.errors:
            return data
        if start > end:
            self.add_error("end", "The end date must be on or after the start date.")
        elif (end - start).days + 1 > self.max_days:
            self.add_error("start", f"Choose at most {self.max_days} days.")
        data["start"], data["end"] = start, end
        data["by"] = data.get("by") or "model"
        workflow = (data.get("workflow") or "").strip()
        data["workflow"] = "" if workflow == NO_WORKFLOW_LABEL else (workflow or None)
        return data

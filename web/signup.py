"""Sign-up: a new user joins the organization that invited them, or else starts one of their own, which they own."""

from django import forms
from django.contrib.auth.models import User
from django.http import HttpRequest

from accounts.services import organization_create
from accounts.services.organizations import NAME_MAX_LENGTH
from web.invitations import invitation_accept_remembered


class SignupForm(forms.Form):
    """Extra sign-up fields; allauth adds email and password and calls `signup` once the user exists."""

    organization_name = forms.CharField(
        label="Organization name",
        max_length=NAME_MAX_LENGTH,
        required=False,
        help_text="Who is billed, e.g. your company. Leave empty to use your email address.",
    )

    def signup(self, request: HttpRequest, user: User) -> None:
        if invitation_accept_remembered(request, user=user) is not None:
            return
        name = self.cleaned_data.get("organization_name", "").strip() or user.email
        organization_create(name=name[:NAME_MAX_LENGTH], owner=user)

"""/organizations/new/: start another organization (the user owns it and switches to it)."""

from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from accounts.services import organization_create
from core.errors import ApplicationError
from web.context import SESSION_KEY
from web.forms import OrganizationForm, form_error_from


@require_http_methods(["GET", "POST"])
def organization_new(request: HttpRequest) -> HttpResponse:
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    form = OrganizationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            organization = organization_create(name=form.cleaned_data["name"], owner=request.user)  # type: ignore[arg-type]
        except ApplicationError as error:
            form_error_from(form, error)
        else:
            request.session[SESSION_KEY] = organization.pk
            messages.success(request, f"Created {organization.name}. You are its owner.")
            return HttpResponseRedirect("/")
    return render(request, "web/organizations/new.html", {"form": form}, status=400 if form.is_bound else 200)

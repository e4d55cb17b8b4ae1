"""Staff REST API fixtures: a staff member authenticated by token, as automation would be."""

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from accounts.services.stafftokens import staff_token_issue
from tests.accounts.factories import UserFactory


@pytest.fixture
def staff(db: None) -> User:
    return UserFactory(username="dana@operator.example", is_staff=True)


@pytest.fixture
def staff_api(staff: User) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {staff_token_for(staff)}")
    return client


def staff_token_for(user: User) -> str:
    """A new staff token's secret, as `manage.py staff_token` prints it."""
    return staff_token_issue(user=user, replace=True, actor=None)[1]

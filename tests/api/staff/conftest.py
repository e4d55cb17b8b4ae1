"""Staff REST API fixtures: a staff member authenticated by token, as automation would be."""

import pytest
from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.accounts.factories import UserFactory


@pytest.fixture
def staff(db: None) -> User:
    return UserFactory(username="dana@operator.example", is_staff=True)


@pytest.fixture
def staff_api(staff: User) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=staff).key}")
    return client

"""`field__any=values`: the same rows as `field__in=values`, with one array parameter whatever their number."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import Membership, Organization
from tests.accounts.factories import MembershipFactory, OrganizationFactory

pytestmark = pytest.mark.django_db


def test_any_finds_what_in_finds_with_one_parameter():
    organizations = [OrganizationFactory(name=f"Any {i}") for i in range(4)]
    wanted = [organizations[0].pk, organizations[2].pk, organizations[3].pk]
    with CaptureQueriesContext(connection) as queries:
        found = sorted(Organization.objects.filter(pk__any=wanted).values_list("pk", flat=True))
    assert found == sorted(Organization.objects.filter(pk__in=wanted).values_list("pk", flat=True)) == sorted(wanted)
    assert "= ANY(" in queries[0]["sql"]
    assert set(Organization.objects.filter(name__any={"Any 1", "Any 3", "none"})) == {
        organizations[1],
        organizations[3],
    }


def test_any_follows_a_relation_and_negates():
    membership = MembershipFactory()
    MembershipFactory()
    assert list(Membership.objects.filter(organization__any=[membership.organization_id])) == [membership]
    assert list(Membership.objects.filter(organization_id__any=[membership.organization_id])) == [membership]
    assert membership not in Membership.objects.exclude(organization_id__any=[membership.organization_id])


def test_any_of_nothing_matches_nothing_without_a_query(django_assert_num_queries):
    OrganizationFactory()
    with django_assert_num_queries(0):
        assert list(Organization.objects.filter(pk__any=[])) == []
    assert Organization.objects.exclude(pk__any=[]).count() == Organization.objects.count()

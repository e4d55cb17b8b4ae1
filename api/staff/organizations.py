"""Staff: organizations (the billing customers). List, create, read."""

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.permissions import IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.models import Organization
from accounts.services import organization_create
from accounts.services.organizations import NAME_MAX_LENGTH
from api.staff.ledger_fields import StrictCharField

TAG = "staff: organizations"


class OrganizationOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    currency = serializers.CharField()
    created_at = serializers.DateTimeField()


class OrganizationListCreateApi(generics.ListAPIView):
    """GET: organizations, newest first (`?search=` filters by name). POST: create one."""

    permission_classes = [IsAdminUser]
    serializer_class = OrganizationOutputSerializer

    class InputSerializer(serializers.Serializer):
        name = StrictCharField(max_length=NAME_MAX_LENGTH)

        class Meta:
            ref_name = "StaffOrganizationCreateInput"

    def get_queryset(self) -> QuerySet[Organization]:
        organizations = Organization.objects.order_by("-id")
        search = self.request.query_params.get("search", "").strip()
        return organizations.filter(name__icontains=search) if search else organizations

    @extend_schema(
        tags=[TAG],
        operation_id="staff_organizations_list",
        parameters=[OpenApiParameter("search", str, description="Part of the name, case-insensitive.")],
    )
    def get(self, request: Request) -> Response:
        return super().get(request)

    @extend_schema(
        tags=[TAG],
        operation_id="staff_organizations_create",
        request=InputSerializer,
        responses={201: OrganizationOutputSerializer},
    )
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        organization = organization_create(name=serializer.validated_data["name"])
        return Response(OrganizationOutputSerializer(organization).data, status=status.HTTP_201_CREATED)


class OrganizationDetailApi(generics.GenericAPIView):
    permission_classes = [IsAdminUser]
    serializer_class = OrganizationOutputSerializer

    @extend_schema(tags=[TAG], operation_id="staff_organizations_retrieve")
    def get(self, request: Request, organization_id: int) -> Response:
        organization = get_object_or_404(Organization, pk=organization_id)
        return Response(OrganizationOutputSerializer(organization).data)

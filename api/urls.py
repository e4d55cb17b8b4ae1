from django.urls import path  # noqa: F401  (each area appends its routes below)

urlpatterns: list = []

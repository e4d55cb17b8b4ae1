from django.urls import path

from api.gateway import balance

urlpatterns = [
    path("balance", balance.balance, name="v1-balance"),
]

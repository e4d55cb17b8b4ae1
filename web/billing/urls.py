"""Routes of the billing pages and the JSON endpoints their scripts call."""

from django.urls import path

from web.billing import api, views

urlpatterns = [
    path("billing/top-up/", views.top_up_page, name="billing_top_up"),
    path("billing/top-up/start/", api.TopUpStartApi.as_view(), name="billing_top_up_start"),
    path("billing/top-up/recent/", views.top_up_recent, name="billing_top_up_recent"),
    path("billing/top-up/<str:top_up_id>/", api.TopUpStatusApi.as_view(), name="billing_top_up_status"),
    path("billing/top-up/<str:top_up_id>/pay/", api.TopUpPayApi.as_view(), name="billing_top_up_pay"),
    path("billing/top-up/<str:top_up_id>/sync/", api.TopUpSyncApi.as_view(), name="billing_top_up_sync"),
    path("billing/auto-top-up/", views.auto_top_up_page, name="billing_auto_top_up"),
    path("billing/auto-top-up/card/", api.AutoTopUpCardApi.as_view(), name="billing_auto_top_up_card"),
    path(
        "billing/auto-top-up/card/confirm/",
        api.AutoTopUpCardConfirmApi.as_view(),
        name="billing_auto_top_up_card_confirm",
    ),
    path("billing/payment-methods/", views.payment_methods_page, name="billing_payment_methods"),
    path("billing/receipts/", views.receipts_page, name="billing_receipts"),
    path("billing/receipts/<str:top_up_id>/", views.receipt_page, name="billing_receipt"),
]

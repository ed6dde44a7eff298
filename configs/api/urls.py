"""Config and external-function routes, under /api/v2/signals/ (included by signal_project/urls.py)."""

from django.urls import path

from configs.api import views

urlpatterns = [
    path("configs/", views.ConfigListView.as_view(), name="configs"),
    path("configs/<int:pk>/", views.ConfigDetailView.as_view(), name="config-detail"),
    path("configs/<int:pk>/revisions/", views.ConfigRevisionsView.as_view(), name="config-revisions"),
    path("functions/", views.FunctionListView.as_view(), name="functions"),
    path("functions/<int:pk>/", views.FunctionDetailView.as_view(), name="function-detail"),
]

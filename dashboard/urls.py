from django.contrib.auth import views as auth_views
from django.urls import include, path

from dashboard import api, views

app_name = "dashboard"
urlpatterns = [
    path("", views.index, name="index"),
    path("dashboard/login/", auth_views.LoginView.as_view(template_name="dashboard/login.html"), name="login"),
    path("dashboard/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("dashboard/api/", include((api.urlpatterns, "api"))),
]

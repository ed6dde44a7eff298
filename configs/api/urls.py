"""Config and external-function routes (see signals/api/urls.py)."""

urlpatterns: list = []

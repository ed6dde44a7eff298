"""Routes of this area (see signals/api/urls.py)."""

urlpatterns: list = []

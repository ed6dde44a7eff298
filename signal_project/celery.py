import os

from celery import Celery

from signals.ingest.codec import register_ticks_serializer

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "signal_project.settings")
register_ticks_serializer()  # before the config: CELERY_ACCEPT_CONTENT names it
app = Celery("signal_project")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

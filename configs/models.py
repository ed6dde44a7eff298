from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import models, transaction

from configs.validation import ConfigError, validate_config


class SignalConfig(models.Model):
    """A computation config (SPEC §3.3). ``config`` holds the validated document; the indexed columns mirror it."""

    name = models.CharField(max_length=100, unique=True)
    version = models.CharField(max_length=32, default="1.0")
    revision = models.PositiveIntegerField(default=0, editable=False)
    instrument_key = models.CharField(max_length=128, db_index=True, editable=False)
    frequency = models.CharField(max_length=64, db_index=True, editable=False)
    interval = models.CharField(max_length=16, editable=False)
    enabled = models.BooleanField(default=True, db_index=True)
    config = models.JSONField(help_text="The config document (SPEC §3.3); validated on save.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.CharField(max_length=150, blank=True, default="")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def validated(self) -> dict[str, Any]:
        """The document validated against the current rules, with this row's name and enabled flag in it."""
        from configs.functions_store import external_function_exists

        document = dict(self.config or {})
        if self.name:
            document.setdefault("name", self.name)
        document["enabled"] = self.enabled if self.pk else document.get("enabled", self.enabled)
        return validate_config(document, function_exists=external_function_exists)

    def clean(self) -> None:
        try:
            document = self.validated()
        except ConfigError as exc:
            raise ValidationError({"config": [f"{field}: {message}" for field, message in exc.errors]}) from exc
        if self.name and document["name"] != self.name:
            raise ValidationError({"name": "must equal the config document's name"})

    def save(self, *args: Any, changed_by: str = "", action: str = "", **kwargs: Any) -> None:
        document = self.validated()
        self.name = document["name"]
        self.version = document["version"]
        self.instrument_key = document["instrument_key"]
        self.frequency = document["frequency"]
        self.interval = document["interval"]
        self.enabled = document["enabled"]
        self.config = document
        self.revision += 1
        if changed_by:
            self.updated_by = changed_by
        with transaction.atomic():
            creating = self.pk is None
            super().save(*args, **kwargs)
            ConfigRevision.objects.create(
                config=self, revision=self.revision, document=document, changed_by=self.updated_by,
                action=action or ("create" if creating else "update"),
            )


class ConfigRevision(models.Model):
    """Every saved version of a config: who changed it, when, and to what."""

    config = models.ForeignKey(SignalConfig, on_delete=models.CASCADE, related_name="revisions")
    revision = models.PositiveIntegerField()
    document = models.JSONField()
    action = models.CharField(max_length=16, default="update")
    changed_by = models.CharField(max_length=150, blank=True, default="")
    changed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-changed_at"]
        constraints = [models.UniqueConstraint(fields=["config", "revision"], name="config_revision_unique")]


class ExternalFunction(models.Model):
    """User-uploaded function source (SPEC §3.4), run only inside the sandbox worker processes."""

    name = models.CharField(max_length=100, unique=True)
    function_name = models.CharField(max_length=100)
    source = models.TextField()
    source_hash = models.CharField(max_length=64, editable=False)
    version = models.PositiveIntegerField(default=0, editable=False)
    description = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.CharField(max_length=150, blank=True, default="")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from configs.sandbox import check_source

        errors = check_source(self.source or "", self.function_name or "")
        if errors:
            raise ValidationError({"source": errors})

    def save(self, *args: Any, **kwargs: Any) -> None:
        import hashlib

        digest = hashlib.sha256(self.source.encode()).hexdigest()
        if digest != self.source_hash:
            self.source_hash = digest
            self.version += 1
        super().save(*args, **kwargs)

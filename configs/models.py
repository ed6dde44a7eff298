from __future__ import annotations

import hashlib
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models, transaction

from configs.validation import NAME_RE, NAME_RULE, ConfigError, validate_config
from functions.sandbox import check_function_name, check_source


class SignalConfig(models.Model):
    """A computation config (docs/REFERENCE.md §3.3). ``config`` holds the validated document; the indexed columns mirror it."""

    name = models.CharField(max_length=100, unique=True)
    version = models.CharField(max_length=32, default="1.0")
    revision = models.PositiveIntegerField(default=0, editable=False)
    instrument_key = models.CharField(max_length=128, db_index=True, editable=False)
    frequency = models.CharField(max_length=64, db_index=True, editable=False)
    interval = models.CharField(max_length=16, editable=False)
    enabled = models.BooleanField(default=True, db_index=True)
    config = models.JSONField(help_text="The config document (docs/REFERENCE.md §3.3); validated on save.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.CharField(max_length=150, blank=True, default="")
    # The last run, stamped by the time-driven task and (at most every SIGNAL_CONFIG_RUN_STAMP_S) by the pipeline.
    last_run_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_run_status = models.CharField(max_length=16, blank=True, default="", editable=False,
                                       help_text="ok, error (some computation failed) or no_data")
    last_run_error = models.TextField(blank=True, default="", editable=False)
    last_run_records = models.PositiveIntegerField(default=0, editable=False,
                                                   help_text="records written by the last run (or stamp period)")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

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
                config=self, config_name=self.name, revision=self.revision, document=document,
                changed_by=self.updated_by, action=action or ("create" if creating else "update"),
            )

    def set_document(self, document: dict[str, Any]) -> None:
        """Take name and enabled flag from a config document (API and stream: the document is the whole truth)."""
        self.config = dict(document)
        if isinstance(document.get("name"), str):
            self.name = document["name"]
        if isinstance(document.get("enabled"), bool):
            self.enabled = document["enabled"]
        else:
            self.config["enabled"] = self.enabled if self.pk else True

    def validated(self) -> dict[str, Any]:
        """The document validated against the current rules, with this row's name and enabled flag in it."""
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
        clash = SignalConfig.objects.filter(name=document["name"]).exclude(pk=self.pk)
        if clash.exists():
            raise ValidationError({"config": [f"name: a config named {document['name']!r} already exists"]})


class ConfigRevision(models.Model):
    """Every saved version of a config: who changed it, when, and to what. Kept after the config is deleted (the
    deletion itself is the last revision), so a config's history can be read by name."""

    config = models.ForeignKey(SignalConfig, on_delete=models.SET_NULL, null=True, blank=True,
                               related_name="revisions")
    config_name = models.CharField(max_length=100, db_index=True, default="")
    revision = models.PositiveIntegerField()
    document = models.JSONField()
    action = models.CharField(max_length=16, default="update")
    changed_by = models.CharField(max_length=150, blank=True, default="")
    changed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-changed_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["config", "revision"], name="config_revision_unique")]

    def __str__(self) -> str:
        return f"{self.config_name} r{self.revision} ({self.action})"


class ExternalFunction(models.Model):
    """User-uploaded function source (docs/REFERENCE.md §3.4), run only inside the sandbox worker processes."""

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

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Refuses source that does not compile under the sandbox policy: it is never stored."""
        errors = self.source_errors()
        if errors:
            raise ValidationError(errors)
        digest = hashlib.sha256(self.source.encode()).hexdigest()
        if digest != self.source_hash or self.function_name != getattr(self, "_loaded_function_name", None):
            self.source_hash = digest
            self.version += 1
        super().save(*args, **kwargs)
        self._loaded_function_name = self.function_name

    def source_errors(self) -> dict[str, list[str]]:
        """Upload-time checks: the name, the function name and the source under the sandbox policy."""
        errors: dict[str, list[str]] = {}
        if not isinstance(self.name, str) or not NAME_RE.match(self.name):
            errors["name"] = [f"{self.name!r:.60} is not a valid function name: {NAME_RULE}"]
        problem = check_function_name(self.function_name)
        if problem:
            errors["function_name"] = [problem]
        elif not self.source or not self.source.strip():
            errors["source"] = ["is required: Python source defining the function"]
        else:
            found = check_source(self.source, self.function_name)
            if found:
                errors["source"] = found
        return errors

    def clean(self) -> None:
        errors = self.source_errors()
        if errors:
            raise ValidationError(errors)

    @classmethod
    def from_db(cls, db: Any, field_names: Any, values: Any) -> ExternalFunction:
        instance = super().from_db(db, field_names, values)
        instance._loaded_function_name = instance.__dict__.get("function_name")
        return instance


def external_function_exists(name: str) -> bool:
    """Whether an external function of this name was uploaded (the validator's look-up of the database)."""
    return ExternalFunction.objects.filter(name=name).exists()

"""Admin for configs (validation errors shown on the form, bulk enable/disable that resyncs the beat schedule,
next scheduled run and last run result), their revision history and external functions (source checked under the
sandbox policy on save)."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.db.models import QuerySet
from django.http import Http404, HttpRequest
from django.utils import timezone
from django.utils.html import format_html
from django.utils.timesince import timesince

from configs import changes
from configs.api.serializers import configs_using
from configs.models import ConfigRevision, ExternalFunction, SignalConfig
from configs.receivers import bulk_changes
from configs.scheduling import describe, exchange_tz, next_run
from webapi.limits import MAX_BODY_BYTES, LimitError, parse_json

MONOSPACE = {"style": "font-family: ui-monospace, monospace; font-size: 12px; width: 95%;", "spellcheck": "false"}
TEMPLATE_DOCUMENT = {
    "name": "my-config", "version": "1.0", "instrument_key": "NSE@NIFTY@index", "interval": "5m",
    "frequency": "every_tick", "internal_functions": [{"name": "price", "parameters": {}}],
    "output": {"redis_list": True, "redis_stream": True, "store_to_database": True, "websocket": True,
               "cache_ttl_seconds": 300},
}


class PrettyJSONField(forms.JSONField):
    """The document as indented JSON; text too large, too deep or holding NUL is an error on the field."""

    def to_python(self, value: Any) -> Any:
        if self.disabled or not isinstance(value, str) or value in self.empty_values:
            return super().to_python(value)
        try:
            return parse_json(value)
        except LimitError as exc:
            where = f"{exc.field}: " if exc.field else ""
            raise forms.ValidationError(f"{where}{exc}", code="invalid") from None

    def bound_data(self, data: Any, initial: Any) -> Any:
        if self.disabled or not isinstance(data, str):
            return super().bound_data(data, initial)
        try:
            return parse_json(data)
        except LimitError:
            return forms.fields.InvalidJSONInput(data[:MAX_BODY_BYTES])

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, forms.fields.InvalidJSONInput):
            return value  # shown back as typed, with the error
        if isinstance(value, str):
            try:
                value = parse_json(value)
            except LimitError:
                return value
        return json.dumps(value, indent=2, ensure_ascii=False)


class SignalConfigForm(forms.ModelForm):
    config = PrettyJSONField(
        widget=forms.Textarea(attrs={"rows": 32, **MONOSPACE}),
        help_text="The config document (docs/REFERENCE.md §3.3). Its name is the config's name; the Enabled box below wins over "
                  "its 'enabled'. Errors name the failing field, e.g. technical_indicators[0].parameters.length.",
    )

    class Meta:
        model = SignalConfig
        fields = ["config", "enabled"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        document = cleaned.get("config")
        if isinstance(document, dict):
            document = {**document, "enabled": bool(cleaned.get("enabled"))}
            cleaned["config"] = document
            if isinstance(document.get("name"), str):
                self.instance.name = document["name"]
        elif "config" in cleaned:
            self.add_error("config", "must be a JSON object")
        return cleaned


class RevisionInline(admin.TabularInline):
    model = ConfigRevision
    extra = 0
    can_delete = False
    fields = ("revision", "action", "changed_by", "changed_at", "document")
    readonly_fields = fields
    ordering = ("-revision",)
    verbose_name_plural = "Version history"

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _last_run(config: SignalConfig) -> str:
    if config.last_run_at is None:
        return "never"
    ago = timesince(config.last_run_at, timezone.now())
    text = f"{config.last_run_status or '?'} · {config.last_run_records} record(s) · {ago} ago"
    return text + (f" · {config.last_run_error[:120]}" if config.last_run_error else "")


@admin.register(SignalConfig)
class SignalConfigAdmin(admin.ModelAdmin):
    form = SignalConfigForm
    list_display = ("name", "instrument_key", "frequency", "interval", "enabled", "revision", "next_run_display",
                    "last_run_display", "updated_at")
    list_filter = ("enabled", "frequency", "interval", "instrument_key", "last_run_status")
    search_fields = ("name", "instrument_key")
    readonly_fields = ("name", "revision", "instrument_key", "frequency", "interval", "schedule_display",
                       "next_run_display", "last_run_display", "created_at", "updated_at", "updated_by")
    fieldsets = (
        (None, {"fields": ("config", "enabled")}),
        ("Schedule and last run", {"fields": ("schedule_display", "next_run_display", "last_run_display")}),
        ("Version", {"fields": ("name", "revision", "instrument_key", "frequency", "interval", "created_at",
                                "updated_at", "updated_by")}),
    )
    inlines = [RevisionInline]
    actions = ["enable_selected", "disable_selected"]

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        return {"config": TEMPLATE_DOCUMENT, "enabled": True}

    @admin.display(description="Schedule")
    def schedule_display(self, obj: SignalConfig) -> str:
        return describe(obj.frequency, obj.interval) if obj.pk else "-"

    @admin.display(description="Next run")
    def next_run_display(self, obj: SignalConfig) -> str:
        if not obj.pk or not obj.enabled:
            return "-" if obj.pk else ""
        when = next_run(obj.frequency, None, (obj.config or {}).get("calendar"))
        if when is None:
            return describe(obj.frequency, obj.interval)
        return timezone.localtime(when, timezone=_exchange_tz()).strftime("%Y-%m-%d %H:%M:%S %Z")

    @admin.display(description="Last run")
    def last_run_display(self, obj: SignalConfig) -> str:
        if not obj.pk:
            return ""
        text = _last_run(obj)
        if obj.last_run_status == "error":
            return format_html('<span style="color:#ba2121">{}</span>', text)
        return text

    def save_model(self, request: HttpRequest, obj: SignalConfig, form: Any, change: bool) -> None:
        if not change:
            obj.save(changed_by=request.user.get_username())
            return
        try:  # under the row lock, like the API: a config deleted meanwhile is not recreated
            changes.update_config(obj, {**obj.config, "enabled": obj.enabled},
                                  changed_by=request.user.get_username())
        except changes.ConfigGone:
            raise Http404(f"config {obj.pk} was deleted meanwhile") from None

    def delete_model(self, request: HttpRequest, obj: SignalConfig) -> None:
        changes.delete_config(obj, changed_by=request.user.get_username())

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[SignalConfig]) -> None:
        with transaction.atomic(), bulk_changes(changed_by=request.user.get_username()):
            # locked first, like one config's delete: a concurrent change waits, then finds them gone
            ids = list(queryset.select_for_update().order_by("pk").values_list("pk", flat=True))
            SignalConfig.objects.filter(pk__in=ids).delete()

    def _set_enabled(self, request: HttpRequest, queryset: QuerySet[SignalConfig], enabled: bool) -> None:
        outcome = changes.set_enabled(queryset, enabled, changed_by=request.user.get_username())
        word = "enabled" if enabled else "disabled"
        if outcome.changed:
            self.message_user(request, f"{len(outcome.changed)} config(s) {word}; beat schedule resynced.",
                              messages.SUCCESS)
        if outcome.unchanged:
            self.message_user(request, f"{len(outcome.unchanged)} config(s) already {word}.", messages.INFO)
        for name, reason in outcome.refused.items():
            self.message_user(request, f"{name} not enabled: {reason}", messages.ERROR)

    @admin.action(description="Enable selected configs", permissions=["change"])
    def enable_selected(self, request: HttpRequest, queryset: QuerySet[SignalConfig]) -> None:
        self._set_enabled(request, queryset, True)

    @admin.action(description="Disable selected configs", permissions=["change"])
    def disable_selected(self, request: HttpRequest, queryset: QuerySet[SignalConfig]) -> None:
        self._set_enabled(request, queryset, False)


def _exchange_tz() -> Any:
    return exchange_tz()


@admin.register(ConfigRevision)
class ConfigRevisionAdmin(admin.ModelAdmin):
    list_display = ("config_name", "revision", "action", "changed_by", "changed_at")
    list_filter = ("action",)
    search_fields = ("config_name", "changed_by")
    readonly_fields = ("config", "config_name", "revision", "action", "changed_by", "changed_at", "document")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ExternalFunctionForm(forms.ModelForm):
    source = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 28, **MONOSPACE}), strip=False,
        help_text="def FUNCTION_NAME(tick, bars, params) -> dict. Compiled with RestrictedPython on save; syntax and "
                  "policy errors are listed here. Runs only in the sandbox processes.",
    )

    class Meta:
        model = ExternalFunction
        fields = ["name", "function_name", "source", "description"]


@admin.register(ExternalFunction)
class ExternalFunctionAdmin(admin.ModelAdmin):
    form = ExternalFunctionForm
    list_display = ("name", "function_name", "version", "used_by_display", "updated_at", "updated_by")
    search_fields = ("name", "function_name")
    readonly_fields = ("source_hash", "version", "used_by_display", "created_at", "updated_at", "updated_by")

    @admin.display(description="Used by configs")
    def used_by_display(self, obj: ExternalFunction) -> str:
        return ", ".join(configs_using(obj.name)) or "-" if obj.pk else "-"

    def save_model(self, request: HttpRequest, obj: ExternalFunction, form: Any, change: bool) -> None:
        obj.updated_by = request.user.get_username()
        obj.save()

    def has_delete_permission(self, request: HttpRequest, obj: ExternalFunction | None = None) -> bool:
        if obj is not None and configs_using(obj.name):
            return False  # configs still reference it
        return super().has_delete_permission(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ExternalFunction]) -> None:
        for function in queryset:
            users = configs_using(function.name)
            if users:
                self.message_user(request, f"{function.name} not deleted: used by {', '.join(users)}",
                                  messages.ERROR)
            else:
                function.delete()

"""Shapes of the configs and functions API. The config document itself is validated by
`configs.validation.validate_config` (the one validation); the serializers here describe it for OpenAPI and
render stored configs and functions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.utils import timezone
from rest_framework import serializers

from configs.frequency import FrequencyError, parse_frequency
from configs.models import ConfigRevision, ExternalFunction, SignalConfig
from configs.scheduling import describe, next_run, task_name
from feed.ticks import QUOTE_FIELDS
from greeks import DEFAULT_MODEL, GREEK_NAMES, MODELS


# --- the config document (docs/REFERENCE.md §3.3), for the schema -------------------------------------------------------------
class OptionGreeksSerializer(serializers.Serializer):
    enabled = serializers.BooleanField(default=True)
    model = serializers.ChoiceField(list(MODELS), default=DEFAULT_MODEL)
    risk_free_rate = serializers.FloatField(default=0.065)
    dividend_yield = serializers.FloatField(default=0.0)
    price_fields = serializers.ListField(child=serializers.ChoiceField(list(QUOTE_FIELDS)), default=["ltp"])
    calculate = serializers.ListField(child=serializers.ChoiceField(list(GREEK_NAMES)))
    use_indvix = serializers.BooleanField(default=True)


class IndicatorSpecSerializer(serializers.Serializer):
    name = serializers.CharField(help_text="a pandas_ta indicator, e.g. rsi, macd, bbands")
    parameters = serializers.DictField(required=False, allow_null=True,
                                       help_text="the indicator's pandas_ta keyword arguments (null: none)")
    output_key = serializers.CharField(required=False, allow_null=True, help_text="null: pandas_ta's column names")


class InternalFunctionSpecSerializer(serializers.Serializer):
    name = serializers.CharField(help_text="price, vwap_deviation, zscore, oi_change, put_call_ratio, ...")
    parameters = serializers.DictField(required=False)
    output_key = serializers.CharField(required=False)


class ExternalFunctionSpecSerializer(serializers.Serializer):
    name = serializers.CharField(help_text="the name of an uploaded external function")
    function_name = serializers.CharField(required=False, help_text="defaults to the uploaded function_name")
    parameters = serializers.DictField(required=False)
    timeout = serializers.FloatField(default=2, help_text="seconds of wall-clock time per call (0.05-60)")
    memory_limit_mb = serializers.IntegerField(default=128, help_text="16-4096")
    output_key = serializers.CharField(required=False)


class MoneynessSpecSerializer(serializers.Serializer):
    underlying = serializers.CharField(help_text="e.g. NSE@NIFTY@index")
    expiry = serializers.DateField(required=False, allow_null=True, help_text="null or absent: the nearest expiry")
    levels = serializers.ListField(child=serializers.CharField(), help_text="ATM, ITMn, OTMn, ITM, OTM, Dnn")
    strike_step = serializers.FloatField(required=False)


class OutputSpecSerializer(serializers.Serializer):
    redis_list = serializers.BooleanField(default=True)
    redis_stream = serializers.BooleanField(default=True)
    store_to_database = serializers.BooleanField(default=True)
    websocket = serializers.BooleanField(default=True)
    cache_ttl_seconds = serializers.IntegerField(default=300)


class ConfigDocumentSerializer(serializers.Serializer):
    """A computation config; unknown fields and bad values are refused with the field's path."""

    name = serializers.CharField(help_text="unique; letters, digits, '.', '_', '-'")
    version = serializers.CharField(default="1.0")
    instrument_key = serializers.CharField(help_text="a key, or a pattern ending in '@*' (NSE@NIFTY@options@*)")
    interval = serializers.CharField(default="1m", help_text="bar timeframe: 1m 5m 15m 1h 1d 1w 1M, 7m, custom_13…")
    frequency = serializers.CharField(
        default="every_tick",
        help_text="every_tick, every_interval, every_second, every_minute, Ns/Nm/Nh, on_close, daily@HH:MM, "
                  "weekly@MON@HH:MM, monthly@D@HH:MM or a 5-field cron (exchange time)")
    option_greeks = OptionGreeksSerializer(required=False)
    technical_indicators = IndicatorSpecSerializer(many=True, required=False)
    internal_functions = InternalFunctionSpecSerializer(many=True, required=False)
    external_functions = ExternalFunctionSpecSerializer(many=True, required=False)
    moneyness = MoneynessSpecSerializer(required=False)
    output = OutputSpecSerializer(required=False)
    enabled = serializers.BooleanField(default=True)
    description = serializers.CharField(required=False)


class ConfigPatchSerializer(ConfigDocumentSerializer):
    """Top-level fields to replace in the stored document; the rest is kept."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for item in self.fields.values():
            item.required = False


# --- stored configs ------------------------------------------------------------------------------------------------
class ScheduleSerializer(serializers.Serializer):
    kind = serializers.CharField(help_text="every_tick, every_interval, interval or crontab")
    description = serializers.CharField()
    beat_entry = serializers.CharField(allow_null=True, help_text="the shared django-celery-beat PeriodicTask")
    next_run_at = serializers.DateTimeField(allow_null=True, help_text="for time-driven frequencies")


class LastRunSerializer(serializers.Serializer):
    at = serializers.DateTimeField(allow_null=True)
    status = serializers.CharField(help_text="ok, error, no_data, or empty before the first run")
    error = serializers.CharField()
    records = serializers.IntegerField()


class ConfigSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    version = serializers.CharField()
    revision = serializers.IntegerField(help_text="bumped by every change; see revisions/")
    enabled = serializers.BooleanField()
    instrument_key = serializers.CharField()
    frequency = serializers.CharField()
    interval = serializers.CharField()
    schedule = ScheduleSerializer()
    last_run = LastRunSerializer()
    config = ConfigDocumentSerializer(help_text="the validated document with defaults filled in")
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    updated_by = serializers.CharField()


class RevisionSerializer(serializers.ModelSerializer):
    class Meta:
        model = ConfigRevision
        fields = ["revision", "action", "changed_by", "changed_at", "config_name", "document"]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def represent_config(config: SignalConfig, now: datetime | None = None) -> dict[str, Any]:
    now = now or timezone.now()
    try:
        frequency = parse_frequency(config.frequency)
        kind = frequency.kind
        entry = task_name(frequency.schedule_key) if frequency.is_time_driven else None
    except FrequencyError:
        kind, entry = "invalid", None
    upcoming = next_run(config.frequency, now, config.config.get("calendar")) if config.enabled and entry else None
    return {
        "id": config.pk,
        "name": config.name,
        "version": config.version,
        "revision": config.revision,
        "enabled": config.enabled,
        "instrument_key": config.instrument_key,
        "frequency": config.frequency,
        "interval": config.interval,
        "schedule": {"kind": kind, "description": describe(config.frequency, config.interval),
                     "beat_entry": entry if config.enabled else None, "next_run_at": _iso(upcoming)},
        "last_run": {"at": _iso(config.last_run_at), "status": config.last_run_status,
                     "error": config.last_run_error, "records": config.last_run_records},
        "config": config.config,
        "created_at": _iso(config.created_at),
        "updated_at": _iso(config.updated_at),
        "updated_by": config.updated_by,
    }


# --- external functions --------------------------------------------------------------------------------------------
class ExternalFunctionSerializer(serializers.ModelSerializer):
    """Upload ``{name, source, function_name}``; the source must compile under the sandbox policy."""

    used_by = serializers.SerializerMethodField(help_text="names of the configs that reference this function")

    class Meta:
        model = ExternalFunction
        fields = ["id", "name", "function_name", "source", "description", "source_hash", "version", "created_at",
                  "updated_at", "updated_by", "used_by"]
        read_only_fields = ["source_hash", "version", "created_at", "updated_at", "updated_by"]
        extra_kwargs = {
            "source": {"trim_whitespace": False, "help_text": "Python source defining function_name(tick, bars, "
                                                              "params) -> dict"},
            "function_name": {"help_text": "the function inside source to call"},
        }

    def get_used_by(self, obj: ExternalFunction) -> list[str]:
        return configs_using(obj.name)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        probe = ExternalFunction(
            name=attrs.get("name", getattr(self.instance, "name", "")),
            function_name=attrs.get("function_name", getattr(self.instance, "function_name", "")),
            source=attrs.get("source", getattr(self.instance, "source", "")),
        )
        errors = probe.source_errors()
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


class ExternalFunctionSummarySerializer(ExternalFunctionSerializer):
    class Meta(ExternalFunctionSerializer.Meta):
        fields = [f for f in ExternalFunctionSerializer.Meta.fields if f != "source"]


def configs_using(name: str) -> list[str]:
    return list(SignalConfig.objects.filter(config__external_functions__contains=[{"name": name}])
                .order_by("name").values_list("name", flat=True))

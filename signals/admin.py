from typing import Any

from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from signals.models import BacktestRecord, BacktestRun, BacktestState, InstrumentRecord


@admin.register(InstrumentRecord)
class InstrumentAdmin(admin.ModelAdmin):
    list_display = ("key", "underlying_key", "product", "expiry", "right", "strike", "last_seen")
    list_filter = ("product", "exchange", "right", "expiry")
    search_fields = ("key", "symbol", "underlying_key")
    readonly_fields = ("first_seen", "last_seen")


class BacktestStateInline(admin.TabularInline):
    model = BacktestState
    fields = ("underlying", "next_chunk", "done", "ticks", "records", "errors", "updated_at")
    readonly_fields = fields
    extra = 0
    can_delete = False


@admin.register(BacktestRun)
class BacktestRunAdmin(admin.ModelAdmin):
    """Runs are started with ``manage.py backtest`` or the API; here they are followed, and deleted."""

    list_display = ("id", "name", "status", "start_time", "end_time", "ticks_done", "ticks_total", "results",
                    "created_at", "finished_at")
    list_filter = ("status",)
    search_fields = ("name", "id")
    readonly_fields = ("id", "name", "status", "start_time", "end_time", "instruments", "configs", "underlyings",
                       "ticks_total", "created_at", "finished_at", "error", "created_by", "results")
    inlines = (BacktestStateInline,)

    def has_add_permission(self, request: Any) -> bool:
        return False

    @admin.display(description="ticks replayed")
    def ticks_done(self, run: BacktestRun) -> int:
        return sum(state.ticks for state in run.states.all())

    @admin.display(description="results")
    def results(self, run: BacktestRun) -> str:
        url = reverse("admin:signals_backtestrecord_changelist") + f"?run__id__exact={run.id}"
        return format_html('<a href="{}">{} record(s)</a>', url, sum(s.records for s in run.states.all()))


@admin.register(BacktestRecord)
class BacktestRecordAdmin(admin.ModelAdmin):
    list_display = ("run", "instrument_key", "time", "config_id", "underlying", "chunk")
    list_filter = ("run",)
    search_fields = ("instrument_key",)
    readonly_fields = ("run", "underlying", "chunk", "seq", "instrument_key", "time", "config_id", "record")

    def has_add_permission(self, request: Any) -> bool:
        return False

    def has_change_permission(self, request: Any, obj: Any = None) -> bool:
        return False

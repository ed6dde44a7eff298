from django.contrib import admin

from signals.models import InstrumentRecord


@admin.register(InstrumentRecord)
class InstrumentAdmin(admin.ModelAdmin):
    list_display = ("key", "underlying_key", "product", "expiry", "right", "strike", "last_seen")
    list_filter = ("product", "exchange", "right", "expiry")
    search_fields = ("key", "symbol", "underlying_key")
    readonly_fields = ("first_seen", "last_seen")

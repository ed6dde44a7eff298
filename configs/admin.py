from django.contrib import admin

from configs.models import ConfigRevision, ExternalFunction, SignalConfig


class RevisionInline(admin.TabularInline):
    model = ConfigRevision
    extra = 0
    can_delete = False
    readonly_fields = ("revision", "action", "changed_by", "changed_at", "document")

    def has_add_permission(self, request, obj=None):  # noqa: ANN001, ANN201
        return False


@admin.register(SignalConfig)
class SignalConfigAdmin(admin.ModelAdmin):
    list_display = ("name", "instrument_key", "frequency", "interval", "enabled", "revision", "updated_at")
    list_filter = ("enabled", "frequency", "interval")
    search_fields = ("name", "instrument_key")
    readonly_fields = ("revision", "instrument_key", "frequency", "interval", "created_at", "updated_at",
                       "updated_by")
    inlines = [RevisionInline]
    actions = ["enable", "disable"]

    def save_model(self, request, obj, form, change):  # noqa: ANN001, ANN201
        obj.save(changed_by=request.user.get_username())

    @admin.action(description="Enable selected configs")
    def enable(self, request, queryset):  # noqa: ANN001, ANN201
        for config in queryset:
            config.enabled = True
            config.config = {**config.config, "enabled": True}
            config.save(changed_by=request.user.get_username(), action="enable")

    @admin.action(description="Disable selected configs")
    def disable(self, request, queryset):  # noqa: ANN001, ANN201
        for config in queryset:
            config.enabled = False
            config.config = {**config.config, "enabled": False}
            config.save(changed_by=request.user.get_username(), action="disable")


@admin.register(ExternalFunction)
class ExternalFunctionAdmin(admin.ModelAdmin):
    list_display = ("name", "function_name", "version", "updated_at", "updated_by")
    search_fields = ("name", "function_name")
    readonly_fields = ("source_hash", "version", "created_at", "updated_at")

"""Configs and external functions CRUD (docs/REFERENCE.md §6): ``configs/``, ``configs/{id}/``, ``configs/{id}/revisions/``,
``functions/``, ``functions/{id}/``. Reads need a valid token; writes need the ``signals:write`` scope (the default
permission), and the token's ``sub`` is recorded as the author of each change."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import Q, QuerySet
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, status
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response

from configs import changes
from configs.api.serializers import (
    ConfigDocumentSerializer,
    ConfigPatchSerializer,
    ConfigSerializer,
    ExternalFunctionSerializer,
    ExternalFunctionSummarySerializer,
    RevisionSerializer,
    configs_using,
    represent_config,
)
from configs.models import ConfigRevision, ExternalFunction, SignalConfig
from configs.validation import ConfigError
from feed.instruments import InstrumentKeyError, normalise_pattern
from webapi.errors import BadParameter, NotFound
from webapi.params import Pagination

# Error statuses and their envelope are added to every operation by webapi.schema.document_errors.
ErrorSerializer = OpenApiResponse(description="no such id")
ERRORS = {400: OpenApiResponse(description="invalid body or parameter: field names the first failing path, "
                                           "details lists the failing paths (at most 20), omitted counts the rest")}
CONFLICT = {409: OpenApiResponse(description="a concurrent change took the same name")}


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "in_use"

    def __init__(self, message: str, field: str | None = None, code: str | None = None):
        super().__init__(message, code)
        self.field = field


def config_invalid(exc: ConfigError) -> exceptions.APIException:
    """Every failing field path with its messages, in the order found: the first one becomes ``error.field``."""
    if isinstance(exc, changes.ConfigConflict):
        return Conflict(exc.errors[0][1], field="name", code="conflict")
    invalid = exceptions.ValidationError(exc.as_dict())
    invalid.total_errors = exc.total
    return invalid


def author(request: Request) -> str:
    return str(getattr(request.user, "sub", "") or "")[:150]


def _bool_param(request: Request, name: str) -> bool | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    lowered = raw.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise BadParameter(f"{name} must be true or false", field=name)


def _patterns_matching(key: str) -> list[str]:
    """Every stored pattern spelling that matches the full instrument key ``key`` (and the key itself)."""
    parts = key.split("@")
    return ["*", key] + ["@".join(parts[:n]) + "@*" for n in range(1, len(parts))]


class ConfigListView(GenericAPIView):
    pagination_class = Pagination
    serializer_class = ConfigSerializer

    def get_queryset(self) -> QuerySet[SignalConfig]:
        request = self.request
        query = SignalConfig.objects.all().order_by("name")
        enabled = _bool_param(request, "enabled")
        if enabled is not None:
            query = query.filter(enabled=enabled)
        frequency = request.query_params.get("frequency")
        if frequency:
            query = query.filter(frequency=frequency)
        key = request.query_params.get("instrument_key")
        if key:
            try:
                pattern = normalise_pattern(key)
            except InstrumentKeyError as exc:
                raise BadParameter(str(exc), field="instrument_key") from None
            query = query.filter(instrument_key=pattern) if "*" in pattern else \
                query.filter(instrument_key__in=_patterns_matching(pattern))
        search = request.query_params.get("search")
        if search:
            query = query.filter(Q(name__icontains=search) | Q(instrument_key__icontains=search))
        return query

    @extend_schema(
        summary="List configs",
        parameters=[
            OpenApiParameter("enabled", bool, description="only enabled (true) or disabled (false) configs"),
            OpenApiParameter("frequency", str, description="exact frequency, e.g. every_tick"),
            OpenApiParameter("instrument_key", str, description="configs applying to this instrument key (or "
                                                                "stored with exactly this pattern)"),
            OpenApiParameter("search", str, description="part of the name or instrument key"),
        ],
        responses={200: ConfigSerializer(many=True), **ERRORS},
    )
    def get(self, request: Request) -> Response:
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response([represent_config(c) for c in page])

    @extend_schema(summary="Create a config", request=ConfigDocumentSerializer,
                   responses={201: ConfigSerializer, **ERRORS, **CONFLICT})
    def post(self, request: Request) -> Response:
        try:
            config = changes.create_config(request.data, changed_by=author(request))
        except ConfigError as exc:
            raise config_invalid(exc) from None
        return Response(represent_config(config), status=status.HTTP_201_CREATED)


class ConfigDetailView(GenericAPIView):
    serializer_class = ConfigSerializer

    def get_object(self) -> SignalConfig:
        try:
            return SignalConfig.objects.get(pk=self.kwargs["pk"])
        except SignalConfig.DoesNotExist:
            raise NotFound(f"no config with id {self.kwargs['pk']}") from None

    @extend_schema(summary="One config", responses={200: ConfigSerializer, 404: ErrorSerializer})
    def get(self, request: Request, pk: int) -> Response:
        return Response(represent_config(self.get_object()))

    @extend_schema(summary="Replace a config's document (a new revision)", request=ConfigDocumentSerializer,
                   responses={200: ConfigSerializer, 404: ErrorSerializer, **ERRORS, **CONFLICT})
    def put(self, request: Request, pk: int) -> Response:
        return self._update(request.data, merge=False)

    @extend_schema(summary="Change some top-level fields of a config (a new revision)",
                   request=ConfigPatchSerializer,
                   responses={200: ConfigSerializer, 404: ErrorSerializer, **ERRORS, **CONFLICT})
    def patch(self, request: Request, pk: int) -> Response:
        if not isinstance(request.data, dict) or not request.data:
            raise BadParameter("the body must be a non-empty JSON object of config fields", field="config")
        return self._update(request.data, merge=True)

    def _update(self, document: Any, merge: bool) -> Response:
        # the stored document is read under the row lock: concurrent PATCHes each see the one before
        try:
            updated = changes.update_config(SignalConfig(pk=self.kwargs["pk"]), document,
                                            changed_by=author(self.request), merge=merge)
        except ConfigError as exc:
            raise config_invalid(exc) from None
        except changes.ConfigGone:
            raise NotFound(f"no config with id {self.kwargs['pk']}") from None
        return Response(represent_config(updated))

    @extend_schema(summary="Delete a config (its beat schedule and cached results go with it)",
                   responses={204: None, 404: ErrorSerializer})
    def delete(self, request: Request, pk: int) -> Response:
        try:
            changes.delete_config(SignalConfig(pk=pk), changed_by=author(request))
        except changes.ConfigGone:
            raise NotFound(f"no config with id {pk}") from None
        return Response(status=status.HTTP_204_NO_CONTENT)


class ConfigRevisionsView(GenericAPIView):
    pagination_class = Pagination
    serializer_class = RevisionSerializer

    @extend_schema(summary="A config's version history, newest first (who changed it, when, to what)",
                   responses={200: RevisionSerializer(many=True), 404: ErrorSerializer})
    def get(self, request: Request, pk: int) -> Response:
        config = SignalConfig.objects.filter(pk=pk).first()
        if config is None:
            raise NotFound(f"no config with id {pk}")
        query = ConfigRevision.objects.filter(Q(config=config) | Q(config__isnull=True, config_name=config.name))
        page = self.paginate_queryset(query.order_by("-changed_at", "-id"))
        return self.get_paginated_response(RevisionSerializer(page, many=True).data)


class FunctionListView(GenericAPIView):
    pagination_class = Pagination
    serializer_class = ExternalFunctionSerializer

    @extend_schema(summary="List uploaded external functions (without their source)",
                   parameters=[OpenApiParameter("search", str, description="part of the name")],
                   responses={200: ExternalFunctionSummarySerializer(many=True), **ERRORS})
    def get(self, request: Request) -> Response:
        query = ExternalFunction.objects.all().order_by("name")
        search = request.query_params.get("search")
        if search:
            query = query.filter(name__icontains=search)
        page = self.paginate_queryset(query)
        return self.get_paginated_response(ExternalFunctionSummarySerializer(page, many=True).data)

    @extend_schema(summary="Upload an external function", request=ExternalFunctionSerializer,
                   responses={201: ExternalFunctionSerializer, **ERRORS})
    def post(self, request: Request) -> Response:
        serializer = ExternalFunctionSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        serializer.save(updated_by=author(request))
        return Response(serializer.data, status=status.HTTP_201_CREATED)


class FunctionDetailView(GenericAPIView):
    serializer_class = ExternalFunctionSerializer

    def get_object(self, lock: bool = False) -> ExternalFunction:
        """The function; with ``lock``, its row locked until the transaction ends (writes serialise)."""
        query = ExternalFunction.objects.select_for_update() if lock else ExternalFunction.objects
        try:
            return query.get(pk=self.kwargs["pk"])
        except ExternalFunction.DoesNotExist:
            raise NotFound(f"no external function with id {self.kwargs['pk']}") from None

    @extend_schema(summary="One external function with its source",
                   responses={200: ExternalFunctionSerializer, 404: ErrorSerializer})
    def get(self, request: Request, pk: int) -> Response:
        return Response(ExternalFunctionSerializer(self.get_object()).data)

    @extend_schema(summary="Replace an external function's source (a new version; configs pick it up without a "
                           "restart)", request=ExternalFunctionSerializer,
                   responses={200: ExternalFunctionSerializer, 404: ErrorSerializer,
                              409: OpenApiResponse(description="renaming a function configs use"), **ERRORS})
    def put(self, request: Request, pk: int) -> Response:
        return self._update(request, partial=False)

    @extend_schema(summary="Change some fields of an external function", request=ExternalFunctionSerializer,
                   responses={200: ExternalFunctionSerializer, 404: ErrorSerializer,
                              409: OpenApiResponse(description="renaming a function configs use"), **ERRORS})
    def patch(self, request: Request, pk: int) -> Response:
        return self._update(request, partial=True)

    def _update(self, request: Request, partial: bool) -> Response:
        if not isinstance(request.data, dict) or (partial and not request.data):
            raise BadParameter("the body must be a non-empty JSON object of function fields", field="function")
        with transaction.atomic():
            function = self.get_object(lock=True)
            serializer = ExternalFunctionSerializer(function, data=request.data, partial=partial)
            serializer.is_valid(raise_exception=True)
            new_name = serializer.validated_data.get("name", function.name)
            if new_name != function.name:
                users = configs_using(function.name)
                if users:
                    raise Conflict(f"cannot rename {function.name!r}: used by configs {', '.join(users)}",
                                   field="name")
            serializer.save(updated_by=author(request))
        return Response(serializer.data)

    @extend_schema(summary="Delete an external function no config uses",
                   responses={204: None, 404: ErrorSerializer,
                              409: OpenApiResponse(description="configs still use it")})
    def delete(self, request: Request, pk: int) -> Response:
        with transaction.atomic():
            function = self.get_object(lock=True)
            users = configs_using(function.name)
            if users:
                raise Conflict(f"{function.name!r} is used by configs {', '.join(users)}; remove it from them first",
                               field="name")
            function.delete()
        return Response(status=status.HTTP_204_NO_CONTENT)

"""Platform JWT authentication for REST and WebSocket (docs/REFERENCE.md §6).

Tokens are HS256 with SIGNAL_JWT_SECRET or RS256 with SIGNAL_JWT_PUBLIC_KEY; ``exp`` is always required, issuer
and audience are checked when configured. The user is the ``sub`` claim; writes need the write scope in the
space-separated ``scope`` claim. No Django user rows are involved: the platform owns identities.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

import jwt
from django.conf import settings
from rest_framework import authentication, exceptions, permissions

from webapi.limits import text_problem


class TokenError(Exception):
    pass


@dataclass(frozen=True)
class PlatformUser:
    sub: str
    scopes: frozenset[str] = field(default_factory=frozenset)
    claims: Mapping[str, Any] = field(default_factory=dict, compare=False)
    is_authenticated: bool = True
    is_active: bool = True
    is_anonymous: bool = False

    @property
    def pk(self) -> str:
        return self.sub

    @property
    def can_write(self) -> bool:
        return settings.SIGNAL_WRITE_SCOPE in self.scopes

    def __str__(self) -> str:
        return self.sub


@lru_cache(maxsize=4)
def public_key(value: str) -> str:
    """The RS256 public key: ``value`` itself when it is a PEM, else the text of the file it names."""
    if value.lstrip().startswith("-----BEGIN"):
        return value
    return Path(value).read_text()


def _verification() -> tuple[Any, list[str]]:
    if settings.SIGNAL_JWT_PUBLIC_KEY:
        return public_key(settings.SIGNAL_JWT_PUBLIC_KEY), ["RS256"]
    return settings.SIGNAL_JWT_SECRET, ["HS256"]


def decode_token(token: str) -> PlatformUser:
    """Verify a bearer token and return its user; raise `TokenError` with a reason a client can act on."""
    if not token:
        raise TokenError("missing token")
    key, algorithms = _verification()
    user = _verified(token, key, tuple(algorithms), settings.SIGNAL_JWT_ISSUER, settings.SIGNAL_JWT_AUDIENCE)
    if int(user.claims["exp"]) <= time.time():  # as PyJWT decides, for a token verified before it expired
        raise TokenError("token expired")
    return user


@lru_cache(maxsize=4096)
def _verified(token: str, key: Any, algorithms: tuple[str, ...], issuer: str, audience: str) -> PlatformUser:
    """The user of a token whose signature and claims check out. A client sends the same token with every
    request until it expires, so a verified token is kept (a miss costs a signature check, ~0.3 ms); only ``exp``
    can turn a valid token invalid later, and `decode_token` checks it at every use. Failures are not kept."""
    options = {"require": ["exp", "sub"]}
    kwargs: dict[str, Any] = {}
    if issuer:
        kwargs["issuer"] = issuer
        options["require"].append("iss")
    if audience:
        kwargs["audience"] = audience
        options["require"].append("aud")
    try:
        claims = jwt.decode(token, key, algorithms=list(algorithms), options=options, **kwargs)
    except jwt.ExpiredSignatureError:
        raise TokenError("token expired") from None
    except jwt.InvalidTokenError as exc:
        raise TokenError(f"invalid token: {exc}") from None
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise TokenError("invalid token: sub must be a non-empty string")
    problem = text_problem(sub)
    if problem:  # the sub is stored as the author of changes
        raise TokenError(f"invalid token: sub {problem}")
    scopes = frozenset(str(claims.get("scope") or "").split())
    return PlatformUser(sub=sub, scopes=scopes, claims=MappingProxyType(claims))  # kept: shared by requests


def bearer_token(header: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header; None for any other value."""
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


class JWTAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Any) -> tuple[PlatformUser, str] | None:
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        token = bearer_token(header)
        if token is None:
            raise exceptions.AuthenticationFailed("Authorization header must be 'Bearer <token>'")
        try:
            return decode_token(token), token
        except TokenError as exc:
            raise exceptions.AuthenticationFailed(str(exc)) from None

    def authenticate_header(self, request: Any) -> str:
        return 'Bearer realm="signals"'


class IsPlatformUser(permissions.BasePermission):
    """Any valid token reads; unsafe methods need the write scope."""

    message = "this action needs the signals:write scope"

    def has_permission(self, request: Any, view: Any) -> bool:
        user = request.user
        if not isinstance(user, PlatformUser):
            return False
        return request.method in permissions.SAFE_METHODS or user.can_write

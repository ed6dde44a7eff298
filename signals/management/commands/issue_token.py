import time
from typing import Any

import jwt
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Print an HS256 platform token signed with SIGNAL_JWT_SECRET (for demos and local testing)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("sub", help="the user (sub claim)")
        parser.add_argument("--scope", default="", help="space-separated scopes, e.g. signals:write")
        parser.add_argument("--ttl", type=int, default=3600, help="seconds until the token expires")

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.SIGNAL_JWT_SECRET:
            raise CommandError("SIGNAL_JWT_SECRET is not set")
        claims: dict[str, Any] = {"sub": options["sub"], "exp": int(time.time()) + options["ttl"],
                                  "iat": int(time.time()), "scope": options["scope"]}
        if settings.SIGNAL_JWT_ISSUER:
            claims["iss"] = settings.SIGNAL_JWT_ISSUER
        if settings.SIGNAL_JWT_AUDIENCE:
            claims["aud"] = settings.SIGNAL_JWT_AUDIENCE
        self.stdout.write(jwt.encode(claims, settings.SIGNAL_JWT_SECRET, algorithm="HS256"))

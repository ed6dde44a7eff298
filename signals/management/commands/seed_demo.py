import os
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from configs.models import SignalConfig
from greeks import GREEK_NAMES

ALL_OUTPUTS = {"redis_list": True, "redis_stream": True, "store_to_database": True, "websocket": True,
               "cache_ttl_seconds": 300}
DEMO_CONFIGS: list[dict[str, Any]] = [
    {
        "name": "nifty-price", "version": "1.0", "instrument_key": "NSE@NIFTY@*", "interval": "1m",
        "frequency": "every_tick", "internal_functions": [{"name": "price", "parameters": {}}],
        "output": ALL_OUTPUTS, "enabled": True,
    },
    {
        # Greeks of the whole demo option chain on every tick, and moneyness of the nearest expiry (issue 3).
        "name": "nifty-chain-greeks", "version": "1.0", "instrument_key": "NSE@NIFTY@options@*", "interval": "5m",
        "frequency": "every_tick",
        "option_greeks": {"enabled": True, "model": "black_scholes_merton", "risk_free_rate": 0.065,
                          "dividend_yield": 0.0, "price_fields": ["ltp"],
                          "calculate": list(GREEK_NAMES), "use_indvix": True},
        "moneyness": {"underlying": "NSE@NIFTY@index", "levels": ["ATM", "ITM1", "OTM1", "D25"]},
        "output": ALL_OUTPUTS, "enabled": True,
    },
    {
        # Indicators of the spot on one-minute bars, so `realtime/indicators` and the dashboard's chart have data.
        "name": "nifty-indicators", "version": "1.0", "instrument_key": "NSE@NIFTY@index", "interval": "1m",
        "frequency": "every_tick",
        "technical_indicators": [
            {"name": "ema", "parameters": {"length": 20}, "output_key": "ema_20"},
            {"name": "sma", "parameters": {"length": 50}, "output_key": "sma_50"},
            {"name": "rsi", "parameters": {"length": 14}, "output_key": "rsi_14"},
        ],
        "output": ALL_OUTPUTS, "enabled": True,
    },
]


class Command(BaseCommand):
    help = "Create the demo admin user and demo configs (idempotent)."

    def handle(self, *args: Any, **options: Any) -> None:
        User = get_user_model()
        username = os.environ.get("DEMO_ADMIN_USER", "admin")
        if not User.objects.filter(username=username).exists():
            User.objects.create_superuser(username, f"{username}@example.com",
                                          os.environ.get("DEMO_ADMIN_PASSWORD", "admin"))
            self.stdout.write(f"created admin user {username!r}")
        for document in DEMO_CONFIGS:
            existing = SignalConfig.objects.filter(name=document["name"]).first()
            if existing is None:
                SignalConfig(name=document["name"], config=document).save(changed_by="seed_demo", action="create")
                self.stdout.write(f"created config {document['name']!r}")
            elif existing.config != SignalConfig(name=document["name"], config=document).validated():
                existing.config = document
                existing.enabled = document["enabled"]
                existing.save(changed_by="seed_demo")
                self.stdout.write(f"updated config {document['name']!r}")

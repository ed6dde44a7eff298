"""The WebSocket channels a client can subscribe to, and how a subscribe request becomes a Channels group."""

from __future__ import annotations

from typing import Any

from feed import keys
from signals.delivery.channels import COMPUTED, ChannelSpec, SubscriptionError
from signals.delivery.ws_chain import CHAIN
from signals.delivery.ws_greeks import GREEKS, MONEYNESS
from signals.delivery.ws_indicators import INDICATORS

CHANNELS: dict[str, ChannelSpec] = {spec.name: spec for spec in (COMPUTED, GREEKS, MONEYNESS, INDICATORS, CHAIN)}


def resolve(channel: Any, instrument_key: Any, params: Any) -> tuple[ChannelSpec, str, dict[str, Any], str]:
    """Validate a subscribe/unsubscribe request: returns (spec, key, params, group) or raises SubscriptionError."""
    spec = CHANNELS.get(channel) if isinstance(channel, str) else None
    if spec is None:
        raise SubscriptionError("unknown_channel", f"channel must be one of {', '.join(sorted(CHANNELS))}")
    if not isinstance(instrument_key, str) or not instrument_key:
        raise SubscriptionError("bad_instrument_key", "instrument_key is required")
    try:
        key = spec.normalise_instrument(instrument_key)
    except ValueError as exc:
        raise SubscriptionError("bad_instrument_key", str(exc)) from None
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise SubscriptionError("bad_params", "params must be an object")
    try:
        params = spec.normalise_params(params)
    except ValueError as exc:
        raise SubscriptionError("bad_params", str(exc)) from None
    return spec, key, params, keys.topic_group(spec.name, key, params or None)

"""Instrument keys: ``EXCHANGE@SYMBOL@PRODUCT[@EXPIRY[@RIGHT@STRIKE]]`` (docs/REFERENCE.md §3.1).

`parse_instrument_key` accepts the feed's variants (``equity_options``, ``CE``/``PE``, ``26-JUN-2025``) and returns
an `Instrument` whose `key` is the one canonical spelling used everywhere else (Redis keys, database rows, APIs).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation

PRODUCTS = ("index", "equities", "futures", "options")
PRODUCT_ALIASES = {
    "index": "index",
    "indices": "index",
    "equities": "equities",
    "equity": "equities",
    "equity_spot": "equities",
    "futures": "futures",
    "future": "futures",
    "equity_futures": "futures",
    "options": "options",
    "option": "options",
    "equity_options": "options",
}
RIGHT_ALIASES = {"call": "call", "ce": "call", "c": "call", "put": "put", "pe": "put", "p": "put"}
DEFAULT_INDEX_SYMBOLS = frozenset({"NIFTY", "BANKNIFTY", "FINNIFTY", "MIDCPNIFTY", "SENSEX", "BANKEX", "INDVIX"})

_EXCHANGE_RE = re.compile(r"^[A-Z][A-Z0-9_]{0,15}$")
_SYMBOL_RE = re.compile(r"^[A-Z0-9][A-Z0-9&._-]{0,63}$")


class InstrumentKeyError(ValueError):
    """An instrument key (or key pattern) that cannot be read; the message says which part is wrong."""


@dataclass(frozen=True, slots=True)
class Instrument:
    exchange: str
    symbol: str
    product: str
    expiry: date | None = None
    right: str | None = None
    strike: Decimal | None = None

    @property
    def key(self) -> str:
        parts = [self.exchange, self.symbol, self.product]
        if self.expiry is not None:
            parts.append(self.expiry.isoformat())
        if self.right is not None and self.strike is not None:
            parts += [self.right, format_strike(self.strike)]
        return "@".join(parts)

    @property
    def symbol_key(self) -> str:
        """``EXCHANGE@SYMBOL``: names the tick stream and the output stream of this instrument's family."""
        return f"{self.exchange}@{self.symbol}"

    @property
    def is_option(self) -> bool:
        return self.product == "options"

    def underlying_key(self, index_symbols: frozenset[str] | set[str] = DEFAULT_INDEX_SYMBOLS) -> str:
        """The spot instrument this one derives from (itself for spot instruments)."""
        product = "index" if self.symbol in index_symbols else "equities"
        return f"{self.exchange}@{self.symbol}@{product}"

    def future_key(self) -> str | None:
        """The same-expiry future, the underlying of black76 pricing; None without an expiry."""
        if self.expiry is None:
            return None
        return f"{self.exchange}@{self.symbol}@futures@{self.expiry.isoformat()}"


def format_strike(strike: Decimal) -> str:
    """Strikes print without a trailing ``.0``: ``24000``, ``24000.5``."""
    return format(strike.normalize(), "f")


def parse_expiry(value: str) -> date:
    """``2025-06-26`` or ``26-JUN-2025`` (any case) to a date."""
    text = value.strip()
    for fmt in ("%Y-%m-%d", "%d-%b-%Y", "%d%b%Y", "%d-%B-%Y"):
        try:
            return datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    raise InstrumentKeyError(f"expiry {value!r} is not a date like 2025-06-26 or 26-JUN-2025")


def parse_strike(value: str) -> Decimal:
    try:
        strike = Decimal(value.strip())
    except InvalidOperation:
        raise InstrumentKeyError(f"strike {value!r} is not a number") from None
    if not strike.is_finite() or strike <= 0:
        raise InstrumentKeyError(f"strike {value!r} must be a positive number")
    return strike


def parse_right(value: str) -> str:
    right = RIGHT_ALIASES.get(value.strip().lower())
    if right is None:
        raise InstrumentKeyError(f"option right {value!r} must be call, put, CE or PE")
    return right


def _parse_head(parts: list[str], text: str) -> tuple[str, str, str]:
    exchange, symbol = parts[0].strip().upper(), parts[1].strip().upper()
    if not _EXCHANGE_RE.match(exchange):
        raise InstrumentKeyError(f"exchange {parts[0]!r} in {text!r} is not a valid exchange code")
    if not _SYMBOL_RE.match(symbol):
        raise InstrumentKeyError(f"symbol {parts[1]!r} in {text!r} is not a valid symbol")
    product = PRODUCT_ALIASES.get(parts[2].strip().lower())
    if product is None:
        raise InstrumentKeyError(f"product {parts[2]!r} in {text!r} must be one of {', '.join(PRODUCTS)}")
    return exchange, symbol, product


def parse_instrument_key(text: str) -> Instrument:
    """Parse and normalise a full instrument key; raise `InstrumentKeyError` naming the bad part."""
    if not isinstance(text, str) or not text.strip():
        raise InstrumentKeyError("instrument key is empty")
    parts = text.strip().split("@")
    if len(parts) < 3:
        raise InstrumentKeyError(f"instrument key {text!r} must look like EXCHANGE@SYMBOL@PRODUCT[...]")
    exchange, symbol, product = _parse_head(parts, text)
    rest = parts[3:]
    if product in ("index", "equities"):
        if rest:
            raise InstrumentKeyError(f"{product} key {text!r} takes no expiry, right or strike")
        return Instrument(exchange, symbol, product)
    if product == "futures":
        if len(rest) != 1:
            raise InstrumentKeyError(f"futures key {text!r} must be EXCHANGE@SYMBOL@futures@EXPIRY")
        return Instrument(exchange, symbol, product, parse_expiry(rest[0]))
    if len(rest) != 3:
        raise InstrumentKeyError(f"options key {text!r} must be EXCHANGE@SYMBOL@options@EXPIRY@RIGHT@STRIKE")
    return Instrument(exchange, symbol, product, parse_expiry(rest[0]), parse_right(rest[1]), parse_strike(rest[2]))


def normalise_key(text: str) -> str:
    return parse_instrument_key(text).key


def normalise_pattern(text: str) -> str:
    """Normalise a config's instrument key, which may end in ``@*`` to target every matching instrument.

    ``NSE@NIFTY@*``, ``nse@nifty@equity_options@26-JUN-2025@*`` and ``NSE@NIFTY@options@2025-06-26@CE@*`` are
    patterns; a full key is returned normalised as it is.
    """
    if not isinstance(text, str) or not text.strip():
        raise InstrumentKeyError("instrument key is empty")
    raw = text.strip()
    if "*" not in raw:
        return normalise_key(raw)
    if raw == "*":
        return "*"
    if not raw.endswith("@*") or raw.count("*") != 1:
        raise InstrumentKeyError(f"pattern {text!r} may only end in '@*' (e.g. NSE@NIFTY@options@*)")
    parts = raw[:-2].split("@")
    if len(parts) == 1:
        exchange = parts[0].strip().upper()
        if not _EXCHANGE_RE.match(exchange):
            raise InstrumentKeyError(f"exchange {parts[0]!r} in {text!r} is not a valid exchange code")
        return f"{exchange}@*"
    if len(parts) == 2:
        head = _parse_head([parts[0], parts[1], "index"], text)
        return f"{head[0]}@{head[1]}@*"
    exchange, symbol, product = _parse_head(parts, text)
    rest = parts[3:]
    normalised = [exchange, symbol, product]
    if product not in ("futures", "options"):
        raise InstrumentKeyError(f"{product} keys have nothing after the product; use {'@'.join(normalised)!r}")
    if len(rest) > (1 if product == "futures" else 2):
        raise InstrumentKeyError(f"pattern {text!r} has too many parts before '@*'")
    if rest:
        normalised.append(parse_expiry(rest[0]).isoformat())
    if len(rest) == 2:
        normalised.append(parse_right(rest[1]))
    return "@".join(normalised) + "@*"


def key_matches(pattern: str, key: str) -> bool:
    """Whether a normalised key falls under a normalised config key or ``@*`` pattern."""
    if pattern == "*":
        return True
    if pattern.endswith("@*"):
        return key.startswith(pattern[:-1])
    return key == pattern

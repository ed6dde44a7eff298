import signal
import time
from datetime import UTC, datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from feed.redis_client import get_redis
from feed.simulator import IST, NiftySession, encode


class Command(BaseCommand):
    help = "Publish a simulated NIFTY session (spot, INDVIX, futures, option chain) to the tick streams."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--rate", type=float, default=200.0, help="ticks per second (default 200)")
        parser.add_argument("--duration", type=float, default=0.0, help="seconds to run; 0 = until stopped")
        parser.add_argument("--max-ticks", type=int, default=0, help="stop after this many ticks; 0 = no limit")
        parser.add_argument("--start", default="", help="ISO time of the first tick for a historical replay; "
                            "ticks are then published as fast as possible with simulated timestamps")
        parser.add_argument("--spot", type=float, default=24_000.0)
        parser.add_argument("--strikes", type=int, default=15, help="strikes each side of ATM")
        parser.add_argument("--seed", type=int, default=7)

    def handle(self, *args: Any, **options: Any) -> None:
        self.stopping = False
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "stopping", True))
        if options["rate"] <= 0:
            raise CommandError("--rate must be positive")
        replay = bool(options["start"])
        try:
            start = datetime.fromisoformat(options["start"]) if replay else datetime.now(UTC)
        except ValueError:
            raise CommandError(f"--start {options['start']!r} is not an ISO-8601 time") from None
        if start.tzinfo is None:
            raise CommandError("--start needs a UTC offset, e.g. 2025-06-20T09:15:00+05:30")
        session = NiftySession(start=start, spot=options["spot"], strikes_each_side=options["strikes"],
                               seed=options["seed"])
        client = get_redis()
        sent, began = 0, time.monotonic()
        pipe = client.pipeline(transaction=False)
        # Live ticks are stamped when they are sent and leave within ~10 ms, so a tick's time is never ahead of
        # the wall clock and the tick-to-output latency metric measures the service, not the feed's buffering.
        flush_every = 100 if replay else max(1, int(options["rate"] / 100))
        for stream, tick in session.ticks(options["rate"], clock=None if replay else _wall_clock):
            if not replay:
                tick["ltt"] = _wall_clock().astimezone(IST).isoformat(timespec="milliseconds")
            pipe.xadd(stream, encode(tick), maxlen=1_000_000, approximate=True)
            sent += 1
            if sent % flush_every == 0:
                pipe.execute()
                if not replay:
                    self._pace(sent, began, options["rate"])
            if self._done(sent, began, options):
                break
        pipe.execute()
        self.stdout.write(f"published {sent} ticks in {time.monotonic() - began:.1f}s")

    def _pace(self, sent: int, began: float, rate: float) -> None:
        ahead = sent / rate - (time.monotonic() - began)
        if ahead > 0:
            time.sleep(ahead)

    def _done(self, sent: int, began: float, options: dict[str, Any]) -> bool:
        if self.stopping:
            return True
        if options["max_ticks"] and sent >= options["max_ticks"]:
            return True
        return bool(options["duration"]) and time.monotonic() - began >= options["duration"]


def _wall_clock() -> datetime:
    return datetime.now(UTC)

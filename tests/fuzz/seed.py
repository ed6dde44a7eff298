"""Demo ticks for the fuzzed stack: a simulated NIFTY session (spot, INDVIX, futures, option chain) of the last
minutes, run through the real pipeline, so realtime prices, Greeks, the chain, bars and indicators have data.

Run inside the fuzz stack's environment: ``python -m tests.fuzz.seed --ticks 4000``. Prints the path parameter
values the fuzzer should use (instrument keys, expiries) as JSON on its last line."""

from __future__ import annotations

import argparse
import json
import os
from datetime import UTC, datetime, timedelta

import django


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ticks", type=int, default=4000)
    parser.add_argument("--minutes", type=float, default=30.0, help="the session starts this long ago")
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "signal_project.settings")
    django.setup()
    # after django.setup(): the pipeline's modules read settings and models at import
    from feed.simulator import NiftySession
    from feed.ticks import parse_tick
    from signals.pipeline.batch import process_batch

    session = NiftySession(start=datetime.now(UTC) - timedelta(minutes=args.minutes), strikes_each_side=3, seed=7)
    rate = args.ticks / (args.minutes * 60)
    batch: list[dict] = []
    keys: set[str] = set()
    for n, (stream, tick) in enumerate(session.ticks(rate)):
        if n >= args.ticks:
            break
        normalised = parse_tick(tick)
        normalised["source_id"] = f"{stream}/{n + 1}-0"
        keys.add(normalised["instrument_key"])
        batch.append(normalised)
        if len(batch) == 500:
            process_batch(batch)
            batch = []
    if batch:
        process_batch(batch)
    options = sorted(k for k in keys if "@options@" in k)
    expiries = sorted({k.split("@")[3] for k in options})
    print(json.dumps({"instrument_keys": sorted(keys), "options": options, "expiries": expiries}))


if __name__ == "__main__":
    main()

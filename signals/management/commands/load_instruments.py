"""Load instruments into the registry from a CSV file (docs/REFERENCE.md §4: strikes come from observed ticks and CSVs).

    python manage.py load_instruments instruments.csv

Columns: ``instrument_key`` (any accepted spelling), or ``exchange,symbol,product[,expiry[,right,strike]]``.
Loading the same file twice changes nothing; bad lines are reported and skipped.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from signals.instrument_registry import load_instruments_csv, parse_csv_instruments


class Command(BaseCommand):
    help = "Load instruments (e.g. an option chain) from a CSV file into the instrument registry."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("path", help="CSV file with a header row; '-' reads standard input")
        parser.add_argument("--strict", action="store_true", help="fail (load nothing) if any line is bad")

    def handle(self, *args: Any, **options: Any) -> None:
        path = options["path"]
        if path == "-":
            text = sys.stdin.read()
        else:
            file = Path(path)
            if not file.is_file():
                raise CommandError(f"{path}: no such file")
            text = file.read_text(encoding="utf-8-sig")
        if options["strict"]:
            _, errors = _check(text)
            if errors:
                raise CommandError("bad lines, nothing loaded:\n" + "\n".join(errors[:50]))
        loaded, errors = load_instruments_csv(text)
        for error in errors[:50]:
            self.stderr.write(error)
        if len(errors) > 50:
            self.stderr.write(f"... and {len(errors) - 50} more bad line(s)")
        self.stdout.write(self.style.SUCCESS(f"loaded {loaded} instrument(s); {len(errors)} bad line(s) skipped"))


def _check(text: str) -> tuple[int, list[str]]:
    found, errors = parse_csv_instruments(text)
    return len(found), errors

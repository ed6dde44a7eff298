"""The triggers on ``signal_ticks`` that keep the one-minute rollup's pending ranges (`signals.bars.rollup`).

Below both the rollup (which installs them) and `signals.bars.timescale` (which drops them before turning
``signal_ticks`` into a hypertable, since a hypertable refuses triggers with transition tables).
"""

from __future__ import annotations

PENDING = "signal_bars_rollup_pending"
FUNCTION = "signal_ticks_rollup_note"
#: One statement-level trigger per kind of change of ``signal_ticks``: name -> (event, transition tables).
TRIGGERS: dict[str, tuple[str, str]] = {
    "signal_ticks_rollup_insert": ("INSERT", "NEW TABLE AS new_ticks"),
    "signal_ticks_rollup_delete": ("DELETE", "OLD TABLE AS old_ticks"),
    "signal_ticks_rollup_update": ("UPDATE", "OLD TABLE AS old_ticks NEW TABLE AS new_ticks"),
}

def trigger_function_sql() -> str:
    """The trigger function: one pending row per instrument touched by the statement, (min, max) tick time.

    Kept to one grouped INSERT per statement, since the live pipeline pays for it on every batch (a few dozen
    rows per 1,000-tick batch, one per instrument)."""
    return f"""
CREATE OR REPLACE FUNCTION {FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO {PENDING} (instrument_key, lo, hi)
    SELECT instrument_key, min(time), max(time) FROM new_ticks GROUP BY instrument_key;
  ELSIF TG_OP = 'DELETE' THEN
    INSERT INTO {PENDING} (instrument_key, lo, hi)
    SELECT instrument_key, min(time), max(time) FROM old_ticks GROUP BY instrument_key;
  ELSE
    INSERT INTO {PENDING} (instrument_key, lo, hi)
    SELECT instrument_key, min(time), max(time)
    FROM (SELECT instrument_key, time FROM old_ticks UNION ALL SELECT instrument_key, time FROM new_ticks) t
    GROUP BY instrument_key;
  END IF;
  RETURN NULL;
END
$$"""


def create_trigger_sql() -> list[str]:
    statements = [trigger_function_sql()]
    for name, (event, tables) in TRIGGERS.items():
        statements.append(f"DROP TRIGGER IF EXISTS {name} ON signal_ticks")
        statements.append(f"CREATE TRIGGER {name} AFTER {event} ON signal_ticks REFERENCING {tables} "
                          f"FOR EACH STATEMENT EXECUTE FUNCTION {FUNCTION}()")
    return statements


def drop_trigger_sql() -> list[str]:
    return [f"DROP TRIGGER IF EXISTS {name} ON signal_ticks" for name in TRIGGERS] + [
        f"DROP FUNCTION IF EXISTS {FUNCTION}()"]


"""The results table, printed and written into docs/RELIABILITY.md between its markers."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from faults.run import Result

BEGIN = "<!-- faults:results:begin -->"
END = "<!-- faults:results:end -->"
SINKS = ("signal_ticks", "output stream", "output list", "latest values")


def _cell(result: Result, sink: str) -> str:
    for count in result.counts:
        if count.sink == sink:
            if sink == "latest values":
                return f"{count.expected - count.lost}/{count.expected} newest"
            return f"{count.lost} / {count.duplicated}"
    return "-"


def table(results: list[Result]) -> str:
    head = ("| scenario | ticks sent | records expected | " + " | ".join(f"{s} lost / dup" if s != "latest values" else s for s in SINKS)
            + " | settle (s) | API statuses | crashes | result |")
    lines = [head, "|" + " --- |" * (len(SINKS) + 7)]
    for r in results:
        settle = f"{r.settle_s:.1f}" if r.settle_s is not None else "not settled"
        api = ", ".join(f"{'none' if code == 0 else code}: {n}" for code, n in sorted(r.api.items())) or "-"
        crashes = ", ".join(f"{name} {n}" for name, n in r.crashes.items()) or "-"
        records = next((c.expected for c in r.counts if c.sink == "output stream"), 0)
        lines.append(f"| {r.scenario.name} | {r.sent} | {records} | " + " | ".join(_cell(r, s) for s in SINKS)
                     + f" | {settle} | {api} | {crashes} | {'pass' if r.ok else 'FAIL'} |")
    return "\n".join(lines)


def notes(results: list[Result]) -> str:
    lines = [f"- **{r.scenario.name}** ({r.scenario.fault}): {r.note}." for r in results]
    return "\n".join(lines) + "\n\nWorst settle per scenario: " + worst_settle(results) + "."


def worst_settle(results: list[Result]) -> str:
    """Each scenario's longest settle over its runs ("not settled" if any run did not)."""
    worst: dict[str, float | None] = {}
    for r in results:
        name = r.scenario.name
        if name in worst and worst[name] is None:
            continue
        worst[name] = None if r.settle_s is None else max(r.settle_s, worst.get(name) or 0.0)
    return ", ".join(f"{name} {'not settled' if s is None else f'{s:.1f} s'}" for name, s in worst.items())


def write_docs(path: Path, results: list[Result], settings: str) -> None:
    """Replace the measured section of ``path`` (kept between the markers) with these results."""
    text = path.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{path} has no {BEGIN} ... {END} section to write the results into")
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    body = (f"{BEGIN}\nMeasured {stamp} ({settings}):\n\n{table(results)}\n\n{notes(results)}\n{END}")
    head, rest = text.split(BEGIN, 1)
    path.write_text(head + body + rest.split(END, 1)[1])

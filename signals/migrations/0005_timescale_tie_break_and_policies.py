"""TimescaleDB only (issue 16): the continuous aggregates again, with ticks of one instant ordered by source id as on
every other path (``first``/``last`` over ``(time, source_id COLLATE "C")``), without ``signal_bars_1h`` (never read),
and the retention and compression policies from the current settings. Plain PostgreSQL: nothing.

Non-atomic: creating continuous aggregates and refreshing them over existing rows cannot run inside a transaction
block. Not reversible in substance: going back leaves the new layout (the old aggregates broke ties arbitrarily).
"""

from django.db import migrations


def forward(apps, schema_editor):
    from signals.bars import timescale

    timescale.reapply(schema_editor.connection)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("signals", "0004_bar_rollup"),
    ]

    operations = [
        migrations.RunPython(forward, migrations.RunPython.noop, elidable=False),
    ]

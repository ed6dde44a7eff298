"""TimescaleDB layout when the extension exists (hypertables, compression and retention policies, continuous
aggregates with real-time aggregation and refresh policies); plain indexed PostgreSQL tables otherwise.

Non-atomic: creating continuous aggregates and refreshing them over existing rows cannot run inside a transaction
block. Reversing drops the aggregates and policies; hypertables stay hypertables (their rows are untouched), which
plain SQL and the ORM use like ordinary tables. See signals/bars/timescale.py.
"""

from django.db import migrations


def forward(apps, schema_editor):
    from signals.bars import timescale

    timescale.apply(schema_editor.connection)


def backward(apps, schema_editor):
    from signals.bars import timescale

    timescale.remove(schema_editor.connection)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("signals", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(forward, backward, elidable=False),
    ]

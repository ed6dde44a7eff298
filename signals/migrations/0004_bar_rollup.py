"""The one-minute bar rollup of plain PostgreSQL (issue 5; see signals/bars/rollup.py).

Creates ``signal_bars_1m_rollup`` (the columns of the ``signal_bars_1m`` continuous aggregate) and
``signal_bars_rollup_pending`` (ranges of tick time to aggregate again). Then, only where TimescaleDB is not set up
(no continuous aggregates, ``signal_ticks`` not a hypertable), the statement-level triggers on ``signal_ticks`` that
record those ranges, and a pending range per instrument and exchange day for the ticks already stored (the refresh
task folds them in, a bounded piece at a time). With TimescaleDB the tables stay empty and unread.

Reversing drops the triggers and their function, then the tables.
"""

from django.db import migrations, models


def forward(apps, schema_editor):
    from signals.bars import rollup

    with schema_editor.connection.cursor() as cursor:
        rollup.install(cursor)


def backward(apps, schema_editor):
    from signals.bars import rollup

    with schema_editor.connection.cursor() as cursor:
        rollup.uninstall(cursor)


class Migration(migrations.Migration):

    dependencies = [
        ('signals', '0003_drop_indexes_covered_by_primary_keys'),
    ]

    operations = [
        migrations.CreateModel(
            name='BarRollup1m',
            fields=[
                ('pk', models.CompositePrimaryKey('instrument_key', 'bucket', blank=True, editable=False, primary_key=True, serialize=False)),
                ('instrument_key', models.CharField(max_length=128)),
                ('bucket', models.DateTimeField()),
                ('open', models.FloatField()),
                ('high', models.FloatField()),
                ('low', models.FloatField()),
                ('close', models.FloatField()),
                ('vmax', models.FloatField(null=True)),
                ('oi', models.FloatField(null=True)),
                ('oi_time', models.DateTimeField(null=True)),
                ('first_time', models.DateTimeField()),
                ('last_time', models.DateTimeField()),
                ('ticks', models.BigIntegerField()),
            ],
            options={
                'db_table': 'signal_bars_1m_rollup',
            },
        ),
        migrations.CreateModel(
            name='RollupPending',
            fields=[
                ('id', models.BigAutoField(primary_key=True, serialize=False)),
                ('instrument_key', models.CharField(max_length=128)),
                ('lo', models.DateTimeField()),
                ('hi', models.DateTimeField()),
            ],
            options={
                'db_table': 'signal_bars_rollup_pending',
                'indexes': [models.Index(fields=['instrument_key'], name='signal_rollup_pending_key')],
            },
        ),
        migrations.RunPython(forward, backward, elidable=False),
    ]

"""A backtest record is stored as its compact JSON text (bytea) instead of jsonb: the server's jsonb parsing of the
records cost more than replaying them (docs/BENCHMARKS.md, backtest section), and nothing queries inside a record."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('signals', '0006_backtests'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunSQL(
                "ALTER TABLE signal_backtest_records ALTER COLUMN record TYPE bytea "
                "USING convert_to(record::text, 'UTF8')",
                "ALTER TABLE signal_backtest_records ALTER COLUMN record TYPE jsonb "
                "USING convert_from(record, 'UTF8')::jsonb")],
            state_operations=[
                migrations.RemoveField(model_name='backtestrecord', name='record'),
                migrations.AddField(model_name='backtestrecord', name='document',
                                    field=models.BinaryField(db_column='record', default=b''),
                                    preserve_default=False),
            ],
        ),
    ]

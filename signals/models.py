"""Time-series tables. Each has a composite primary key that starts with the instrument and includes the time
column, so re-delivered ticks collide instead of duplicating, and the tables can become TimescaleDB hypertables
(whose unique indexes must contain the time column). The keys also serve "instrument over a time range" scans, so
no secondary index is kept: each would cost every insert of the hot path."""

from typing import Any

import orjson
from django.db import models


class Tick(models.Model):
    """A raw tick as received. ``source_id`` is ``stream/entry-id`` for live ticks and a content hash for imports."""

    pk = models.CompositePrimaryKey("instrument_key", "time", "source_id")
    instrument_key = models.CharField(max_length=128)
    time = models.DateTimeField()
    source_id = models.CharField(max_length=128)
    ltp = models.FloatField()
    open = models.FloatField(null=True)
    high = models.FloatField(null=True)
    low = models.FloatField(null=True)
    close = models.FloatField(null=True)
    volume = models.BigIntegerField(null=True)
    oi = models.BigIntegerField(null=True)
    bid = models.FloatField(null=True)
    ask = models.FloatField(null=True)
    ltq = models.BigIntegerField(null=True)

    class Meta:
        db_table = "signal_ticks"

    def __str__(self) -> str:
        return f"{self.instrument_key} {self.time.isoformat()} {self.ltp}"


class ComputedSignal(models.Model):
    """One computation's result for one tick and config (everything but the typed Greeks history)."""

    pk = models.CompositePrimaryKey("instrument_key", "time", "source_id", "config_id", "computation_type", "name")
    instrument_key = models.CharField(max_length=128)
    time = models.DateTimeField()
    source_id = models.CharField(max_length=128)
    config_id = models.BigIntegerField()
    computation_type = models.CharField(max_length=32)
    name = models.CharField(max_length=128)
    results = models.JSONField(null=True)
    success = models.BooleanField(default=True)
    error = models.TextField(blank=True, default="")
    execution_time_ms = models.FloatField(default=0.0)

    class Meta:
        db_table = "signal_computed"

    def __str__(self) -> str:
        return f"{self.instrument_key} {self.time.isoformat()} {self.computation_type}:{self.name}"


class GreeksRecord(models.Model):
    """Typed Greeks history: one row per option tick, config and price field (ltp/open/high/low/close).

    Units as vollib's analytical Greeks: theta per calendar day, vega and rho per percentage point, iv decimal.
    The Greek columns are `greeks.GREEK_NAMES` (a test holds them equal).
    """

    pk = models.CompositePrimaryKey("instrument_key", "time", "source_id", "config_id", "price_field")
    instrument_key = models.CharField(max_length=128)
    time = models.DateTimeField()
    source_id = models.CharField(max_length=128)
    config_id = models.BigIntegerField()
    price_field = models.CharField(max_length=8)
    option_price = models.FloatField(null=True)
    underlying_price = models.FloatField(null=True)
    time_to_expiry = models.FloatField(null=True)
    iv = models.FloatField(null=True)
    sigma = models.FloatField(null=True)
    delta = models.FloatField(null=True)
    gamma = models.FloatField(null=True)
    theta = models.FloatField(null=True)
    vega = models.FloatField(null=True)
    rho = models.FloatField(null=True)
    sigma_source = models.CharField(max_length=16, blank=True, default="")
    status = models.CharField(max_length=32, blank=True, default="")

    class Meta:
        db_table = "signal_greeks"

    def __str__(self) -> str:
        return f"{self.instrument_key} {self.time.isoformat()} {self.price_field}"


class InstrumentRecord(models.Model):
    """The instrument registry: every instrument seen on a stream (or loaded from a CSV)."""

    key = models.CharField(max_length=128, primary_key=True)
    exchange = models.CharField(max_length=16)
    symbol = models.CharField(max_length=64)
    product = models.CharField(max_length=16)
    underlying_key = models.CharField(max_length=128, db_index=True)
    expiry = models.DateField(null=True, blank=True)
    right = models.CharField(max_length=4, blank=True, default="")
    strike = models.DecimalField(max_digits=14, decimal_places=4, null=True, blank=True)
    first_seen = models.DateTimeField(auto_now_add=True)
    last_seen = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "signal_instruments"
        indexes = [models.Index(fields=["underlying_key", "expiry", "strike"], name="signal_instr_chain")]
        ordering = ["key"]

    def __str__(self) -> str:
        return self.key


class BarRollup1m(models.Model):
    """One-minute bars of ``signal_ticks`` on plain PostgreSQL: the stand-in for the ``signal_bars_1m`` continuous
    aggregate, with its columns (read by the same SQL, `signals.bars.sql.bars_sql`), kept current by
    `signals.bars.rollup` from the ranges the ``signal_ticks`` trigger records in :class:`RollupPending`."""

    pk = models.CompositePrimaryKey("instrument_key", "bucket")
    instrument_key = models.CharField(max_length=128)
    bucket = models.DateTimeField()
    open = models.FloatField()
    high = models.FloatField()
    low = models.FloatField()
    close = models.FloatField()
    vmax = models.FloatField(null=True)
    oi = models.FloatField(null=True)
    oi_time = models.DateTimeField(null=True)
    first_time = models.DateTimeField()
    last_time = models.DateTimeField()
    ticks = models.BigIntegerField()

    class Meta:
        db_table = "signal_bars_1m_rollup"

    def __str__(self) -> str:
        return f"{self.instrument_key} {self.bucket.isoformat()} {self.close}"


class RollupPending(models.Model):
    """A range of tick time (``lo``..``hi``, inclusive) of one instrument whose one-minute buckets must be
    aggregated again: written by the trigger on ``signal_ticks``, consumed by `signals.bars.rollup.refresh`."""

    id = models.BigAutoField(primary_key=True)
    instrument_key = models.CharField(max_length=128)
    lo = models.DateTimeField()
    hi = models.DateTimeField()

    class Meta:
        db_table = "signal_bars_rollup_pending"
        indexes = [models.Index(fields=["instrument_key"], name="signal_rollup_pending_key")]

    def __str__(self) -> str:
        return f"{self.instrument_key} {self.lo.isoformat()}..{self.hi.isoformat()}"


class BacktestRun(models.Model):
    """A replay of stored ticks through the computations (`signals.backtest`): what was asked, how far it got."""

    STATUSES = ("pending", "running", "completed", "failed")
    id = models.UUIDField(primary_key=True)
    name = models.CharField(max_length=128, blank=True, default="")
    status = models.CharField(max_length=16, default="pending", choices=[(s, s) for s in STATUSES])
    start_time = models.DateTimeField()
    end_time = models.DateTimeField()
    instruments = models.JSONField(default=list)  # the patterns asked for
    configs = models.JSONField(default=list)  # [{id, name, pattern, frequency, document}] as the run uses them
    underlyings = models.JSONField(default=list)  # symbol keys replayed, one task chain each
    ticks_total = models.BigIntegerField(default=0)  # stored ticks in range when the run was created
    batch_ticks = models.IntegerField(default=1)  # ticks per replayed batch: 1 = live keeping up with its feed
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    created_by = models.CharField(max_length=150, blank=True, default="")

    class Meta:
        db_table = "signal_backtest_runs"
        ordering = ("-created_at",)

    def __str__(self) -> str:
        return f"{self.name or self.id} ({self.status})"


class BacktestState(models.Model):
    """One underlying of a run: where its replay stands (the next chunk, the cursor in the stored ticks) and the
    state the previous chunk left (latest values, history, bars' ticks, cached results), written in the chunk's
    transaction so the next chunk, on any worker, continues from it."""

    id = models.BigAutoField(primary_key=True)
    run = models.ForeignKey(BacktestRun, on_delete=models.CASCADE, related_name="states")
    underlying = models.CharField(max_length=128)
    next_chunk = models.IntegerField(default=0)
    done = models.BooleanField(default=False)
    state = models.BinaryField(default=b"")
    ticks = models.BigIntegerField(default=0)
    records = models.BigIntegerField(default=0)
    errors = models.JSONField(default=dict)  # config name -> failed computations
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "signal_backtest_states"
        constraints = [models.UniqueConstraint(fields=["run", "underlying"], name="signal_backtest_state_unique")]

    def __str__(self) -> str:
        return f"{self.run_id} {self.underlying} chunk {self.next_chunk}"


class BacktestRecord(models.Model):
    """One record of a run, in the shape of the live ``computed_data`` records; a chunk's records are replaced as
    a whole when the chunk is redone."""

    id = models.BigAutoField(primary_key=True)
    run = models.ForeignKey(BacktestRun, on_delete=models.CASCADE, related_name="results")
    underlying = models.CharField(max_length=128)
    chunk = models.IntegerField()
    seq = models.IntegerField()  # order within the chunk
    instrument_key = models.CharField(max_length=128)
    time = models.DateTimeField()
    config_id = models.BigIntegerField()
    # the record's compact JSON (`signals.backtest.records`): stored whole, read whole, never queried inside
    document = models.BinaryField(db_column="record")

    class Meta:
        db_table = "signal_backtest_records"
        indexes = [models.Index(fields=["run", "instrument_key", "time"], name="signal_backtest_rec_key"),
                   models.Index(fields=["run", "underlying", "chunk"], name="signal_backtest_rec_chunk")]

    def __str__(self) -> str:
        return f"{self.run_id} {self.instrument_key} {self.time.isoformat()}"

    @property
    def record(self) -> dict[str, Any]:
        """The record, in the shape of a live ``computed_data`` record."""
        return orjson.loads(bytes(self.document))

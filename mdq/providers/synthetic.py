"""The ``synthetic`` provider: deterministic, seeded, realistic candles, with optional faults.

Candles sit on a continuous grid (multiples of the timeframe since 1970-01-01T00:00Z, a 24/7
calendar). Each candle is a pure function of (seed, symbol, timeframe, grid index), so any window
gives the same candles for the same instants and re-fetching is reproducible. The log price is a
random walk built in blocks of :data:`BLOCK` candles: a coarse walk fixes each block's first
price, and a Brownian bridge inside the block joins it to the next block's — so a window costs
O(candles + blocks) with numpy, about 1-2 s per 10M candles.

Faults (all optional, all deterministic per candle):

* ``hole_rate``: a candle is missing;
* ``duplicate_rate``: a candle is returned twice (identical rows, as with overlapping pages);
* ``spike_rate`` / ``spike_size``: the close (and high) jump by ``spike_size`` (0.3 = +30 %)
  for one candle, then the walk continues from the true price (a bad tick);
* ``splits``: ``{symbol: [(effective ts, ratio), ...]}``: candles before the effective time
  are unadjusted (prices times ``ratio``, volume divided by it);
* ``stale_after``: the feed stops; no candle at or after this instant is returned.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from mdq.providers.base import FetchResult, Instrument, Series, empty_candles
from mdq.validation import parse_timeframe, timeframe_seconds
from mdq.windows import Window

PROVIDER = "synthetic"
#: Candles per block of the random walk (see the module docstring).
BLOCK = 4096
#: Annualised volatility of the walk (0.5 = 50 %/year), a crypto-like level.
ANNUAL_VOLATILITY = 0.5
_YEAR_SECONDS = 365.25 * 86400


@dataclass(frozen=True)
class Faults:
    """Faults to inject (see the module docstring); all off by default.

    Attributes:
        hole_rate: probability that a candle is missing, in [0, 1).
        duplicate_rate: probability that a candle is returned twice.
        spike_rate: probability of a one-candle spike.
        spike_size: relative size of a spike (0.3 = +30 %).
        splits: symbol → list of (effective UTC time, ratio new shares per old share).
        stale_after: no candle at or after this instant (UTC-aware), or None.
    """

    hole_rate: float = 0.0
    duplicate_rate: float = 0.0
    spike_rate: float = 0.0
    spike_size: float = 0.3
    splits: dict[str, list[tuple[datetime, float]]] = field(default_factory=dict)
    stale_after: datetime | None = None


class SyntheticProvider:
    """Generated candles for any number of symbols.

    Args:
        symbols: the symbols it serves.
        timeframes: the timeframes it serves.
        seed: the seed; the same seed gives the same candles.
        asset_class: asset class of every symbol.
        base_price: price level at the start of the walk (quote currency).
        faults: faults to inject.
        now: the fetch time (UTC-aware); default: the real time of each fetch. Candles that
            start after it are not returned; the one containing it is still forming.
        sparse: a sparse feed: an empty answer is confirmed by the source (BH-07).

    Raises:
        UnsupportedTimeframe: a timeframe is unknown.
    """

    name = PROVIDER

    def __init__(
        self,
        symbols: list[str],
        timeframes: list[str] | tuple[str, ...] = ("1m",),
        *,
        seed: int = 0,
        asset_class: str = "crypto",
        base_price: float = 100.0,
        faults: Faults | None = None,
        now: datetime | None = None,
        sparse: bool = False,
    ) -> None:
        self.symbols = list(symbols)
        self.timeframes = [parse_timeframe(t) for t in timeframes]
        self.seed = int(seed)
        self.asset_class = asset_class
        self.base_price = float(base_price)
        self.faults = faults or Faults()
        self.now = now
        self.sparse = sparse

    def list_series(self) -> list[Series]:
        """Every (symbol, timeframe) combination, sorted; no known first/last ``ts``."""
        return [
            Series(Instrument(s, self.asset_class, "24/7", "SYNTH", "USD"), t)
            for s in sorted(self.symbols)
            for t in self.timeframes
        ]

    def _keys(self, symbol: str, timeframe: str) -> list[int]:
        return [self.seed, zlib.crc32(symbol.encode()), timeframe_seconds(timeframe)]

    def fetch_candles(self, symbol: str, timeframe: str, window: Window) -> FetchResult:
        """Generate the candles of one series inside ``[window.start, window.end)``.

        Returns:
            Candles sorted by ``ts`` (duplicates, if injected, next to each other);
            ``source_row`` is the grid index.
        """
        fetched_at = self.now or datetime.now(UTC)
        step = timeframe_seconds(timeframe)
        end = min(window.end, fetched_at)  # the forming candle (ts <= now) is included
        if self.faults.stale_after is not None:
            end = min(end, self.faults.stale_after)
        first = -(-int(window.start.timestamp()) // step)  # ceil
        stop = -(-int(end.timestamp()) // step)
        if window.end > fetched_at and int(fetched_at.timestamp()) % step != 0:
            stop = max(stop, int(fetched_at.timestamp()) // step + 1)
            stop = min(stop, -(-int(window.end.timestamp()) // step))
        source = f"synthetic:seed={self.seed}"
        if stop <= first or symbol not in self.symbols or timeframe not in self.timeframes:
            return FetchResult(empty_candles(), [], fetched_at, source, self.sparse)
        frame = self._generate(symbol, timeframe, first, stop)
        return FetchResult(frame, [], fetched_at, source, self.sparse)

    def _generate(self, symbol: str, timeframe: str, first: int, stop: int) -> pd.DataFrame:
        step = timeframe_seconds(timeframe)
        sigma = ANNUAL_VOLATILITY * np.sqrt(step / _YEAR_SECONDS)
        keys = self._keys(symbol, timeframe)
        b0, b1 = first // BLOCK, (stop - 1) // BLOCK
        # coarse walk: log price at the start of blocks 0..b1+1 (block 0 = 1970-01-01)
        coarse_rng = np.random.default_rng([*keys, 0xC0A55E])
        steps = coarse_rng.standard_normal(b1 + 2) * sigma * np.sqrt(BLOCK)
        level = np.cumsum(steps) - steps[0]
        log_base = np.log(self.base_price)
        n_blocks = b1 - b0 + 1
        incr = np.empty((n_blocks, BLOCK))
        shape = np.empty((3, n_blocks, BLOCK))
        f = self.faults
        any_fault = f.hole_rate > 0 or f.duplicate_rate > 0 or f.spike_rate > 0
        faults = np.ones((3, n_blocks if any_fault else 1, BLOCK))
        for j, block in enumerate(range(b0, b1 + 1)):
            rng = np.random.default_rng([*keys, block])
            incr[j] = rng.standard_normal(BLOCK)
            shape[:, j, :] = rng.random((3, BLOCK))
            if any_fault:
                faults[:, j, :] = rng.random((3, BLOCK))
        incr *= sigma
        walk = np.cumsum(incr, axis=1)
        target = (level[b0 + 1 : b1 + 2] - level[b0 : b1 + 1])[:, None]
        ramp = np.arange(1, BLOCK + 1) / BLOCK
        walk = walk - ramp[None, :] * (walk[:, -1:] - target)
        close_log = level[b0 : b1 + 1, None] + walk
        open_log = np.concatenate([level[b0 : b1 + 1, None], close_log[:, :-1]], axis=1)
        lo, hi = first - b0 * BLOCK, stop - b0 * BLOCK
        close_log = close_log.ravel()[lo:hi] + log_base
        open_log = open_log.ravel()[lo:hi] + log_base
        u_high, u_low, u_vol = (s.ravel()[lo:hi] for s in shape)
        if any_fault:
            f_hole, f_dup, f_spike = (x.ravel()[lo:hi] for x in faults)
        open_ = np.exp(open_log)
        close = np.exp(close_log)
        high = np.maximum(open_, close) * np.exp(sigma * 0.6 * u_high)
        low = np.minimum(open_, close) * np.exp(-sigma * 0.6 * u_low)
        volume = np.round(np.exp(6.0 + 1.2 * (u_vol - 0.5)) * 10) / 10
        index = np.arange(first, stop, dtype=np.int64)
        ts_ns = index * step * 10**9
        if f.spike_rate > 0:
            spike = f_spike < f.spike_rate
            close = np.where(spike, close * (1 + f.spike_size), close)
            high = np.maximum(high, close)
            low = np.minimum(low, close)
        for effective, ratio in f.splits.get(symbol, []):
            before = ts_ns < int(pd.Timestamp(effective).value)
            for arr in (open_, high, low, close):
                arr[before] *= ratio
            volume[before] /= ratio
        keep = np.ones(len(index), dtype=bool)
        if f.hole_rate > 0:
            keep &= f_hole >= f.hole_rate
        repeat = np.where(keep, 1, 0)
        if f.duplicate_rate > 0:
            repeat = repeat + (keep & (f_dup < f.duplicate_rate))
        take: np.ndarray | slice = (
            np.repeat(np.arange(len(index)), repeat) if any_fault else slice(None)
        )
        n = len(index[take])
        zeros = np.zeros(n, dtype=np.int8)
        return pd.DataFrame(
            {
                "symbol": pd.Categorical.from_codes(zeros, [symbol]),
                "asset_class": pd.Categorical.from_codes(zeros, [self.asset_class]),
                "timeframe": pd.Categorical.from_codes(zeros, [timeframe]),
                "ts": pd.DatetimeIndex(ts_ns[take].view("datetime64[ns]")).tz_localize("UTC"),
                "open": open_[take],
                "high": high[take],
                "low": low[take],
                "close": close[take],
                "volume": volume[take],
                "source_row": index[take],
            }
        )

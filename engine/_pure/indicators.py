"""Streaming technical indicators: the pure-Python twin of the compiled ``engine._ext.indicators`` kernel.

Same public API and the same behaviour: the compiled kernel does the same float operations in the same
order, so both give the same values (the tests hold them to 1e-9 relative, NaN positions identical).

Indicators are *float* kernels: inputs and outputs are C doubles (Python ``float``), never ``Decimal``;
they feed signals, not money. Every indicator is O(1) per update (amortized for ``StdDev``/``Bollinger``,
see below): ring buffers are allocated at construction, Donchian keeps monotonic deques.

Each indicator has ``update(...)`` returning its main value, ``value`` (NaN until ``ready``), ``ready``
and ``reset()``. Periods are keyword arguments, validated (``ValueError`` naming the field and value).

Conventions (matching TA-Lib where TA-Lib has the indicator, checked against ``talib`` in the tests):

- ``SMA``, ``WMA``: ready after ``period`` values.
- ``EMA``: k = 2 / (period + 1), seeded with the SMA of the first ``period`` values.
- ``StdDev``: population standard deviation (TA-Lib ``STDDEV`` with nbdev=1). Computed from sums of
  deviations from an anchor value that is re-anchored (and the sums recomputed exactly from the ring)
  every ``period`` updates: more accurate than raw sums of squares and exactly 0 on a constant window
  once anchored; the variance is clamped at 0 below its rounding noise.
- ``RSI`` (Wilder): first averages are the simple means of the first ``period`` changes (ready at the
  ``period + 1``-th value), then Wilder smoothing. No gains and no losses (flat) gives 0, like TA-Lib;
  no losses gives 100.
- ``ATR`` (Wilder): the first true range is at the second bar; the first ATR is the mean of the first
  ``period`` true ranges (ready at bar index ``period``), then Wilder smoothing.
- ``MACD``: like TA-Lib, both EMAs are seeded so that they align at index ``slow - 1``: the slow EMA with
  the SMA of the first ``slow`` values, the fast EMA with the SMA of the ``fast`` values *ending* at index
  ``slow - 1``. The signal EMA is seeded with the SMA of the first ``signal`` MACD values; ready at index
  ``slow + signal - 2``. ``fast`` must be below ``slow``.
- ``Bollinger``: middle = SMA, bands = middle +/- k * population stddev (TA-Lib ``BBANDS`` matype=0).
  ``percent_b`` is 0.5 and ``bandwidth`` 0 when the bands have zero width.
- ``OBV``: the first value is the first volume (TA-Lib).
- ``VWAP``: session VWAP; a ``ts_ms`` in a later session (UTC multiples of ``session_ms``) restarts
  it; NaN (not ready) until the session has volume.
- ``Supertrend``: TradingView's ``ta.supertrend`` (ATR = RMA of true range with the first bar's true
  range = high - low, ready at index ``period - 1``; final-band carry rules), but ``direction`` is +1 for
  an up trend (line = lower band) and -1 for a down trend (line = upper band); the first ready bar is a
  down trend with the raw bands.
- ``Donchian``: highest high / lowest low of the last ``period`` bars; middle is their mean.
- ``WaveTrend``: LazyBear's WaveTrend with Pine EMAs (alpha = 2 / (n + 1), seeded with the first
  value); ci = 0 when the mean deviation is 0; ready when ``wt2`` (SMA of wt1) is, at index
  ``signal - 1``.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

__all__ = [
    "ATR",
    "EMA",
    "MACD",
    "OBV",
    "RSI",
    "SMA",
    "VWAP",
    "WMA",
    "Bollinger",
    "Donchian",
    "IndicatorSet",
    "StdDev",
    "Supertrend",
    "WaveTrend",
    "atr_batch",
    "bollinger_batch",
    "donchian_batch",
    "ema_batch",
    "macd_batch",
    "obv_batch",
    "rsi_batch",
    "sma_batch",
    "stddev_batch",
    "supertrend_batch",
    "vwap_batch",
    "wavetrend_batch",
    "wma_batch",
]

NAN = math.nan
_VAR_NOISE = 64.0 * 2.220446049250313e-16

FloatArray = npt.NDArray[np.float64]


def _period(name: str, value: int) -> int:
    value = operator.index(value)
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


def _positive(name: str, value: float) -> float:
    value = float(value)
    if not (0.0 < value < math.inf):
        raise ValueError(f"{name} must be a finite number > 0, got {value}")
    return value


class SMA:
    """Simple moving average over the last ``period`` values."""

    __slots__ = ("_buf", "_count", "_idx", "_sum", "period", "ready", "value")

    def __init__(self, *, period: int) -> None:
        self.period: int = _period("period", period)
        self._buf: list[float] = [0.0] * self.period
        self.reset()

    def reset(self) -> None:
        self._buf[:] = [0.0] * self.period
        self._idx = 0
        self._count = 0
        self._sum = 0.0
        self.value: float = NAN
        self.ready: bool = False

    def update(self, x: float) -> float:
        x = float(x)
        buf = self._buf
        buf[self._idx] = x
        idx = self._idx + 1
        if idx == self.period:
            idx = 0
        self._idx = idx
        self._count += 1
        t = self._sum + x
        if self._count >= self.period:
            self.value = t / self.period
            self.ready = True
            self._sum = t - buf[idx]
        else:
            self._sum = t
        return self.value


class EMA:
    """Exponential moving average, k = 2 / (period + 1), seeded with the SMA of the first values."""

    __slots__ = ("_count", "_k", "_sum", "period", "ready", "value")

    def __init__(self, *, period: int) -> None:
        self.period: int = _period("period", period)
        self._k = 2.0 / (self.period + 1)
        self.reset()

    def reset(self) -> None:
        self._count = 0
        self._sum = 0.0
        self.value: float = NAN
        self.ready: bool = False

    def update(self, x: float) -> float:
        x = float(x)
        if self.ready:
            self.value = (x - self.value) * self._k + self.value
            return self.value
        self._count += 1
        self._sum += x
        if self._count == self.period:
            self.value = self._sum / self.period
            self.ready = True
        return self.value


class WMA:
    """Linearly weighted moving average (weights 1..period, newest heaviest)."""

    __slots__ = (
        "_buf", "_count", "_divider", "_idx", "_sub", "_trailing", "_wsum", "period", "ready", "value",
    )  # fmt: skip

    def __init__(self, *, period: int) -> None:
        self.period: int = _period("period", period)
        self._divider = (self.period * (self.period + 1)) / 2.0
        self._buf: list[float] = [0.0] * self.period
        self.reset()

    def reset(self) -> None:
        self._buf[:] = [0.0] * self.period
        self._idx = 0
        self._count = 0
        self._sub = 0.0
        self._wsum = 0.0
        self._trailing = 0.0
        self.value: float = NAN
        self.ready: bool = False

    def update(self, x: float) -> float:
        x = float(x)
        buf = self._buf
        buf[self._idx] = x
        idx = self._idx + 1
        if idx == self.period:
            idx = 0
        self._idx = idx
        self._count += 1
        if self._count < self.period:
            self._sub += x
            self._wsum += x * self._count
            return self.value
        self._sub += x
        self._sub -= self._trailing
        self._wsum += x * self.period
        self._trailing = buf[idx]
        self.value = self._wsum / self._divider
        self.ready = True
        self._wsum -= self._sub
        return self.value


class StdDev:
    """Population standard deviation over the last ``period`` values (TA-Lib STDDEV, nbdev=1)."""

    __slots__ = ("_anchor", "_buf", "_count", "_idx", "_s1", "_s2", "period", "ready", "value")

    def __init__(self, *, period: int) -> None:
        self.period: int = _period("period", period)
        self._buf: list[float] = [0.0] * self.period
        self.reset()

    def reset(self) -> None:
        self._buf[:] = [0.0] * self.period
        self._idx = 0
        self._count = 0
        self._anchor = 0.0
        self._s1 = 0.0
        self._s2 = 0.0
        self.value: float = NAN
        self.ready: bool = False

    def update(self, x: float) -> float:
        x = float(x)
        n = self.period
        buf = self._buf
        if self._count == 0:
            self._anchor = x
        idx = self._idx
        d = x - self._anchor
        if self._count >= n:
            old = buf[idx] - self._anchor
            self._s1 += d - old
            self._s2 += d * d - old * old
        else:
            self._s1 += d
            self._s2 += d * d
        buf[idx] = x
        idx += 1
        self._count += 1
        if idx == n:
            idx = 0
            # re-anchor on the newest value and recompute the sums exactly (amortized O(1))
            a = x
            s1 = 0.0
            s2 = 0.0
            for i in range(n):
                e = buf[i] - a
                s1 += e
                s2 += e * e
            self._anchor = a
            self._s1 = s1
            self._s2 = s2
        self._idx = idx
        if self._count >= n:
            m1 = self._s1 / n
            m2 = self._s2 / n
            var = m2 - m1 * m1
            self.value = math.sqrt(var) if var > m2 * _VAR_NOISE else 0.0
            self.ready = True
        return self.value


class RSI:
    """Relative strength index with Wilder smoothing (TA-Lib RSI)."""

    __slots__ = ("_count", "_gain", "_loss", "_prev", "period", "ready", "value")

    def __init__(self, *, period: int = 14) -> None:
        self.period: int = _period("period", period)
        self.reset()

    def reset(self) -> None:
        self._count = 0
        self._prev = 0.0
        self._gain = 0.0
        self._loss = 0.0
        self.value: float = NAN
        self.ready: bool = False

    def _out(self) -> None:
        total = self._gain + self._loss
        self.value = 100.0 * (self._gain / total) if total != 0.0 else 0.0

    def update(self, x: float) -> float:
        x = float(x)
        diff = x - self._prev
        self._prev = x
        self._count += 1
        n = self.period
        if self.ready:
            self._loss *= n - 1
            self._gain *= n - 1
            if diff < 0.0:
                self._loss -= diff
            else:
                self._gain += diff
            self._loss /= n
            self._gain /= n
            self._out()
            return self.value
        if self._count == 1:
            return self.value
        if diff < 0.0:
            self._loss -= diff
        else:
            self._gain += diff
        if self._count == n + 1:
            self._loss /= n
            self._gain /= n
            self.ready = True
            self._out()
        return self.value


class ATR:
    """Average true range with Wilder smoothing (TA-Lib ATR)."""

    __slots__ = ("_count", "_prev_close", "_sum", "period", "ready", "value")

    def __init__(self, *, period: int = 14) -> None:
        self.period: int = _period("period", period)
        self.reset()

    def reset(self) -> None:
        self._count = 0
        self._prev_close = 0.0
        self._sum = 0.0
        self.value: float = NAN
        self.ready: bool = False

    def update(self, high: float, low: float, close: float) -> float:
        high = float(high)
        low = float(low)
        close = float(close)
        pc = self._prev_close
        self._prev_close = close
        self._count += 1
        if self._count == 1:
            return self.value
        tr = high - low
        v = abs(low - pc)
        if v > tr:
            tr = v
        v = abs(high - pc)
        if v > tr:
            tr = v
        n = self.period
        if self.ready:
            self.value = (self.value * (n - 1) + tr) / n
            return self.value
        self._sum += tr
        if self._count == n + 1:
            self.value = self._sum / n
            self.ready = True
        return self.value


class MACD:
    """MACD line, signal and histogram with TA-Lib's seeding (both EMAs aligned at ``slow - 1``)."""

    __slots__ = (
        "_count", "_fast_buf", "_fast_ema", "_kf", "_ks", "_ksig", "_nsig", "_sig_sum", "_slow_ema",
        "_slow_sum", "fast", "hist", "macd", "ready", "signal", "signal_period", "slow", "value",
    )  # fmt: skip

    def __init__(self, *, fast: int = 12, slow: int = 26, signal: int = 9) -> None:
        self.fast: int = _period("fast", fast)
        self.slow: int = _period("slow", slow)
        self.signal_period: int = _period("signal", signal)
        if self.fast >= self.slow:
            raise ValueError(f"fast must be < slow, got fast={self.fast} slow={self.slow}")
        self._kf = 2.0 / (self.fast + 1)
        self._ks = 2.0 / (self.slow + 1)
        self._ksig = 2.0 / (self.signal_period + 1)
        self._fast_buf: list[float] = [0.0] * self.fast
        self.reset()

    def reset(self) -> None:
        self._fast_buf[:] = [0.0] * self.fast
        self._count = 0
        self._slow_sum = 0.0
        self._fast_ema = 0.0
        self._slow_ema = 0.0
        self._sig_sum = 0.0
        self._nsig = 0
        self.macd: float = NAN
        self.signal: float = NAN
        self.hist: float = NAN
        self.value: float = NAN
        self.ready: bool = False

    def update(self, x: float) -> float:
        x = float(x)
        if self.ready:
            self._fast_ema = (x - self._fast_ema) * self._kf + self._fast_ema
            self._slow_ema = (x - self._slow_ema) * self._ks + self._slow_ema
            m = self._fast_ema - self._slow_ema
            s = (m - self.signal) * self._ksig + self.signal
            self.macd = m
            self.signal = s
            self.hist = m - s
            self.value = m
            return m
        count = self._count
        self._count = count + 1
        if count < self.slow:
            self._fast_buf[count % self.fast] = x
            self._slow_sum += x
            if count < self.slow - 1:
                return NAN
            # index slow - 1: seed both EMAs; the fast one from the `fast` values ending here
            self._slow_ema = self._slow_sum / self.slow
            start = (count + 1) % self.fast
            buf = self._fast_buf
            t = buf[start]
            for i in range(1, self.fast):
                t += buf[(start + i) % self.fast]
            self._fast_ema = t / self.fast
        else:
            self._fast_ema = (x - self._fast_ema) * self._kf + self._fast_ema
            self._slow_ema = (x - self._slow_ema) * self._ks + self._slow_ema
        m = self._fast_ema - self._slow_ema
        self._sig_sum += m
        self._nsig += 1
        if self._nsig == self.signal_period:
            s = self._sig_sum / self.signal_period
            self.macd = m
            self.signal = s
            self.hist = m - s
            self.value = m
            self.ready = True
            return m
        return NAN


class Bollinger:
    """Bollinger bands: SMA middle, bands at +/- k population standard deviations."""

    __slots__ = (
        "_sd", "_sma", "bandwidth", "k", "lower", "middle", "percent_b", "period", "ready", "upper", "value",
    )  # fmt: skip

    def __init__(self, *, period: int = 20, k: float = 2.0) -> None:
        self.period: int = _period("period", period)
        self.k: float = _positive("k", k)
        self._sma = SMA(period=self.period)
        self._sd = StdDev(period=self.period)
        self.reset()

    def reset(self) -> None:
        self._sma.reset()
        self._sd.reset()
        self.upper: float = NAN
        self.middle: float = NAN
        self.lower: float = NAN
        self.percent_b: float = NAN
        self.bandwidth: float = NAN
        self.value: float = NAN
        self.ready: bool = False

    def update(self, x: float) -> float:
        x = float(x)
        mid = self._sma.update(x)
        sd = self._sd.update(x)
        if not self._sma.ready:
            return NAN
        dev = self.k * sd
        up = mid + dev
        lo = mid - dev
        width = up - lo
        self.upper = up
        self.middle = mid
        self.lower = lo
        self.percent_b = (x - lo) / width if width != 0.0 else 0.5
        self.bandwidth = width / mid if mid != 0.0 else NAN
        self.value = mid
        self.ready = True
        return mid


class VWAP:
    """Session volume-weighted average price; a ``ts_ms`` in a later session restarts the session."""

    __slots__ = ("_has_session", "_pv", "_session", "_vol", "ready", "session_ms", "value")

    def __init__(self, *, session_ms: int = 86_400_000) -> None:
        self.session_ms: int = _period("session_ms", session_ms)
        self._has_session = False
        self._session = 0
        self.reset()

    def reset(self) -> None:
        """Start a new session."""
        self._pv = 0.0
        self._vol = 0.0
        self.value: float = NAN
        self.ready: bool = False

    def update(self, price: float, volume: float, ts_ms: int | None = None) -> float:
        price = float(price)
        volume = float(volume)
        if not (volume >= 0.0):
            raise ValueError(f"volume must be >= 0, got {volume}")
        if ts_ms is not None:
            ts_ms = operator.index(ts_ms)
            if ts_ms < 0:
                raise ValueError(f"ts_ms must be >= 0, got {ts_ms}")
            session = ts_ms // self.session_ms
            if not self._has_session:
                self._has_session = True
                self._session = session
            elif session > self._session:
                self._session = session
                self.reset()
        self._pv += price * volume
        self._vol += volume
        if self._vol > 0.0:
            self.value = self._pv / self._vol
            self.ready = True
        return self.value


class Supertrend:
    """TradingView Supertrend (RMA ATR, final-band carry); ``direction`` +1 up / -1 down."""

    __slots__ = (
        "_count", "_prev_close", "_rma_a", "_rma_b", "_tr_sum", "atr", "direction", "k", "lower", "period",
        "ready", "upper", "value",
    )  # fmt: skip

    def __init__(self, *, period: int = 10, k: float = 3.0) -> None:
        self.period: int = _period("period", period)
        self.k: float = _positive("k", k)
        self._rma_a = 1.0 / self.period
        self._rma_b = 1.0 - self._rma_a
        self.reset()

    def reset(self) -> None:
        self._count = 0
        self._prev_close = 0.0
        self._tr_sum = 0.0
        self.atr: float = NAN
        self.upper: float = NAN
        self.lower: float = NAN
        self.direction: int = 0
        self.value: float = NAN
        self.ready: bool = False

    def update(self, high: float, low: float, close: float) -> float:
        high = float(high)
        low = float(low)
        close = float(close)
        pc = self._prev_close
        self._prev_close = close
        tr = high - low
        if self._count > 0:
            v = abs(high - pc)
            if v > tr:
                tr = v
            v = abs(low - pc)
            if v > tr:
                tr = v
        self._count += 1
        n = self.period
        if self._count < n:
            self._tr_sum += tr
            return NAN
        if self._count == n:
            self._tr_sum += tr
            atr = self._tr_sum / n
        else:
            atr = self._rma_a * tr + self._rma_b * self.atr
        self.atr = atr
        src = (high + low) / 2.0
        up = src + self.k * atr
        lo = src - self.k * atr
        if self._count == n:
            direction = -1
        else:
            prev_up = self.upper
            prev_lo = self.lower
            if not (lo > prev_lo or pc < prev_lo):
                lo = prev_lo
            if not (up < prev_up or pc > prev_up):
                up = prev_up
            if self.value == prev_up:
                direction = 1 if close > up else -1
            else:
                direction = -1 if close < lo else 1
        self.upper = up
        self.lower = lo
        self.direction = direction
        self.value = lo if direction == 1 else up
        self.ready = True
        return self.value


class _MonoDeque:
    """Sliding-window extreme over the last ``period`` values (monotonic deque on a fixed ring)."""

    __slots__ = ("_head", "_idx", "_len", "_n", "_val")

    def __init__(self, n: int) -> None:
        self._n = n
        self._val = [0.0] * n
        self._idx = [0] * n
        self._head = 0
        self._len = 0

    def clear(self) -> None:
        self._head = 0
        self._len = 0

    def push(self, i: int, x: float, is_max: bool) -> float:
        n = self._n
        vals = self._val
        idxs = self._idx
        # drop the front when it left the window
        if self._len and idxs[self._head] <= i - n:
            self._head = (self._head + 1) % n
            self._len -= 1
        # drop from the back everything the new value dominates
        while self._len:
            back = (self._head + self._len - 1) % n
            if (vals[back] <= x) if is_max else (vals[back] >= x):
                self._len -= 1
            else:
                break
        pos = (self._head + self._len) % n
        vals[pos] = x
        idxs[pos] = i
        self._len += 1
        return vals[self._head]


class Donchian:
    """Donchian channel: highest high and lowest low of the last ``period`` bars, and their mean."""

    __slots__ = ("_count", "_max", "_min", "lower", "middle", "period", "ready", "upper", "value")

    def __init__(self, *, period: int = 20) -> None:
        self.period: int = _period("period", period)
        self._max = _MonoDeque(self.period)
        self._min = _MonoDeque(self.period)
        self.reset()

    def reset(self) -> None:
        self._max.clear()
        self._min.clear()
        self._count = 0
        self.upper: float = NAN
        self.lower: float = NAN
        self.middle: float = NAN
        self.value: float = NAN
        self.ready: bool = False

    def update(self, high: float, low: float) -> float:
        high = float(high)
        low = float(low)
        i = self._count
        self._count = i + 1
        up = self._max.push(i, high, True)
        lo = self._min.push(i, low, False)
        if self._count < self.period:
            return NAN
        self.upper = up
        self.lower = lo
        self.middle = (up + lo) / 2.0
        self.value = self.middle
        self.ready = True
        return self.middle


class OBV:
    """On-balance volume (TA-Lib OBV: the first value is the first volume)."""

    __slots__ = ("_prev", "ready", "value")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._prev = 0.0
        self.value: float = NAN
        self.ready: bool = False

    def update(self, close: float, volume: float) -> float:
        close = float(close)
        volume = float(volume)
        if not self.ready:
            self.value = volume
            self.ready = True
        elif close > self._prev:
            self.value += volume
        elif close < self._prev:
            self.value -= volume
        self._prev = close
        return self.value


class WaveTrend:
    """LazyBear's WaveTrend oscillator (VuManChu Cipher B defaults) with Pine-style EMAs."""

    __slots__ = (
        "_a1", "_a2", "_b1", "_b2", "_count", "_d", "_esa", "_sma", "_wt1", "average", "channel", "ready",
        "signal", "value", "wt1", "wt2",
    )  # fmt: skip

    def __init__(self, *, channel: int = 9, average: int = 12, signal: int = 3) -> None:
        self.channel: int = _period("channel", channel)
        self.average: int = _period("average", average)
        self.signal: int = _period("signal", signal)
        self._a1 = 2.0 / (self.channel + 1)
        self._b1 = 1.0 - self._a1
        self._a2 = 2.0 / (self.average + 1)
        self._b2 = 1.0 - self._a2
        self._sma = SMA(period=self.signal)
        self.reset()

    def reset(self) -> None:
        self._sma.reset()
        self._count = 0
        self._esa = 0.0
        self._d = 0.0
        self._wt1 = 0.0
        self.wt1: float = NAN
        self.wt2: float = NAN
        self.value: float = NAN
        self.ready: bool = False

    def update(self, x: float) -> float:
        x = float(x)
        if self._count == 0:
            esa = x
            d = 0.0
        else:
            esa = self._a1 * x + self._b1 * self._esa
            d = self._a1 * abs(x - esa) + self._b1 * self._d
        self._esa = esa
        self._d = d
        ci = (x - esa) / (0.015 * d) if d != 0.0 else 0.0
        wt1 = ci if self._count == 0 else self._a2 * ci + self._b2 * self._wt1
        self._wt1 = wt1
        self._count += 1
        wt2 = self._sma.update(wt1)
        if self._sma.ready:
            self.wt1 = wt1
            self.wt2 = wt2
            self.value = wt1
            self.ready = True
        return self.value


class IndicatorSet:
    """EMA, RSI, ATR, MACD and Bollinger updated together by one ``update(high, low, close)``.

    ``values()`` returns the nine outputs in one tuple, in this order: ``(ema, rsi, atr, macd,
    macd_signal, macd_hist, bb_upper, bb_middle, bb_lower)``; cheaper than reading the nine attributes.
    """

    __slots__ = (
        "_atr", "_bb", "_ema", "_macd", "_rsi", "atr", "bb_lower", "bb_middle", "bb_upper", "ema", "macd",
        "macd_hist", "macd_signal", "ready", "rsi",
    )  # fmt: skip

    def __init__(
        self,
        *,
        ema: int = 20,
        rsi: int = 14,
        atr: int = 14,
        macd_fast: int = 12,
        macd_slow: int = 26,
        macd_signal: int = 9,
        bb_period: int = 20,
        bb_k: float = 2.0,
    ) -> None:
        self._ema = EMA(period=ema)
        self._rsi = RSI(period=rsi)
        self._atr = ATR(period=atr)
        self._macd = MACD(fast=macd_fast, slow=macd_slow, signal=macd_signal)
        self._bb = Bollinger(period=bb_period, k=bb_k)
        self.reset()

    def reset(self) -> None:
        self._ema.reset()
        self._rsi.reset()
        self._atr.reset()
        self._macd.reset()
        self._bb.reset()
        self.ema: float = NAN
        self.rsi: float = NAN
        self.atr: float = NAN
        self.macd: float = NAN
        self.macd_signal: float = NAN
        self.macd_hist: float = NAN
        self.bb_upper: float = NAN
        self.bb_middle: float = NAN
        self.bb_lower: float = NAN
        self.ready: bool = False

    def update(self, high: float, low: float, close: float) -> bool:
        """Update all five on one bar; returns ``ready`` (all five ready)."""
        close = float(close)
        self.ema = self._ema.update(close)
        self.rsi = self._rsi.update(close)
        self.atr = self._atr.update(high, low, close)
        macd = self._macd
        macd.update(close)
        self.macd = macd.macd
        self.macd_signal = macd.signal
        self.macd_hist = macd.hist
        bb = self._bb
        bb.update(close)
        self.bb_upper = bb.upper
        self.bb_middle = bb.middle
        self.bb_lower = bb.lower
        self.ready = self._ema.ready and self._rsi.ready and self._atr.ready and macd.ready and bb.ready
        return self.ready

    def values(self) -> tuple[float, float, float, float, float, float, float, float, float]:
        """``(ema, rsi, atr, macd, macd_signal, macd_hist, bb_upper, bb_middle, bb_lower)``."""
        return (
            self.ema, self.rsi, self.atr, self.macd, self.macd_signal, self.macd_hist, self.bb_upper,
            self.bb_middle, self.bb_lower,
        )  # fmt: skip


# ---------------------------------------------------------------------------------------------- batch


def _arr(name: str, x: object) -> FloatArray:
    a = np.ascontiguousarray(x, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-dimensional, got shape {a.shape}")
    return a


def _same_len(**arrays: FloatArray) -> int:
    lengths = {name: len(a) for name, a in arrays.items()}
    n = next(iter(lengths.values()))
    if any(m != n for m in lengths.values()):
        raise ValueError(f"arrays must have the same length, got {lengths}")
    return n


def _run1(ind: object, x: object) -> FloatArray:
    a = _arr("x", x)
    out = np.empty(len(a))
    update: Callable[[float], float] = ind.update  # type: ignore[attr-defined]
    for i, v in enumerate(a.tolist()):
        out[i] = update(v)
    return out


def sma_batch(x: object, period: int) -> FloatArray:
    return _run1(SMA(period=period), x)


def ema_batch(x: object, period: int) -> FloatArray:
    return _run1(EMA(period=period), x)


def wma_batch(x: object, period: int) -> FloatArray:
    return _run1(WMA(period=period), x)


def stddev_batch(x: object, period: int) -> FloatArray:
    return _run1(StdDev(period=period), x)


def rsi_batch(x: object, period: int = 14) -> FloatArray:
    return _run1(RSI(period=period), x)


def atr_batch(high: object, low: object, close: object, period: int = 14) -> FloatArray:
    ind = ATR(period=period)
    h, lo, c = _arr("high", high), _arr("low", low), _arr("close", close)
    n = _same_len(high=h, low=lo, close=c)
    out = np.empty(n)
    for i, (a, b, d) in enumerate(zip(h.tolist(), lo.tolist(), c.tolist(), strict=True)):
        out[i] = ind.update(a, b, d)
    return out


def macd_batch(
    x: object, fast: int = 12, slow: int = 26, signal: int = 9
) -> tuple[FloatArray, FloatArray, FloatArray]:
    ind = MACD(fast=fast, slow=slow, signal=signal)
    a = _arr("x", x)
    n = len(a)
    m, s, h = np.empty(n), np.empty(n), np.empty(n)
    for i, v in enumerate(a.tolist()):
        ind.update(v)
        m[i] = ind.macd
        s[i] = ind.signal
        h[i] = ind.hist
    return m, s, h


def bollinger_batch(x: object, period: int = 20, k: float = 2.0) -> tuple[FloatArray, FloatArray, FloatArray]:
    ind = Bollinger(period=period, k=k)
    a = _arr("x", x)
    n = len(a)
    up, mid, lo = np.empty(n), np.empty(n), np.empty(n)
    for i, v in enumerate(a.tolist()):
        ind.update(v)
        up[i] = ind.upper
        mid[i] = ind.middle
        lo[i] = ind.lower
    return up, mid, lo


def obv_batch(close: object, volume: object) -> FloatArray:
    ind = OBV()
    c, v = _arr("close", close), _arr("volume", volume)
    n = _same_len(close=c, volume=v)
    out = np.empty(n)
    for i, (a, b) in enumerate(zip(c.tolist(), v.tolist(), strict=True)):
        out[i] = ind.update(a, b)
    return out


def vwap_batch(
    price: object, volume: object, ts_ms: object | None = None, *, session_ms: int = 86_400_000
) -> FloatArray:
    """Cumulative VWAP; with ``ts_ms`` (int64 milliseconds), restarted at each session boundary."""
    ind = VWAP(session_ms=session_ms)
    p, v = _arr("price", price), _arr("volume", volume)
    n = _same_len(price=p, volume=v)
    out = np.empty(n)
    if ts_ms is None:
        for i, (a, b) in enumerate(zip(p.tolist(), v.tolist(), strict=True)):
            out[i] = ind.update(a, b)
        return out
    t = np.ascontiguousarray(ts_ms, dtype=np.int64)
    if len(t) != n:
        raise ValueError(f"ts_ms must have the same length as price, got {len(t)} and {n}")
    for i, (a, b, c) in enumerate(zip(p.tolist(), v.tolist(), t.tolist(), strict=True)):
        out[i] = ind.update(a, b, c)
    return out


def supertrend_batch(
    high: object, low: object, close: object, period: int = 10, k: float = 3.0
) -> tuple[FloatArray, FloatArray]:
    """(line, direction); direction is +1.0 / -1.0, NaN before ready."""
    ind = Supertrend(period=period, k=k)
    h, lo, c = _arr("high", high), _arr("low", low), _arr("close", close)
    n = _same_len(high=h, low=lo, close=c)
    line, direction = np.empty(n), np.empty(n)
    for i, (a, b, d) in enumerate(zip(h.tolist(), lo.tolist(), c.tolist(), strict=True)):
        line[i] = ind.update(a, b, d)
        direction[i] = ind.direction if ind.ready else NAN
    return line, direction


def donchian_batch(high: object, low: object, period: int = 20) -> tuple[FloatArray, FloatArray, FloatArray]:
    ind = Donchian(period=period)
    h, lo = _arr("high", high), _arr("low", low)
    n = _same_len(high=h, low=lo)
    up, mid, low_out = np.empty(n), np.empty(n), np.empty(n)
    for i, (a, b) in enumerate(zip(h.tolist(), lo.tolist(), strict=True)):
        ind.update(a, b)
        up[i] = ind.upper
        mid[i] = ind.middle
        low_out[i] = ind.lower
    return up, mid, low_out


def wavetrend_batch(
    x: object, channel: int = 9, average: int = 12, signal: int = 3
) -> tuple[FloatArray, FloatArray]:
    ind = WaveTrend(channel=channel, average=average, signal=signal)
    a = _arr("x", x)
    n = len(a)
    wt1, wt2 = np.empty(n), np.empty(n)
    for i, v in enumerate(a.tolist()):
        ind.update(v)
        wt1[i] = ind.wt1
        wt2[i] = ind.wt2
    return wt1, wt2

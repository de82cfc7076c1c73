"""Sliding-window aggregates of the alert rules (stream/rules.py), without Faust or a clock.

A window is cut into time buckets (a twentieth of its length, at least a second); a bucket holds
what a rule needs of the traces that completed in it: the matching traces, all traces (a ratio's
denominator), a sum (tokens or cost) and a latency histogram. The window at ``now`` is every
bucket that overlaps ``(now - window, now]``, so it is exact to one bucket. Every aggregate adds
up, so the buckets of several events partitions merge into the group's window.

A group's windows (one per events partition) keep a running total of their buckets
(:class:`GroupWindows`): a trace adds to it, a bucket that leaves the window subtracts from it, so
judging a rule after a trace costs the same whatever the window holds (no merge of every bucket of
every partition). The total equals :func:`merge` of the pruned windows (exactly for the counts and
the histogram; the sum of amounts up to float rounding, as it is added in another order).

The histogram is log-bucketed (a bucket per 5 % of value, as DDSketch does): a percentile is
within 5 % of the exact one, and a histogram never holds more than a few hundred counters
(1 ms to a day is 374 buckets), whatever the traffic.
"""

from __future__ import annotations

import math
from bisect import insort
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

BUCKETS_PER_WINDOW = 20
MIN_BUCKET_MS = 1000
MAX_SAMPLES = 10
# Relative accuracy of the latency histogram: a value v lands in the bucket (GAMMA^(i-1), GAMMA^i].
GAMMA = 1.05
_LOG_GAMMA = math.log(GAMMA)


def bucket_width_ms(window_ms: int) -> int:
    return max(MIN_BUCKET_MS, window_ms // BUCKETS_PER_WINDOW)


def bucket_start(at_ms: int, window_ms: int) -> int:
    width = bucket_width_ms(window_ms)
    return at_ms - at_ms % width


def histogram_index(value_ms: float) -> int:
    return math.ceil(math.log(max(value_ms, 0.001)) / _LOG_GAMMA)


def histogram_value(index: int) -> float:
    """The bucket's representative value: the middle of (GAMMA^(i-1), GAMMA^i] in relative terms."""
    return 2 * GAMMA**index / (1 + GAMMA)


@dataclass
class Bucket:
    matched: int = 0
    total: int = 0
    amount: float = 0.0  # the sum of matching traces' tokens or cost
    latency: dict[int, int] = field(default_factory=dict)  # histogram index -> matching traces

    def to_list(self) -> list[Any]:
        return [self.matched, self.total, self.amount, {str(k): v for k, v in self.latency.items()}]

    @classmethod
    def from_list(cls, data: list[Any]) -> Bucket:
        return cls(int(data[0]), int(data[1]), float(data[2]), {int(k): int(v) for k, v in data[3].items()})


@dataclass
class Window:
    """One rule's buckets for one group in one events partition, and its latest matching traces."""

    window_ms: int
    buckets: dict[int, Bucket] = field(default_factory=dict)
    samples: list[str] = field(default_factory=list)

    def bucket(self, start_ms: int) -> Bucket:
        found = self.buckets.get(start_ms)
        if found is None:
            found = self.buckets[start_ms] = Bucket()
        return found

    def add(
        self,
        start_ms: int,
        matched: bool,
        latency_ms: float | None,
        amount: float,
        trace_id: str,
        sign: int = 1,
        totals: Totals | None = None,
    ) -> None:
        """Counts one trace in the bucket starting at ``start_ms`` (``sign`` -1 takes it out again,
        for a revision whose answer changed); ``totals``, a running total of these buckets, gets
        the same change."""
        bucket = self.bucket(start_ms)
        bucket.total += sign
        if totals is not None:
            totals.total += sign
        if matched:
            bucket.matched += sign
            bucket.amount += sign * amount
            if totals is not None:
                totals.matched += sign
                totals.amount += sign * amount
            if latency_ms is not None:
                index = histogram_index(latency_ms)
                before = bucket.latency.get(index, 0)
                count = before + sign
                if count > 0:
                    bucket.latency[index] = count
                else:
                    bucket.latency.pop(index, None)
                    count = 0
                if totals is not None and count != before:
                    totals.add_latency(index, count - before)
            if sign > 0:
                self.samples.append(trace_id)
                del self.samples[:-MAX_SAMPLES]
            elif trace_id in self.samples:
                self.samples.remove(trace_id)
        if bucket.total <= 0 and bucket.matched <= 0:
            del self.buckets[start_ms]
            if totals is not None:
                totals.add_bucket(bucket, -1)

    def prune(self, now_ms: int, totals: Totals | None = None) -> bool:
        """Drops the buckets that left the window (and takes them out of ``totals``); whether any
        did."""
        width = bucket_width_ms(self.window_ms)
        old = [start for start in self.buckets if start + width <= now_ms - self.window_ms]
        for start in old:
            bucket = self.buckets.pop(start)
            if totals is not None:
                totals.add_bucket(bucket, -1)
        return bool(old)

    def live(self, now_ms: int) -> Iterable[Bucket]:
        width = bucket_width_ms(self.window_ms)
        return (b for start, b in self.buckets.items() if start + width > now_ms - self.window_ms)

    def to_record(self) -> dict[str, Any]:
        return {
            "w": self.window_ms,
            "b": [[start, *bucket.to_list()] for start, bucket in self.buckets.items()],
            "s": list(self.samples),
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Window:
        return cls(
            int(record["w"]),
            {int(item[0]): Bucket.from_list(item[1:]) for item in record.get("b", [])},
            list(record.get("s", [])),
        )


@dataclass
class Totals:
    """A group's window, merged over its partitions."""

    matched: int = 0
    total: int = 0
    amount: float = 0.0
    latency: dict[int, int] = field(default_factory=dict)

    def percentile(self, q: float) -> float | None:
        """The q-th quantile (0..1) of the matching traces' latency, or None without any."""
        count = sum(self.latency.values())
        if count == 0:
            return None
        rank = max(1, math.ceil(q * count))
        seen = 0
        for index in sorted(self.latency):
            seen += self.latency[index]
            if seen >= rank:
                return histogram_value(index)
        return histogram_value(max(self.latency))

    def add_latency(self, index: int, delta: int) -> None:
        count = self.latency.get(index, 0) + delta
        if count:
            self.latency[index] = count
        else:
            del self.latency[index]

    def add_bucket(self, bucket: Bucket, sign: int = 1) -> None:
        self.matched += sign * bucket.matched
        self.total += sign * bucket.total
        self.amount += sign * bucket.amount
        for index, count in bucket.latency.items():
            self.add_latency(index, sign * count)


def merge(windows: Iterable[Window], now_ms: int) -> Totals:
    """The group's window at ``now_ms`` from every live bucket of its partitions' windows."""
    totals = Totals()
    for window in windows:
        for bucket in window.live(now_ms):
            totals.matched += bucket.matched
            totals.total += bucket.total
            totals.amount += bucket.amount
            for index, count in bucket.latency.items():
                totals.latency[index] = totals.latency.get(index, 0) + count
    return totals


class RunningTotals(Totals):
    """Totals kept up to date by every change of the buckets they total, with the latency
    histogram's indices kept sorted and its count, so a percentile is one walk, and the last
    percentile asked for remembered until the histogram changes."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0  # matching traces with a latency: the histogram's total
        self._order: list[int] = []  # the histogram's indices, sorted
        self._asked: tuple[float, float | None] | None = None

    def add_latency(self, index: int, delta: int) -> None:
        count = self.latency.get(index, 0) + delta
        self.count += delta
        self._asked = None
        if count:
            if index not in self.latency:
                insort(self._order, index)
            self.latency[index] = count
        else:
            del self.latency[index]
            self._order.remove(index)

    def percentile(self, q: float) -> float | None:
        if self._asked is not None and self._asked[0] == q:
            return self._asked[1]
        value: float | None = None
        if self.count > 0:
            rank = max(1, math.ceil(q * self.count))
            seen = 0
            latency = self.latency
            for index in self._order:
                seen += latency[index]
                if seen >= rank:
                    value = histogram_value(index)
                    break
            else:
                value = histogram_value(self._order[-1])
        self._asked = (q, value)
        return value


class GroupWindows:
    """One rule's windows for one group, a window per events partition, and their running total
    (:class:`RunningTotals`): always the :func:`merge` of the windows once pruned, without merging.

    ``oldest`` is at most the start of the oldest bucket of any partition, so a prune that has
    nothing to drop (nearly every one) costs a comparison."""

    __slots__ = ("oldest", "partitions", "totals", "width", "window_ms")

    def __init__(self, window_ms: int) -> None:
        self.window_ms = window_ms
        self.width = bucket_width_ms(window_ms)
        self.partitions: dict[int, Window] = {}
        self.totals = RunningTotals()
        self.oldest: int | None = None

    def window(self, partition: int) -> Window:
        found = self.partitions.get(partition)
        if found is None:
            found = self.partitions[partition] = Window(self.window_ms)
        return found

    def add(
        self,
        partition: int,
        start_ms: int,
        matched: bool,
        latency_ms: float | None,
        amount: float,
        trace_id: str,
        sign: int = 1,
    ) -> None:
        self.window(partition).add(start_ms, matched, latency_ms, amount, trace_id, sign, self.totals)
        if self.oldest is None or start_ms < self.oldest:
            self.oldest = start_ms

    def count(
        self,
        partition: int,
        start_ms: int,
        matched: bool,
        latency_ms: float | None,
        amount: float,
        trace_id: str,
    ) -> None:
        """:meth:`add` of a trace counted for the first time (sign +1), written out: the common case."""
        window = self.partitions.get(partition)
        if window is None:
            window = self.partitions[partition] = Window(self.window_ms)
        bucket = window.buckets.get(start_ms)
        if bucket is None:
            bucket = window.buckets[start_ms] = Bucket()
            if self.oldest is None or start_ms < self.oldest:
                self.oldest = start_ms
        totals = self.totals
        bucket.total += 1
        totals.total += 1
        if matched:
            bucket.matched += 1
            totals.matched += 1
            if amount:
                bucket.amount += amount
                totals.amount += amount
            if latency_ms is not None:
                index = histogram_index(latency_ms)
                bucket.latency[index] = bucket.latency.get(index, 0) + 1
                totals.add_latency(index, 1)
            samples = window.samples
            samples.append(trace_id)
            if len(samples) > MAX_SAMPLES:
                del samples[:-MAX_SAMPLES]
        if bucket.total <= 0 and bucket.matched <= 0:  # a bucket that held a revision's removals
            del window.buckets[start_ms]
            totals.add_bucket(bucket, -1)

    def put(self, partition: int, window: Window) -> None:
        """A partition's window as recorded (a restart or a rebalance), in place of the one held."""
        previous = self.partitions.get(partition)
        if previous is not None:
            for bucket in previous.buckets.values():
                self.totals.add_bucket(bucket, -1)
        self.partitions[partition] = window
        for start, bucket in window.buckets.items():
            self.totals.add_bucket(bucket)
            if self.oldest is None or start < self.oldest:
                self.oldest = start

    def prune(self, now_ms: int) -> list[int]:
        """Drops the buckets that left the window at ``now_ms``; the partitions whose windows
        dropped any."""
        if self.oldest is None or self.oldest + self.width > now_ms - self.window_ms:
            return []
        pruned = [p for p, window in self.partitions.items() if window.prune(now_ms, self.totals)]
        starts = [start for window in self.partitions.values() for start in window.buckets]
        self.oldest = min(starts) if starts else None
        if not starts:
            self._zero()
        return pruned

    def drop_empty(self) -> None:
        """Forgets the partitions whose windows hold no bucket (their samples with them)."""
        for partition in [p for p, window in self.partitions.items() if not window.buckets]:
            del self.partitions[partition]
        if not self.partitions:
            self._zero()

    def _zero(self) -> None:
        # Nothing left to total: a sum of amounts restarts at exactly 0 (no float remainder).
        if self.totals.amount or self.totals.matched or self.totals.total or self.totals.latency:
            self.totals = RunningTotals()

    def samples(self) -> list[str]:
        samples: list[str] = []
        for window in self.partitions.values():
            samples.extend(window.samples)
        return samples[-MAX_SAMPLES:]

"""Sliding-window aggregates of the alert rules (stream/rules.py), without Faust or a clock.

A window is cut into time buckets (a twentieth of its length, at least a second); a bucket holds
what a rule needs of the traces that completed in it: the matching traces, all traces (a ratio's
denominator), a sum (tokens or cost) and a latency histogram. The window at ``now`` is every
bucket that overlaps ``(now - window, now]``, so it is exact to one bucket. Every aggregate adds
up, so the buckets of several events partitions merge into the group's window.

The histogram is log-bucketed (a bucket per 5 % of value, as DDSketch does): a percentile is
within 5 % of the exact one, and a histogram never holds more than a few hundred counters
(1 ms to a day is 374 buckets), whatever the traffic.
"""

from __future__ import annotations

import math
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
    ) -> None:
        """Counts one trace in the bucket starting at ``start_ms`` (``sign`` -1 takes it out again,
        for a revision whose answer changed)."""
        bucket = self.bucket(start_ms)
        bucket.total += sign
        if matched:
            bucket.matched += sign
            bucket.amount += sign * amount
            if latency_ms is not None:
                index = histogram_index(latency_ms)
                count = bucket.latency.get(index, 0) + sign
                if count > 0:
                    bucket.latency[index] = count
                else:
                    bucket.latency.pop(index, None)
            if sign > 0:
                self.samples.append(trace_id)
                del self.samples[:-MAX_SAMPLES]
            elif trace_id in self.samples:
                self.samples.remove(trace_id)
        if bucket.total <= 0 and bucket.matched <= 0:
            del self.buckets[start_ms]

    def prune(self, now_ms: int) -> bool:
        """Drops the buckets that left the window; whether any did."""
        width = bucket_width_ms(self.window_ms)
        old = [start for start in self.buckets if start + width <= now_ms - self.window_ms]
        for start in old:
            del self.buckets[start]
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


def merge(windows: Iterable[Window], now_ms: int) -> Totals:
    totals = Totals()
    for window in windows:
        for bucket in window.live(now_ms):
            totals.matched += bucket.matched
            totals.total += bucket.total
            totals.amount += bucket.amount
            for index, count in bucket.latency.items():
                totals.latency[index] = totals.latency.get(index, 0) + count
    return totals

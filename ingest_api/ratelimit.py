"""Token buckets per write key. Pure: the caller passes the clock reading in."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TokenBucket:
    rate: float  # tokens added per second
    capacity: float
    tokens: float
    updated_at: float

    @classmethod
    def full(cls, rate: float, capacity: float, now: float) -> TokenBucket:
        return cls(rate, capacity, capacity, now)

    def take(self, cost: float, now: float) -> float:
        """Take ``cost`` tokens; return 0 on success, else the seconds until they would be there.

        A request costs one token per event, so a batch of 100 weighs as much as 100 single calls.
        A cost above the capacity can never be paid at once: it is charged the whole bucket.
        """
        self.tokens = min(self.capacity, self.tokens + (now - self.updated_at) * self.rate)
        self.updated_at = now
        cost = min(cost, self.capacity)
        if self.tokens >= cost:
            self.tokens -= cost
            return 0.0
        return (cost - self.tokens) / self.rate


class RateLimiter:
    """One bucket per write key, created on first use from the source's limit."""

    def __init__(self):
        self._buckets: dict[str, TokenBucket] = {}

    def wait_time(self, key: str, per_second: float, burst: float | None, cost: float, now: float) -> float:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket.full(per_second, burst or per_second, now)
        return bucket.take(cost, now)

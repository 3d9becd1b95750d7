import pytest

from ingest_api.ratelimit import RateLimiter, TokenBucket


def test_bucket_allows_a_burst_then_refills_at_the_rate():
    bucket = TokenBucket.full(rate=2, capacity=4, now=0)
    assert [bucket.take(1, now=0) for _ in range(4)] == [0, 0, 0, 0]
    assert bucket.take(1, now=0) == pytest.approx(0.5)
    assert bucket.take(1, now=0.5) == 0  # one token came back in half a second
    assert bucket.take(2, now=0.5) == pytest.approx(1.0)


def test_a_batch_costs_one_token_per_event_and_never_more_than_the_bucket():
    bucket = TokenBucket.full(rate=10, capacity=10, now=0)
    assert bucket.take(100, now=0) == 0  # a batch above the capacity takes the whole bucket
    assert bucket.take(1, now=0) == pytest.approx(0.1)


def test_limiter_keeps_one_bucket_per_key():
    limiter = RateLimiter()
    assert limiter.wait_time("a", 1, 1, 1, now=0) == 0
    assert limiter.wait_time("a", 1, 1, 1, now=0) > 0
    assert limiter.wait_time("b", 1, 1, 1, now=0) == 0

import asyncio
import random

import pytest

from reactors.errors import DeliveryFailed
from reactors.retry import GiveUp, Retry, RetryPolicy, after_failure, backoff_ceiling, deliver_with_retries, jittered_delay

POLICY = RetryPolicy(max_attempts=6, max_elapsed_s=100, base_delay_s=0.5, max_delay_s=4)


@pytest.mark.parametrize("failures, ceiling", [(1, 0.5), (2, 1), (3, 2), (4, 4), (5, 4), (30, 4)])
def test_ceiling_doubles_then_caps(failures, ceiling):
    assert backoff_ceiling(POLICY, failures) == ceiling


@pytest.mark.parametrize("failures", [1, 2, 3, 4, 8])
def test_full_jitter_stays_between_zero_and_the_ceiling(failures):
    source = random.Random(failures)
    delays = [jittered_delay(POLICY, failures, source.random) for _ in range(2000)]
    ceiling = backoff_ceiling(POLICY, failures)
    assert all(0 <= d < ceiling for d in delays)
    # Spread over the whole range, not bunched at the ceiling (that would be plain exponential backoff).
    assert min(delays) < 0.05 * ceiling and max(delays) > 0.95 * ceiling
    assert jittered_delay(POLICY, failures, lambda: 0.0) == 0
    assert jittered_delay(POLICY, failures, lambda: 0.5) == ceiling / 2


def test_dead_letter_decision():
    half = lambda: 0.5  # noqa: E731
    assert after_failure(POLICY, attempts=1, elapsed_s=0, retriable=True, random=half) == Retry(0.25)
    assert after_failure(POLICY, attempts=3, elapsed_s=0, retriable=True, random=half) == Retry(1.0)
    assert after_failure(POLICY, attempts=1, elapsed_s=0, retriable=False, random=half) == GiveUp("not retriable")
    assert after_failure(POLICY, attempts=6, elapsed_s=0, retriable=True, random=half) == GiveUp("6 attempts made")
    # The wait (2 s) would end past max_elapsed_s: give up now rather than sleep for nothing.
    assert after_failure(POLICY, attempts=5, elapsed_s=99, retriable=True, random=half) == GiveUp("100 s retry time used")
    assert after_failure(POLICY, attempts=5, elapsed_s=97, retriable=True, random=half) == Retry(2.0)


def run(coroutine):
    return asyncio.run(coroutine)


def test_retries_until_success_sleeping_the_jittered_delays():
    calls, sleeps, retried = [], [], []

    async def attempt():
        calls.append(1)
        if len(calls) < 3:
            raise DeliveryFailed("503")

    async def sleep(s):
        sleeps.append(s)

    outcome = run(deliver_with_retries(attempt, POLICY, clock=lambda: 0.0, random=lambda: 0.5, sleep=sleep,
                                       on_retry=lambda n, e, d: retried.append((n, str(e), d))))
    assert outcome.delivered and outcome.attempts == 3
    assert sleeps == [0.25, 0.5]
    assert retried == [(1, "503", 0.25), (2, "503", 0.5)]


def test_gives_up_after_max_attempts_with_the_last_error():
    async def attempt():
        raise ConnectionError("refused")  # a custom handler's own exception: retriable

    async def sleep(s):
        pass

    outcome = run(deliver_with_retries(attempt, POLICY, clock=lambda: 0.0, random=lambda: 0.0, sleep=sleep))
    assert not outcome.delivered and outcome.attempts == 6
    assert outcome.last_error == "ConnectionError: refused (gave up: 6 attempts made)"


def test_a_non_retriable_failure_is_given_up_at_once():
    async def attempt():
        raise DeliveryFailed("http://x answered 404", retriable=False)

    outcome = run(deliver_with_retries(attempt, POLICY, clock=lambda: 0.0, random=lambda: 0.0))
    assert not outcome.delivered and outcome.attempts == 1
    assert "404" in outcome.last_error and "not retriable" in outcome.last_error


def test_gives_up_when_retry_time_runs_out():
    now = [0.0]

    async def attempt():
        now[0] += 40  # each attempt takes 40 s (e.g. timeouts)
        raise DeliveryFailed("timeout")

    async def sleep(s):
        now[0] += s

    outcome = run(deliver_with_retries(attempt, POLICY, clock=lambda: now[0], random=lambda: 0.99, sleep=sleep))
    assert not outcome.delivered and outcome.attempts == 3  # failed at 40 s and 80.5 s; the third at 121.5 s, past 100 s

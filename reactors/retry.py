"""When to try a delivery again and when to give up on it. The clock, sleep and random source are passed in.

Backoff is exponential with full jitter (a delay drawn uniformly from zero up to
``base * 2**(failures-1)``, capped): handlers failing together do not retry together.
A delivery is given up -- and becomes a dead letter -- when its error is not retriable,
when it has used ``max_attempts``, or when the next wait would take it past ``max_elapsed_s``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 5
    max_elapsed_s: float = 300.0
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0


@dataclass(frozen=True)
class Retry:
    delay_s: float


@dataclass(frozen=True)
class GiveUp:
    reason: str


def backoff_ceiling(policy: RetryPolicy, failures: int) -> float:
    """The longest wait after the ``failures``-th failure: base, 2*base, 4*base ... capped."""
    return min(policy.max_delay_s, policy.base_delay_s * 2 ** (failures - 1))


def jittered_delay(policy: RetryPolicy, failures: int, random: Callable[[], float]) -> float:
    """Full jitter: ``random()`` (in [0, 1)) times the ceiling."""
    return random() * backoff_ceiling(policy, failures)


def after_failure(policy: RetryPolicy, *, attempts: int, elapsed_s: float, retriable: bool,
                  random: Callable[[], float]) -> Retry | GiveUp:
    """The dead-letter decision after the ``attempts``-th attempt failed ``elapsed_s`` after the first began."""
    if not retriable:
        return GiveUp("not retriable")
    if attempts >= policy.max_attempts:
        return GiveUp(f"{attempts} attempts made")
    delay = jittered_delay(policy, attempts, random)
    if elapsed_s + delay > policy.max_elapsed_s:
        return GiveUp(f"{policy.max_elapsed_s:g} s retry time used")
    return Retry(delay)


@dataclass(frozen=True)
class Outcome:
    delivered: bool
    attempts: int
    last_error: str | None = None  # with why it was given up, when not delivered


def describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


async def deliver_with_retries(
    attempt: Callable[[], Awaitable[None]],
    policy: RetryPolicy,
    *,
    clock: Callable[[], float],
    random: Callable[[], float],
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    on_retry: Callable[[int, BaseException, float], None] = lambda attempts, error, delay: None,
) -> Outcome:
    """Run ``attempt`` until it returns, or the policy gives up.

    Any exception counts as a failed attempt (retriable unless it says ``retriable = False``):
    custom handlers raise whatever they raise, and none of it may be dropped silently.
    """
    started = clock()
    attempts = 0
    while True:
        attempts += 1
        try:
            await attempt()
            return Outcome(True, attempts)
        except Exception as error:  # noqa: BLE001 - every failure is retried or dead-lettered
            decision = after_failure(policy, attempts=attempts, elapsed_s=clock() - started,
                                     retriable=getattr(error, "retriable", True), random=random)
            if isinstance(decision, GiveUp):
                return Outcome(False, attempts, f"{describe(error)} (gave up: {decision.reason})")
            on_retry(attempts, error, decision.delay_s)
            await sleep(decision.delay_s)

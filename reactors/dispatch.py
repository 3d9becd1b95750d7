"""Handing one reaction to each of its handlers, at most once each, and keeping every outcome.

For each handler the ledger has nothing for: record ``started``, deliver with retries, then
record ``delivered``, or publish a dead letter and record ``dead_lettered``. A delivery the
ledger shows ``started`` and nothing after was cut short by a crash: it may or may not have
reached the handler, so it becomes a dead letter (replayable) instead of a second delivery.
Where records go (Kafka in the reactor) is passed in as a :class:`Recorder`, with the clock
and randomness.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from clickstream.reactions import DeadLetter, DeliveryRecord, Reaction
from reactors.handlers import Handler
from reactors.ledger import DEAD_LETTERED, DELIVERED, STARTED, DeliveryLedger
from reactors.retry import deliver_with_retries, describe
from reactors.routes import Routes

log = logging.getLogger("clickstream.reactor")


class Recorder(Protocol):
    async def record(self, record: DeliveryRecord) -> None: ...

    async def dead_letter(self, letter: DeadLetter) -> None: ...


@dataclass
class ReactorStats:
    """What ``/health`` reports."""

    received: int = 0
    undecodable: int = 0
    skipped: int = 0  # (handler, reaction) pairs the ledger already had an outcome for
    in_doubt: int = 0  # deliveries a crash cut short, dead-lettered rather than made twice
    retries: int = 0
    dead_letters: int = 0
    delivered: Counter = field(default_factory=Counter)  # per handler

    def as_dict(self) -> dict:
        return {"received": self.received, "undecodable": self.undecodable, "skipped": self.skipped,
                "in_doubt": self.in_doubt,
                "retries": self.retries, "dead_letters": self.dead_letters,
                "delivered": dict(self.delivered)}


@dataclass
class Dispatcher:
    routes: Routes
    handlers: dict[str, Handler]
    ledger: DeliveryLedger
    recorder: Recorder
    stats: ReactorStats
    now: Callable[[], datetime]
    clock: Callable[[], float]
    random: Callable[[], float]
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    async def dispatch(self, reaction: Reaction) -> None:
        """Deliver to the handlers of the reaction's rule that have not had it yet, concurrently."""
        self.stats.received += 1
        names = self.routes.handlers_for(reaction.rule)
        pending = self.ledger.pending(names, reaction.reaction_id)
        in_doubt = self.ledger.in_doubt(names, reaction.reaction_id)
        self.stats.skipped += len(names) - len(pending) - len(in_doubt)
        for name in in_doubt:
            self.stats.in_doubt += 1
            await self._give_up(name, reaction, 0, "outcome unknown: the reactor stopped during this delivery; "
                                                   "replay it if the receiver did not get it")
        await asyncio.gather(*(self.deliver(self.handlers[name], reaction) for name in pending))

    async def deliver(self, handler: Handler, reaction: Reaction) -> bool:
        """One delivery with retries; its outcome is recorded either way. True when delivered."""

        def on_retry(attempts: int, error: BaseException, delay: float) -> None:
            self.stats.retries += 1
            log.warning("handler %s: attempt %d for reaction %s failed (%s); retrying in %.2f s",
                        handler.name, attempts, reaction.reaction_id, describe(error), delay)

        await self._record(handler.name, reaction, STARTED, 0)
        outcome = await deliver_with_retries(lambda: handler.deliver(reaction), handler.retry, clock=self.clock,
                                             random=self.random, sleep=self.sleep, on_retry=on_retry)
        if not outcome.delivered:
            await self._give_up(handler.name, reaction, outcome.attempts, outcome.last_error)
            return False
        self.stats.delivered[handler.name] += 1
        await self._record(handler.name, reaction, DELIVERED, outcome.attempts)
        return True

    async def _give_up(self, handler: str, reaction: Reaction, attempts: int, error: str) -> None:
        # The dead letter first: a crash before the ledger record means a second dead letter, not a lost one.
        self.stats.dead_letters += 1
        log.error("handler %s: reaction %s dead-lettered after %d attempts: %s", handler, reaction.reaction_id,
                  attempts, error)
        await self.recorder.dead_letter(DeadLetter(handler=handler, reaction=reaction, attempts=attempts,
                                                   last_error=error, failed_at=self.now()))
        await self._record(handler, reaction, DEAD_LETTERED, attempts)

    async def _record(self, handler: str, reaction: Reaction, outcome: str, attempts: int) -> None:
        record = DeliveryRecord(handler=handler, reaction_id=reaction.reaction_id, outcome=outcome,
                                attempts=attempts, at=self.now())
        await self.recorder.record(record)
        self.ledger.apply(record)

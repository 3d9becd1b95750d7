"""Handing one reaction to each of its handlers, at most once each, and keeping every outcome.

For each handler without an outcome in the ledger: deliver with retries; then record
``delivered``, or publish a dead letter and record ``dead_lettered``. Where records go
(Kafka in the reactor) is passed in as a :class:`Recorder`, with the clock and randomness.
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
from reactors.ledger import DEAD_LETTERED, DELIVERED, DeliveryLedger
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
    retries: int = 0
    dead_letters: int = 0
    delivered: Counter = field(default_factory=Counter)  # per handler

    def as_dict(self) -> dict:
        return {"received": self.received, "undecodable": self.undecodable, "skipped": self.skipped,
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
        self.stats.skipped += len(names) - len(pending)
        await asyncio.gather(*(self.deliver(self.handlers[name], reaction) for name in pending))

    async def deliver(self, handler: Handler, reaction: Reaction) -> bool:
        """One delivery with retries; its outcome is recorded either way. True when delivered."""

        def on_retry(attempts: int, error: BaseException, delay: float) -> None:
            self.stats.retries += 1
            log.warning("handler %s: attempt %d for reaction %s failed (%s); retrying in %.2f s",
                        handler.name, attempts, reaction.reaction_id, describe(error), delay)

        outcome = await deliver_with_retries(lambda: handler.deliver(reaction), handler.retry, clock=self.clock,
                                             random=self.random, sleep=self.sleep, on_retry=on_retry)
        if outcome.delivered:
            self.stats.delivered[handler.name] += 1
        else:
            # The dead letter first: a crash before the ledger record means a second try, not a lost reaction.
            self.stats.dead_letters += 1
            log.error("handler %s: reaction %s dead-lettered after %d attempts: %s",
                      handler.name, reaction.reaction_id, outcome.attempts, outcome.last_error)
            await self.recorder.dead_letter(DeadLetter(handler=handler.name, reaction=reaction,
                                                       attempts=outcome.attempts, last_error=outcome.last_error,
                                                       failed_at=self.now()))
        record = DeliveryRecord(handler=handler.name, reaction_id=reaction.reaction_id,
                                outcome=DELIVERED if outcome.delivered else DEAD_LETTERED,
                                attempts=outcome.attempts, at=self.now())
        await self.recorder.record(record)
        self.ledger.apply(record)
        return outcome.delivered

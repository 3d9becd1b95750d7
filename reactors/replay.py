"""Resending dead letters through their handler (``clickstream reactions replay``).

Of the dead letters selected (by time and handler), each (handler, reaction) is sent once
however many dead letters it has, and not at all once the ledger says it was delivered
(by an earlier replay). The result is recorded like any delivery: ``delivered`` in the
ledger, or a new dead letter.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from clickstream.reactions import DeadLetter
from reactors.dispatch import Dispatcher
from reactors.ledger import DELIVERED


@dataclass
class ReplayReport:
    selected: int = 0
    already_delivered: int = 0
    delivered: int = 0
    failed: int = 0
    unknown_handler: list[str] = field(default_factory=list)


def select_dead_letters(letters: Iterable[DeadLetter], *, since: datetime | None = None,
                        handler: str | None = None) -> list[DeadLetter]:
    """The latest dead letter of each (handler, reaction) among those matching, oldest first."""
    latest: dict[tuple[str, str], DeadLetter] = {}
    for letter in letters:
        if since is not None and letter.failed_at < since:
            continue
        if handler is not None and letter.handler != handler:
            continue
        latest[(letter.handler, letter.reaction.reaction_id)] = letter
    return sorted(latest.values(), key=lambda letter: letter.failed_at)


async def replay_dead_letters(letters: list[DeadLetter], dispatcher: Dispatcher) -> ReplayReport:
    report = ReplayReport(selected=len(letters))
    for letter in letters:
        if dispatcher.ledger.outcome(letter.handler, letter.reaction.reaction_id) == DELIVERED:
            report.already_delivered += 1
        elif letter.handler not in dispatcher.handlers:
            report.unknown_handler.append(f"{letter.handler} (reaction {letter.reaction.reaction_id})")
        elif await dispatcher.deliver(dispatcher.handlers[letter.handler], letter.reaction):
            report.delivered += 1
        else:
            report.failed += 1
    return report

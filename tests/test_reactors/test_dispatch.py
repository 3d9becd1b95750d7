"""Dispatching: every outcome recorded, dead letters instead of drops, nothing twice per handler, replay."""

import asyncio
from datetime import datetime, timezone

from reactors.dispatch import Dispatcher, ReactorStats
from reactors.errors import DeliveryFailed
from reactors.handlers import Handler
from reactors.ledger import DeliveryLedger
from reactors.replay import replay_dead_letters, select_dead_letters
from reactors.retry import RetryPolicy
from reactors.routes import Routes
from test_reactors.fixtures import reaction_factory  # noqa: F401  (pytest fixtures)

NOW = datetime(2026, 11, 27, 13, 0, tzinfo=timezone.utc)


class ListRecorder:
    """Keeps what the reactor would publish to Kafka."""

    def __init__(self):
        self.records, self.letters = [], []

    async def record(self, record):
        self.records.append(record)

    async def dead_letter(self, letter):
        self.letters.append(letter)


def dispatcher(handlers: dict, routes: dict, ledger=None):
    async def no_sleep(_):
        pass

    policy = RetryPolicy(max_attempts=3, max_elapsed_s=60)
    return Dispatcher(
        Routes(handlers={n: None for n in handlers}, routes=routes),
        {name: Handler(name, deliver, policy) for name, deliver in handlers.items()},
        ledger or DeliveryLedger(), ListRecorder(), ReactorStats(),
        now=lambda: NOW, clock=lambda: 0.0, random=lambda: 0.5, sleep=no_sleep)


def test_each_handler_once_a_failing_one_dead_lettered(reaction_factory):
    got, broken_calls = [], []

    async def ok(reaction):
        got.append(reaction.reaction_id)

    async def broken(reaction):
        broken_calls.append(1)
        raise DeliveryFailed("503")

    d = dispatcher({"ok": ok, "broken": broken}, {"page_views_threshold": ("ok", "broken"), "*": ("ok",)})
    first = reaction_factory(1)
    asyncio.run(d.dispatch(first))
    asyncio.run(d.dispatch(first))  # the topic replayed: the ledger knows both outcomes
    assert got == [first.reaction_id] and len(broken_calls) == 3
    [letter] = d.recorder.letters
    assert (letter.handler, letter.reaction, letter.attempts, letter.failed_at) == ("broken", first, 3, NOW)
    assert letter.last_error == "DeliveryFailed: 503 (gave up: 3 attempts made)"
    assert sorted((r.handler, r.outcome, r.attempts) for r in d.recorder.records) == [
        ("broken", "dead_lettered", 3), ("broken", "started", 0), ("ok", "delivered", 1), ("ok", "started", 0)]
    assert d.stats.as_dict() == {"received": 2, "undecodable": 0, "skipped": 2, "in_doubt": 0, "retries": 2,
                                 "dead_letters": 1, "delivered": {"ok": 1}}


def test_a_delivery_a_crash_cut_short_is_dead_lettered_not_made_again(reaction_factory):
    got = []

    async def ok(reaction):
        got.append(reaction.reaction_id)

    before = dispatcher({"ok": ok}, {"*": ("ok",)})
    asyncio.run(before.dispatch(reaction_factory(1)))
    # The reactor stopped after the delivery started, before its outcome was recorded.
    started = [r for r in before.recorder.records if r.outcome == "started"]
    after = dispatcher({"ok": ok}, {"*": ("ok",)}, DeliveryLedger(started))
    asyncio.run(after.dispatch(reaction_factory(1)))
    asyncio.run(after.dispatch(reaction_factory(1)))  # and once more: still nothing twice
    assert got == [reaction_factory(1).reaction_id]
    [letter] = after.recorder.letters
    assert letter.reaction == reaction_factory(1) and "outcome unknown" in letter.last_error
    assert [r.outcome for r in after.recorder.records] == ["dead_lettered"] and after.stats.in_doubt == 1
    # A person who finds the receiver never got it replays the dead letter.
    report = asyncio.run(replay_dead_letters(after.recorder.letters, after))
    assert report.delivered == 1 and got == [reaction_factory(1).reaction_id] * 2


def test_a_restarted_reactor_skips_what_its_ledger_read_back(reaction_factory):
    got = []

    async def ok(reaction):
        got.append(reaction.reaction_id)

    before = dispatcher({"ok": ok}, {"*": ("ok",)})
    asyncio.run(before.dispatch(reaction_factory(1)))
    after = dispatcher({"ok": ok}, {"*": ("ok",)}, DeliveryLedger(before.recorder.records))
    asyncio.run(after.dispatch(reaction_factory(1)))
    asyncio.run(after.dispatch(reaction_factory(2)))
    assert got == [reaction_factory(1).reaction_id, reaction_factory(2).reaction_id]


def test_replay_sends_each_dead_letter_once_and_records_the_result(reaction_factory):
    up = [False]
    got = []

    async def flaky(reaction):
        if not up[0]:
            raise DeliveryFailed("503")
        got.append(reaction.reaction_id)

    d = dispatcher({"flaky": flaky}, {"*": ("flaky",)})
    for n in (1, 2):
        asyncio.run(d.dispatch(reaction_factory(n)))
    asyncio.run(d.dispatch(reaction_factory(1)))  # no second dead letter: the ledger has its outcome
    assert len(d.recorder.letters) == 2
    letters = select_dead_letters(d.recorder.letters + d.recorder.letters[:1], handler="flaky")
    assert [letter.reaction for letter in letters] == [reaction_factory(1), reaction_factory(2)]
    up[0] = True
    report = asyncio.run(replay_dead_letters(letters, d))
    assert (report.selected, report.delivered, report.failed) == (2, 2, 0)
    assert got == [reaction_factory(1).reaction_id, reaction_factory(2).reaction_id]
    again = asyncio.run(replay_dead_letters(letters, d))
    assert (again.delivered, again.already_delivered) == (0, 2) and len(got) == 2
    assert select_dead_letters(d.recorder.letters, handler="other") == []
    assert select_dead_letters(d.recorder.letters, since=datetime(2027, 1, 1, tzinfo=timezone.utc)) == []

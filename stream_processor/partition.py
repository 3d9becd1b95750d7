"""Everything one input partition does with its events, as plain code: drop repeated deliveries,
sessionize, close sessions and windows on the watermark, and evaluate the per-session rules.

The Faust adapter (``app.py``) feeds events in offset order and sends what comes out; this
module never touches Kafka. State is the visitors' map (handed in, one :mod:`visitor_state` per
device; the adapter keeps it in a compacted topic) and the partition's own state (watermark,
open windows, offsets processed, held events), which :meth:`checkpoint` and :meth:`restore` turn into
JSON.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable, Iterable, MutableMapping
from dataclasses import dataclass
from datetime import datetime

from clickstream import metrics as m
from clickstream.events import Event
from clickstream.reactions import Reaction
from clickstream.sessions import SessionRecord
from stream_processor import rules as r
from stream_processor import visitor_state as vs
from stream_processor.sessions import OpenSession, add_event, belongs_to, open_session, revenue_of, session_end, \
    session_id_for, session_key
from stream_processor.windows import WindowAggregate, closes_through, counter_key, event_counter_keys, sketch_positions, \
    window_start


@dataclass(frozen=True)
class ProcessingConfig:
    session_timeout_s: float = 1800
    lateness_s: float = 60
    idle_timeout_s: float = 10
    window_sizes: tuple[int, ...] = (60, 10)
    conversion_event: str = "Order Completed"
    dedup_horizon_s: float = 24 * 3600


class Output:
    """What processing produced, in order; the adapter sends it at the next checkpoint. One Output
    collects a whole batch (``process(..., out=)``): built once per batch, not once per event."""

    __slots__ = ("events", "sessions", "reactions", "partials", "dirty")

    def __init__(self, *, partials: list[dict] | None = None) -> None:
        self.events: list[tuple[str, Event]] = []  # (key, sessionized event)
        self.sessions: list[SessionRecord] = []
        self.reactions: list[Reaction] = []
        self.partials: list[dict] = partials or []  # closed windows and progress, for the merger
        self.dirty: set[str] = set()  # visitor keys whose state changed

    def extend(self, other: Output) -> None:
        self.events += other.events
        self.sessions += other.sessions
        self.reactions += other.reactions
        self.partials += other.partials
        self.dirty |= other.dirty

    def __bool__(self) -> bool:
        return bool(self.events or self.sessions or self.reactions or self.partials or self.dirty)


class PartitionProcessor:
    def __init__(self, partition: int, config: ProcessingConfig, visitors: MutableMapping[str, list | dict],
                 rules: Callable[[], r.RuleSet]):
        """``visitors``: device key -> state (:mod:`visitor_state`), as read back from the state topic."""
        self.partition = partition
        self.config = config
        for key, state in visitors.items():
            if isinstance(state, dict):  # written by an earlier version
                visitors[key] = vs.from_stored(state)
        self.visitors: MutableMapping[str, list] = visitors
        self.rules = rules
        self.max_time: float | None = None
        self.watermark: float | None = None
        self.closed_through: dict[int, int] = {}  # window size -> windows ending at or before are closed
        self.windows: dict[tuple[int, int, str], WindowAggregate] = {}
        self.offsets: dict[str, int] = {}  # highest offset processed per input topic
        self.checkpointed: dict[str, int] = {}  # ... as of the last checkpoint
        self.last_event_wall: float | None = None
        self._said_empty = False
        self.changed = True  # state differs from the last checkpoint
        self.stats: Counter[str] = Counter()
        # (source, page, next page) -> offsets of the events that made the step, since taken
        self.transitions: dict[tuple[str, str, str], list[int]] = {}
        self._transitions_topic: str | None = None
        # Events that may yet join their visitor's open session (see :meth:`_apply`), by visitor:
        # [(event time, offset, topic, event)] in arrival order. Part of the checkpoint.
        self.held: dict[str, list[tuple[float, int, str, Event]]] = {}
        # What a restore found released after its checkpoint: sent with the next call's output.
        self._restored: Output | None = None
        self._held_due: list[tuple[float, str]] = []  # (held event's time + timeout, visitor key)
        self._closing: list[tuple[float, str]] = []  # (session end + timeout, visitor key), lazily pruned
        self._forgetting: list[tuple[float, str]] = []  # (last event + dedup horizon, visitor key)
        self._next_due = float("-inf")
        self._rebuild_closing()

    # --- state ---------------------------------------------------------------------------------

    def checkpoint(self) -> dict:
        self.changed = False
        self.checkpointed = dict(self.offsets)
        state = {
            "max_time": self.max_time,
            "watermark": self.watermark,
            "closed_through": {str(k): v for k, v in self.closed_through.items()},
            "windows": {f"{w}|{s}|{src}": agg.to_dict() for (w, s, src), agg in self.windows.items()},
            "offsets": dict(self.offsets),
        }
        if self.held:
            state["held"] = {key: [[t, offset, topic, event.model_dump(mode="json")]
                                   for t, offset, topic, event in held] for key, held in self.held.items()}
        return state

    def restore(self, state: dict | None, closed_since: Iterable[SessionRecord] = ()) -> None:
        """Resume from a checkpoint. ``closed_since``: the session records a worker sent after this
        checkpoint (found in the sessions topic), for the states saved after it (see
        :meth:`_restore_closes`)."""
        if not state:
            return
        self.max_time, self.watermark = state["max_time"], state["watermark"]
        self.closed_through = {int(k): v for k, v in state["closed_through"].items()}
        self.windows = {}
        for key, agg in state["windows"].items():
            w, s, src = key.split("|", 2)
            self.windows[(int(w), int(s), src)] = WindowAggregate.from_dict(agg)
        self.offsets = dict(state["offsets"])
        self.checkpointed = dict(self.offsets)
        self._restore_held(state.get("held") or {})
        self._restore_closes(closed_since)
        self._rebuild_closing()

    def _restore_closes(self, closed_since: Iterable[SessionRecord]) -> None:
        """A session's close adds to the windows (sessions ended, bounces, conversions per session).
        A worker saves the visitors' states before the checkpoint, so a crash between the two can
        leave a state in which a session is over while the checkpoint's windows do not count its
        end, and the events processed again will not close it a second time. Such a session is one
        the state knows (its events are among those seen) but no longer holds open: its end is
        counted here. A session the state still holds open, or does not know, the replay closes."""
        for record in closed_since:
            key = record.anonymous_id or record.user_id or ""
            state = self.visitors.get(key)
            if not state or state[vs.PARTITION] != self.partition:
                continue
            if state[vs.SESSION] and OpenSession.from_state(state[vs.SESSION]).session_id == record.session_id:
                continue
            if record.session_id in vs.session_ids(state):
                self._count_session_end(record.session_end.timestamp(), record.source, record.page_views,
                                        record.converted, record.experiments)
                self.stats["session_ends_restored"] += 1

    def _restore_held(self, saved: dict) -> None:
        """The checkpoint's held events, against the visitors' states, which may be newer: a worker
        saves the states before the checkpoint, so a crash between the two leaves states that already
        released some of these events. Such an event is not released again (its visitor's session has
        moved on): the checkpoint's windows predate it, so it is counted and forwarded again with the
        session it got (:meth:`_redo`)."""
        self.held = {}
        restored = Output()
        for key, entries in saved.items():
            state = self.visitors.get(key)
            for t, offset, topic, data in entries:
                event = Event.model_validate(data)
                seen = vs.seen_entry(state, event.event_id) if state else None
                if seen is not None and seen[2] is not None:
                    self._redo(key, event, t, seen[2], restored)
                    self.stats["held_released_restored"] += 1
                else:
                    self.held.setdefault(key, []).append((t, offset, topic, event))
        self._restored = restored if restored or self.held else None

    def _flush_restored(self, out: Output, now: datetime) -> None:
        """Send what :meth:`_restore_held` found released, and release the held events of a visitor
        with no open session to wait for (not expected: a session's close releases them)."""
        restored, self._restored = self._restored, None
        out.extend(restored)
        for key in list(self.held):
            state = self.visitors.get(key)
            if not (state and state[vs.SESSION]):
                self._release(key, state or vs.new(self.partition), out, now)

    def _rebuild_closing(self) -> None:
        timeout = self.config.session_timeout_s
        self._closing = [
            (session_end(v[vs.SESSION]) + timeout, k)
            for k, v in self.visitors.items()
            if v[vs.PARTITION] == self.partition and v[vs.SESSION]
        ]
        heapq.heapify(self._closing)
        horizon = self.config.dedup_horizon_s
        self._forgetting = [
            (vs.latest_seen(v) + horizon, k)
            for k, v in self.visitors.items()
            if v[vs.PARTITION] == self.partition and not v[vs.SESSION] and v[vs.SEEN]
        ]
        heapq.heapify(self._forgetting)
        self._held_due = [(t + timeout, k) for k, held in self.held.items() for t, _, _, _ in held]
        heapq.heapify(self._held_due)
        self._update_next_due()

    # --- input ---------------------------------------------------------------------------------

    def process(self, event: Event, topic: str, offset: int, *, now: datetime, wall: float,
                out: Output | None = None) -> Output:
        """One event read at ``offset`` of ``topic`` (this partition). ``now``/``wall``: the wall clock.
        What it produces is added to ``out`` (a new Output when None), which is returned."""
        if out is None:
            out = Output()
        if self._restored is not None:
            self._flush_restored(out, now)
        if offset <= self.checkpointed.get(topic, -1):
            # Already in the checkpoint this partition was restored from: read again after a crash.
            self.stats["replayed_skipped"] += 1
            return out
        self.offsets[topic] = max(offset, self.offsets.get(topic, -1))
        self.changed = True
        self.last_event_wall = wall
        t = event.timestamp.timestamp()
        if self.max_time is None or t > self.max_time:
            self.max_time = t
            self.advance(t - self.config.lateness_s, now=now, out=out)
        key = session_key(event)
        state = self.visitors.get(key) or vs.new(self.partition)
        seen = vs.seen_entry(state, event.event_id)
        if seen is not None:
            if seen[1] != offset:
                self.stats["duplicates_dropped"] += 1
                return out
            # The same record again, processed after the last checkpoint: the visitor's state
            # already holds it (it is written first), the windows and the forwarded event may not.
            self.stats["replayed_after_checkpoint"] += 1
            if seen[2] is None:  # it was held (see _apply), and still is
                self._hold(key, event, t, topic, offset)
                return out
            self._redo(key, event, t, seen[2], out)
            return out
        self._apply(key, state, event, t, topic, offset, out, now)
        self.stats["events"] += 1
        return out

    def _redo(self, key: str, event: Event, t: float, session_id: str, out: Output) -> None:
        """An event the visitor's state already put in ``session_id`` (a state saved after the
        checkpoint): counted in its windows and forwarded again; ``emitted.py`` drops the copy if
        the first one was sent. It opened its session if the id follows from it."""
        self._count_in_windows(event, t, session_id, opened=session_id == session_id_for(key, event.event_id))
        out.events.append((key, event.model_copy(update={"session_id": session_id})))

    def _apply(self, key: str, state: list, event: Event, t: float, topic: str, offset: int, out: Output,
               now: datetime, *, settle: bool = True) -> None:
        """Sessionize a new event of the visitor whose state is ``state``, count it and forward it,
        or hold it.

        An event a timeout or more after the visitor's open session would start a new session. But
        that session has not closed yet (the watermark has not passed its end plus the timeout), so
        an event still to come within the lateness may fall in the gap and bridge it: the event is
        *held* (not forwarded, counted or sessionized; its id is remembered with no session) until
        a bridge arrives and it joins the open session, or the session closes and the held events
        start the next one. Sessions then do not depend on the order events arrive in within the
        lateness. A held event waits at most the lateness in event time (it is at least a timeout
        after the session's end, and the session closes when the watermark passes that point), and
        only an event whose gap lies between the timeout and the timeout plus the lateness is held.

        An event a timeout or more *before* the open session is held too while an event yet to come
        could still join it (the watermark is less than a timeout past it): with a lateness longer
        than the timeout such events need not be late. They are released as sessions of their own
        (see :meth:`_release_before`). With the default settings (a lateness under the timeout) only
        a late event comes this early, and it makes a session of its own at once (unless it is
        within a timeout of held events: then it joins them).

        ``settle=False`` leaves that decision to the caller, which applies more held events first.
        """
        session = OpenSession.from_state(state[vs.SESSION]) if state[vs.SESSION] else None
        timeout = self.config.session_timeout_s
        if session is None:
            session = open_session(event, t)
            self._add(key, state, session, event, t, topic, offset, out, opened=True)
        elif belongs_to(session, t, timeout):
            self._add(key, state, session, event, t, topic, offset, out, opened=False)
        else:
            self._hold(key, event, t, topic, offset)
            vs.remember(state, event.event_id, t, offset, None, self.config.dedup_horizon_s)
            self.visitors[key] = state
            out.dirty.add(key)
            if settle and t < session.start and self.watermark is not None and self.watermark >= t + timeout:
                # Nothing yet to come can join it: a session of its own at once, with any held
                # events it is within a timeout of.
                self._release_before(key, out, now)
            return
        out.reactions += self._session_rules(session, now)
        state[vs.SESSION] = session.to_state()
        heapq.heappush(self._closing, (session.end + timeout, key))
        self._next_due = min(self._next_due, session.end + timeout)
        if self.held and key in self.held:
            # The session grew: held events it now reaches join it, in the order they arrived (as
            # events that were not held do), each extending it for the next.
            held = self.held.pop(key)
            while held:
                grown = OpenSession.from_state(state[vs.SESSION])
                joining = next((h for h in held if belongs_to(grown, h[0], timeout)), None)
                if joining is None:
                    break
                held.remove(joining)
                self.stats["events_released"] += 1
                t_held, offset_held, topic_held, held_event = joining
                self._apply(key, state, held_event, t_held, topic_held, offset_held, out, now)
            if held:
                self.held[key] = held

    def _add(self, key: str, state: list, target: OpenSession, event: Event, t: float, topic: str, offset: int,
             out: Output, *, opened: bool) -> None:
        """Add an event to the session ``target``, count it in its windows and forward it."""
        if event.is_page_view and event.path is not None and target.exit_path is not None \
                and t >= target.exit_time and target.exit_path != event.path:
            # A step from the session's latest page to this one (in time order; late arrivals skipped).
            self.transitions.setdefault((event.source, target.exit_path, event.path), []).append(offset)
            self._transitions_topic = topic
        add_event(target, event, t, self.config.conversion_event)
        self._count_in_windows(event, t, target.session_id, opened=opened)
        vs.remember(state, event.event_id, t, offset, target.session_id, self.config.dedup_horizon_s)
        self.visitors[key] = state
        out.dirty.add(key)
        out.events.append((key, event.model_copy(update={"session_id": target.session_id})))

    def _hold(self, key: str, event: Event, t: float, topic: str, offset: int) -> None:
        """Put an event on hold. The stats count holds and releases (an event released when a
        session closes may be held again), so that their difference is the events held now."""
        held = self.held.setdefault(key, [])
        if not any(h[1] == offset and h[2] == topic for h in held):
            held.append((t, offset, topic, event))
            self.stats["events_held"] += 1
        # Checked when the watermark is a timeout past it (see _release_before).
        heapq.heappush(self._held_due, (t + self.config.session_timeout_s, key))
        self._next_due = min(self._next_due, t + self.config.session_timeout_s)
        self.changed = True

    def _release_before(self, key: str, out: Output, now: datetime) -> None:
        """Held events earlier than the visitor's open session (or all, without one), grouped into
        sessions as their times fall (a gap of the timeout or more parts two), that nothing yet to
        come can join any more (the watermark is a timeout past their last): each becomes a session
        of its own, closed at once, whose id follows from the first of its events to arrive."""
        held = self.held.get(key)
        state = self.visitors.get(key)
        if not held or not state:
            return
        timeout, watermark = self.config.session_timeout_s, self.watermark
        start = OpenSession.from_state(state[vs.SESSION]).start if state[vs.SESSION] else float("inf")
        groups: list[list] = []
        for h in sorted((h for h in held if h[0] < start), key=lambda h: h[0]):
            if groups and h[0] - groups[-1][-1][0] < timeout:
                groups[-1].append(h)
            else:
                groups.append([h])
        for group in groups:
            if group[-1][0] + timeout > watermark:
                continue
            arrived = sorted(group, key=lambda h: h[1])
            t, offset, topic, event = arrived[0]
            session = open_session(event, t)
            for i, (t, offset, topic, event) in enumerate(arrived):
                self._add(key, state, session, event, t, topic, offset, out, opened=i == 0)
                held.remove((t, offset, topic, event))
            self._close_session(session, out, now)
            self.stats["events_released"] += len(group)
        if not held:
            del self.held[key]
            if not state[vs.SESSION]:
                self._forget_later(key, state)  # nothing open any more

    def _release(self, key: str, state: list, out: Output, now: datetime) -> None:
        """The visitor's session closed: its held events, in the order they arrived, start the next
        session (its id follows from the first of them, as from the first event of any session), and
        those a timeout or more after it are held again."""
        held = self.held.pop(key)
        for t, offset, topic, event in held:
            self._apply(key, state, event, t, topic, offset, out, now, settle=False)
        self.stats["events_released"] += len(held)
        if key in self.held:
            # Held again, before the new session: those that nothing can join any more are released
            # now that every held event had its chance to join them.
            self._release_before(key, out, now)

    def idle(self, *, now: datetime, wall: float) -> Output:
        """Called now and then in processing time: after ``idle_timeout_s`` without events the
        watermark moves on without them, so the last windows and sessions of a quiet stream close."""
        if self._restored is not None:
            out = Output()
            self._flush_restored(out, now)
            out.extend(self.idle(now=now, wall=wall))
            return out
        if self.max_time is None:
            # No event yet: there is no event time to advance, but the merger must not wait for
            # this partition. It says so once (and again after a restart).
            if self._said_empty:
                return Output()
            self._said_empty = True
            return Output(partials=[{"kind": "progress", "p": self.partition, "w": size, "through": None}
                                    for size in self.config.window_sizes])
        if self.last_event_wall is None:
            # Restored from a checkpoint that covers every event there is: the quiet counts from
            # now, or the sessions and windows still open would wait for an event to close.
            self.last_event_wall = wall
        quiet = wall - self.last_event_wall
        if quiet < self.config.idle_timeout_s:
            return Output()
        # Event time is taken to move on with the wall clock from the last event, not to jump to
        # the wall clock: a backfill of old events that pauses must not find its windows closed.
        # The lateness still applies: a quiet spell may be an outage upstream (the API or the
        # broker down), and the events held up by it are no later than the lateness allows.
        return self.advance(self.max_time - self.config.lateness_s + quiet, now=now)

    def take_transitions(self) -> dict | None:
        """Page-to-next-page counts since the last call, as a message for the merger.

        Unlike a window's partial, these counts are sent as they grow, so a crash between sending
        them and saving the checkpoint would have the restarted partition count its replayed steps
        again. Each step therefore names the offset of the event that made it, and ``from`` is the
        offset of the checkpoint they follow (call this before :meth:`checkpoint`): the merger
        counts an offset once, and forgets offsets once a later message starts past them (a
        restart resumes at the latest checkpoint, never before what a delivered message followed).
        """
        if not self.transitions:
            return None
        steps, self.transitions = self.transitions, {}
        start = self.checkpointed.get(self._transitions_topic, -1)
        if self.held:
            # A held event makes its step when it is released, also after a restart from a later
            # checkpoint (held events are part of it): its offset must stay above ``from``.
            start = min([start] + [offset - 1 for held in self.held.values() for _, offset, _, _ in held])
        # The offsets ride beside the counts, which keep their shape for a merger of an earlier version.
        return {"kind": "transitions", "p": self.partition, "w": self.config.window_sizes[0],
                "counts": [[src, a, b, len(offsets)] for (src, a, b), offsets in steps.items()],
                "offsets": list(steps.values()), "from": start}

    # --- closing -------------------------------------------------------------------------------

    def advance(self, watermark: float, *, now: datetime, out: Output | None = None) -> Output:
        """Move the watermark forward: close sessions over by then, then windows ending by then.
        What closes is added to ``out`` (a new Output when None), which is returned."""
        if out is None:
            out = Output()
        if self.watermark is not None and watermark <= self.watermark:
            return out
        self.watermark = watermark
        self.changed = True
        if watermark < self._next_due:
            return out  # nothing closes before then: the common case, one event at a time
        timeout = self.config.session_timeout_s
        # Held events before a session that nothing can join any more: sessions of their own. (Those
        # before a session closing now are among them: they are a timeout or more before its start.)
        while self._held_due and self._held_due[0][0] <= watermark:
            _, key = heapq.heappop(self._held_due)
            if self.held and key in self.held:
                self._release_before(key, out, now)
        while self._closing and self._closing[0][0] <= watermark:
            close_at, key = heapq.heappop(self._closing)
            state = self.visitors.get(key)
            if not state or not state[vs.SESSION] or session_end(state[vs.SESSION]) + timeout != close_at:
                continue  # the session was extended (a newer entry is queued) or closed already
            self._close_session(OpenSession.from_state(state[vs.SESSION]), out, now)
            state[vs.SESSION] = None
            self.visitors[key] = state
            out.dirty.add(key)
            if self.held and key in self.held:
                self._release(key, state, out, now)  # opens the next session: nothing to forget
                continue
            self._forget_later(key, state)
        # A visitor with no open session and nothing seen within the dedup horizon is forgotten,
        # so state stays bounded by the visitors of the last horizon.
        while self._forgetting and self._forgetting[0][0] <= watermark:
            _, key = heapq.heappop(self._forgetting)
            state = self.visitors.get(key)
            if state and not state[vs.SESSION] and vs.latest_seen(state) + self.config.dedup_horizon_s <= watermark \
                    and key not in self.held:
                del self.visitors[key]
                out.dirty.add(key)
        # A window stays open while a held event in it waits: released, it is counted there.
        limit = min([watermark] + [h[0] for held in self.held.values() for h in held]) if self.held else watermark
        for size in self.config.window_sizes:
            through = closes_through(limit, size)
            if through <= self.closed_through.get(size, -1):
                continue
            self.closed_through[size] = through
            for key in sorted(k for k in self.windows if k[0] == size and k[1] + size <= through):
                agg = self.windows.pop(key)
                out.partials.append({"kind": "window", "p": self.partition, "w": size, "s": key[1],
                                     "source": key[2], **agg.partial()})
            out.partials.append({"kind": "progress", "p": self.partition, "w": size, "through": through})
        self._update_next_due()
        return out

    def _forget_later(self, key: str, state: list) -> None:
        """A visitor with no open session is forgotten a dedup horizon after its last event."""
        due = vs.latest_seen(state) + self.config.dedup_horizon_s
        heapq.heappush(self._forgetting, (due, key))
        self._next_due = min(self._next_due, due)

    def _update_next_due(self) -> None:
        """The earliest watermark at which something closes: a window, a session, a forgotten visitor."""
        due = [self.closed_through[size] + size if size in self.closed_through else float("-inf")
               for size in self.config.window_sizes]
        if self._closing:
            due.append(self._closing[0][0])
        if self._forgetting:
            due.append(self._forgetting[0][0])
        if self._held_due:
            due.append(self._held_due[0][0])
        self._next_due = min(due)

    def _close_session(self, session: OpenSession, out: Output, now: datetime) -> None:
        out.sessions.append(session.to_record())
        self._count_session_end(session.end, session.source, session.page_views, session.converted,
                                session.experiments)
        for rule in self.rules().of(r.SequenceRule):
            if rule.applies_to(session.source) and rule.first in session.event_names \
                    and rule.absent not in session.event_names:
                out.reactions.append(r.make_reaction(
                    rule, "sequence", session.session_id, session.start, session.end, 1, 0,
                    f"session {session.session_id} ({session.user_id or session.anonymous_id}): "
                    f"{rule.first!r} and no {rule.absent!r} by session end", now))
        self.stats["sessions_closed"] += 1

    def _count_session_end(self, end: float, source: str, page_views: int, converted: bool,
                           experiments: dict[str, str]) -> None:
        """A session ends in the window holding its last event plus the timeout, when it is closed."""
        ends = end + self.config.session_timeout_s
        for size in self.config.window_sizes:
            self._window(size, ends, source).add_session_end(page_views, converted, experiments)

    def _session_rules(self, session: OpenSession, now: datetime) -> list[Reaction]:
        fired = []
        for rule in self.rules().of(r.SessionRule):
            if rule.name in session.fired or not rule.applies_to(session.source):
                continue
            value = float(getattr(session, rule.field))
            if rule.holds(value):
                session.fired.append(rule.name)
                fired.append(r.make_reaction(
                    rule, "session", session.session_id, session.start, session.end, value, rule.bound,
                    f"session {session.session_id} ({session.user_id or session.anonymous_id}): "
                    f"{rule.field} {value:g} (rule {rule.name})", now))
        return fired

    # --- windows -------------------------------------------------------------------------------

    def _window(self, size: int, t: float, source: str) -> WindowAggregate:
        """The open window of ``size`` holding ``t``; the oldest open one when that has closed."""
        start = window_start(t, size)
        through = self.closed_through.get(size)
        if through is not None and start + size <= through:
            start = through
        key = (size, start, source)
        agg = self.windows.get(key)
        if agg is None:
            agg = self.windows[key] = WindowAggregate()
        return agg

    def _count_in_windows(self, event: Event, t: float, session_id: str, *, opened: bool) -> None:
        conversion = event.type == "track" and event.event == self.config.conversion_event
        revenue = revenue_of(event) if conversion else None
        visitor, session = sketch_positions(event.visitor_id, session_id)
        keys = None  # worked out once, for the first window the event is not late for
        for size in self.config.window_sizes:
            through = self.closed_through.get(size)
            if through is not None and window_start(t, size) + size <= through:
                self._window(size, t, event.source).counts[counter_key(m.LATE_EVENTS)] += 1
                self.stats[f"late_events_{size}s"] += 1
                continue
            if keys is None:
                keys = event_counter_keys(event.type, event.event, event.path, event.is_bot, conversion)
                if opened:
                    keys += (counter_key(m.SESSIONS_STARTED),)
            self._window(size, t, event.source).add_counted(visitor, session, keys, revenue)

"""Faust wiring: topics, tables and thin agents around the pure logic modules.

* ``sessionize`` reads ``clickstream.raw`` (keyed by visitor), drops repeated deliveries of
  an event id, gives each event its session id from the visitor's state and forwards it to
  ``clickstream.events``.
* ``count_page_views`` reads ``clickstream.events`` re-keyed by source and path and
  counts page views per tumbling event-time window; when a window's count reaches
  the threshold it sends a reaction to ``clickstream.reactions``.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime, timedelta, timezone

import faust
from pydantic import ValidationError

from clickstream.events import Event
from clickstream.settings import Settings
from clickstream.topics import Topics
from stream_processor.dedup import check_and_remember
from stream_processor.rules import page_view_threshold
from stream_processor.sessions import SessionState, assign_session
from stream_processor.windows import count_event

log = logging.getLogger(__name__)

# Windows kept open per path behind the newest one: later events are counted as late.
RETAIN_WINDOWS = 3
# How far back (in event time, behind a visitor's latest event) a repeated delivery is recognised.
DEDUP_HORIZON_S = 24 * 3600


def page_view_subject(event: Event) -> str:
    return f"{event.source}:{event.path}"


def create_app(settings: Settings) -> faust.App:
    topics = Topics.from_settings(settings)
    app = faust.App(
        topics.group("processor"),
        broker=f"kafka://{settings.bootstrap_servers}",
        store="memory://",  # tables are rebuilt from their changelog topics on start
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication_factor,
        producer_acks=-1,
        # Short group timeouts: a restarted worker gets its partitions back in seconds.
        broker_session_timeout=6,
        broker_rebalance_timeout=6,
        broker_heartbeat_interval=1,
        web_bind=settings.host,
        web_host=settings.host,
        web_port=settings.processor_port,
        datadir=str(settings.data_dir / "processor"),
        consumer_auto_offset_reset="earliest",
    )
    stats: Counter[str] = Counter()

    raw = app.topic(topics.raw, key_type=bytes, value_type=bytes, value_serializer="raw")
    events = app.topic(topics.events, key_type=bytes, value_type=bytes, value_serializer="raw")
    reactions = app.topic(topics.reactions, key_type=bytes, value_type=bytes, value_serializer="raw")
    page_views = app.topic(
        f"{settings.topic_prefix}processor.page-views-by-path",
        key_type=bytes,
        value_type=bytes,
        value_serializer="raw",
        partitions=settings.topic_partitions,
        internal=True,
    )
    visitor_sessions = app.Table("visitor-sessions", default=dict, partitions=settings.topic_partitions)
    page_view_windows = app.Table("page-view-windows", default=dict, partitions=settings.topic_partitions)
    timeout = timedelta(seconds=settings.session_timeout_s)

    @app.agent(raw)
    async def sessionize(stream):
        async for value in stream:
            try:
                event = Event.from_bytes(value)
            except ValidationError as exc:
                # Only the API writes this topic; a record it cannot have written is kept in the log.
                stats["undecodable_raw"] += 1
                log.error("undecodable record on %s: %s", topics.raw, exc)
                continue
            visitor = visitor_sessions[event.visitor_id] or {}
            repeat, seen = check_and_remember(
                visitor.get("seen", {}), event.event_id, event.timestamp.timestamp(), DEDUP_HORIZON_S
            )
            if repeat:
                stats["duplicates_dropped"] += 1
                continue
            state = assign_session(
                SessionState.from_dict(visitor.get("session")),
                visitor_id=event.visitor_id,
                event_id=event.event_id,
                event_time=event.timestamp,
                timeout=timeout,
            )
            visitor_sessions[event.visitor_id] = {"session": state.to_dict(), "seen": seen}
            sessionized = event.model_copy(update={"session_id": state.session_id})
            await events.send(key=event.visitor_id.encode(), value=sessionized.to_bytes())
            stats["sessionized"] += 1

    @app.agent(events)
    async def route_page_views(stream):
        # Re-key page views by source and path so one worker owns each path's count.
        async for value in stream:
            event = Event.from_bytes(value)
            if event.is_page_view and event.path:
                await page_views.send(key=page_view_subject(event).encode(), value=value)

    @app.agent(page_views)
    async def count_page_views(stream):
        async for value in stream:
            event = Event.from_bytes(value)
            subject = page_view_subject(event)
            counts, window = count_event(
                page_view_windows[subject],
                event.timestamp,
                size_s=settings.window_s,
                retain_windows=RETAIN_WINDOWS,
            )
            if window.late:
                stats["late_events"] += 1
                log.info("late page view %s for %s (window %s)", event.event_id, subject, window.start)
                continue
            page_view_windows[subject] = counts
            stats["page_views"] += 1
            reaction = page_view_threshold(
                subject, window, settings.page_view_threshold, now=datetime.now(timezone.utc)
            )
            if reaction is not None:
                await reactions.send(key=subject.encode(), value=reaction.to_bytes())
                stats["reactions"] += 1
                log.info("reaction %s: %s", reaction.reaction_id, reaction.message)

    @app.page("/health")
    async def health(web, request):
        # Ready once the worker holds partitions and has rebuilt its tables from their changelogs.
        ready = app.tables.recovery.completed.is_set() and not app.rebalancing
        return web.json({"status": "ok" if ready else "starting", **stats}, status=200 if ready else 503)

    return app


def run(settings: Settings) -> None:
    (settings.data_dir / "processor").mkdir(parents=True, exist_ok=True)
    app = create_app(settings)
    worker = faust.Worker(app, loglevel=settings.log_level, quiet=True)
    worker.execute_from_commandline()

"""Faust wiring: topics, tables and two thin agents around the plain logic modules.

* ``process`` reads ``clickstream.raw``, keyed by device (anonymous id, else user id, as the
  API writes it), so a device's events arrive in one partition, in order. Each partition's
  :class:`PartitionProcessor` drops repeats, sessionizes, closes sessions and windows on the
  watermark, and evaluates the session rules; sessionized events go to ``clickstream.events``,
  closed sessions to ``clickstream.sessions``, closed windows (partials) to a one-partition
  internal topic.
* ``merge`` reads the partials; the :class:`WindowMerger` emits final rows to
  ``clickstream.metrics`` and evaluates the window rules. Reactions go to ``clickstream.reactions``.

Consistency after a crash: events are acknowledged (their offsets become committable) only
after a *checkpoint*: first every output of the events is sent and acknowledged by the broker,
then the changed visitor states and the partition's state (watermark, open windows, offsets
processed) are written to the tables' changelog topics and acknowledged. A restarted worker
recovers the tables, skips records already in the checkpoint and processes the rest again:
sessions, windows and metrics come out the same as without the crash. Outputs of the
events after the last checkpoint can be sent twice (same ids and contents), never lost.
Tansu accepts no transactions, so this does without Kafka's exactly-once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from datetime import datetime, timezone

import faust
from pydantic import ValidationError

from clickstream.events import Event
from clickstream.settings import Settings
from clickstream.topics import Topics
from stream_processor.merge import WindowMerger
from stream_processor.partition import Output, PartitionProcessor, ProcessingConfig
from stream_processor.rules_file import RulesHolder

log = logging.getLogger(__name__)

# A checkpoint is taken after this many events, or this often while events are pending.
CHECKPOINT_EVENTS = 5000
CHECKPOINT_INTERVAL_S = 0.25
JSON = {"key_serializer": "json", "value_serializer": "json"}


def processing_config(settings: Settings) -> ProcessingConfig:
    return ProcessingConfig(
        session_timeout_s=settings.session_timeout_s,
        lateness_s=settings.lateness_s,
        idle_timeout_s=settings.idle_timeout_s,
        window_sizes=tuple(settings.windows_s),
        conversion_event=settings.conversion_event,
    )


def create_app(settings: Settings) -> faust.App:
    topics = Topics.from_settings(settings)
    partitions = settings.topic_partitions
    app = faust.App(
        topics.group("processor"),
        broker=f"kafka://{settings.bootstrap_servers}",
        store="memory://",  # tables are rebuilt from their changelog topics on start
        topic_partitions=partitions,
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
    config = processing_config(settings)
    rules = RulesHolder(settings.rules_file, settings.page_view_threshold)

    def raw_topic(name: str, **kwargs) -> faust.TopicT:
        return app.topic(name, key_type=bytes, value_type=bytes, value_serializer="raw", **kwargs)

    raw_in = raw_topic(topics.raw)
    events_out = raw_topic(topics.events)
    sessions_out = raw_topic(topics.sessions)
    metrics_out = raw_topic(topics.metrics)
    reactions_out = raw_topic(topics.reactions)
    partials = app.topic(f"{settings.topic_prefix}processor.window-partials", key_type=bytes,
                         value_serializer="json", partitions=1, internal=True)
    visitors = app.Table("visitors", partitions=partitions)
    checkpoints = app.Table("partition-checkpoints", partitions=partitions)
    merger_state = app.Table("merger", partitions=1)

    processors: dict[int, PartitionProcessor] = {}
    batch = {"out": Output(), "events": [], "since": time.monotonic()}

    lock = asyncio.Lock()
    streams: dict[str, faust.StreamT] = {}
    merging: dict[str, WindowMerger] = {}  # the merger, while this worker owns the partials' partition

    def processor(partition: int) -> PartitionProcessor:
        proc = processors.get(partition)
        if proc is None:
            proc = processors[partition] = PartitionProcessor(partition, config, visitors.data, rules.current)
            proc.restore(checkpoints.data.get(f"p{partition}"))
        return proc

    @app.on_partitions_revoked.connect
    async def _revoked(sender, revoked, **kwargs) -> None:
        # Their unacknowledged events go to the new owner, who resumes from the checkpoint.
        for tp in revoked:
            if tp.topic == topics.raw:
                processors.pop(tp.partition, None)
            if tp.topic == partials.get_topic_name():
                merging.clear()

    def now() -> datetime:
        return datetime.now(timezone.utc)

    async def checkpoint() -> None:
        """Send the batch's outputs, then its state, then acknowledge its events (see module doc)."""
        async with lock:
            out, events = batch["out"], batch["events"]
            if not events and not out.partials and not out.dirty and not out.sessions:
                batch["since"] = time.monotonic()
                return
            batch.update(out=Output(), events=[], since=time.monotonic())
            # State as of this batch, taken before any await lets the agent move on.
            touched = {p for p in processors}
            states = {p: processors[p].checkpoint() for p in touched}
            dirty = {key: (dict(visitors.data[key]) if key in visitors.data else None) for key in out.dirty}
            partition_of = {key: (value or {}).get("p") for key, value in dirty.items()}
            futures = []
            for key, event in out.events:
                futures.append(await events_out.send(key=key.encode(), value=event.to_bytes(), force=True))
            for record in out.sessions:
                futures.append(await sessions_out.send(key=record.session_id.encode(), value=record.to_bytes(),
                                                       force=True))
            for reaction in out.reactions:
                futures.append(await reactions_out.send(key=reaction.subject.encode(), value=reaction.to_bytes(),
                                                        force=True))
            for partial in out.partials:
                futures.append(await partials.send(key=str(partial["w"]).encode(), value=partial, force=True))
            await asyncio.gather(*futures)
            futures = []
            for key, value in dirty.items():
                partition = partition_of[key]
                if partition is None:  # forgotten visitor: a tombstone, in the partition it lived in
                    partition = deleted_partition.pop(key, None)
                if partition is not None:
                    futures.append(await visitors.changelog_topic.send(
                        key=key, value=value, partition=partition, force=True, **JSON))
            for p, state in states.items():
                futures.append(await checkpoints.changelog_topic.send(
                    key=f"p{p}", value=state, partition=p, force=True, **JSON))
                checkpoints.data[f"p{p}"] = state
            await asyncio.gather(*futures)
            stream = streams.get("process")
            for event in events:
                await stream.ack(event)
            stats["checkpoints"] += 1
            stats["events_out"] += len(out.events)
            stats["sessions_out"] += len(out.sessions)
            stats["reactions_out"] += len(out.reactions)

    deleted_partition: dict[str, int] = {}

    def collect(out: Output, partition: int) -> None:
        for key in out.dirty:
            if key not in visitors.data:
                deleted_partition[key] = partition
        batch["out"].extend(out)

    @app.agent(raw_in)
    async def process(stream):
        stream = stream.noack()
        streams["process"] = stream
        async for event in stream.events():
            message = event.message
            try:
                value = Event.from_bytes(event.value)
            except ValidationError as exc:
                # Only the API writes these events; a record it cannot have written stays in the log.
                stats["undecodable_raw"] += 1
                log.error("undecodable record on %s at %s: %s", message.topic, message.offset, exc)
                batch["events"].append(event)
                continue
            out = processor(message.partition).process(
                value, message.topic, message.offset, now=now(), wall=time.time())
            collect(out, message.partition)
            batch["events"].append(event)
            if len(batch["events"]) >= CHECKPOINT_EVENTS:
                await checkpoint()

    @app.agent(partials)
    async def merge(stream):
        stream = stream.noack()
        async for event in stream.events():
            merger = merging.get("m")
            if merger is None:
                merger = merging["m"] = WindowMerger(partitions, config.window_sizes, rules.current)
                merger.restore(merger_state.data.get("state"))
            rows, reactions = merger.add(event.value, now())
            futures = [await metrics_out.send(key=row.metric.encode(), value=row.to_bytes(), force=True)
                       for row in rows]
            futures += [await reactions_out.send(key=r.subject.encode(), value=r.to_bytes(), force=True)
                        for r in reactions]
            await asyncio.gather(*futures)
            state = merger.to_dict()
            merger_state.data["state"] = state
            await (await merger_state.changelog_topic.send(key="state", value=state, partition=0, force=True,
                                                           **JSON))
            await stream.ack(event)
            stats["metric_rows"] += len(rows)
            stats["reactions_out"] += len(reactions)
            for reaction in reactions:
                log.info("reaction %s: %s", reaction.reaction_id, reaction.message)

    @app.timer(CHECKPOINT_INTERVAL_S)
    async def tick() -> None:
        if not app.tables.recovery.completed.is_set() or app.rebalancing:
            return
        assigned = {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == topics.raw}
        for partition in sorted(assigned):
            collect(processor(partition).idle(now=now(), wall=time.time()), partition)
        if time.monotonic() - batch["since"] >= CHECKPOINT_INTERVAL_S:
            await checkpoint()

    @app.timer(2.0)
    async def reload_rules() -> None:
        rules.reload_if_changed()

    @app.page("/health")
    async def health(web, request):
        # Ready once the worker holds partitions and has rebuilt its tables from their changelogs.
        ready = app.tables.recovery.completed.is_set() and not app.rebalancing
        late = sum(v for p in processors.values() for k, v in p.stats.items() if k.startswith("late_events"))
        body = {"status": "ok" if ready else "starting", **stats, "late_events": late,
                "partitions": sorted(processors), "rules": rules.describe()}
        return web.json(body, status=200 if ready else 503)

    return app


def run(settings: Settings) -> None:
    (settings.data_dir / "processor").mkdir(parents=True, exist_ok=True)
    app = create_app(settings)
    worker = faust.Worker(app, loglevel=settings.log_level, quiet=True)
    worker.execute_from_commandline()

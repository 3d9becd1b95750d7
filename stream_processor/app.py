"""Faust wiring: topics, tables and two thin agents around the plain logic modules.

* ``process`` reads ``clickstream.raw`` (its records come straight from the consumer, see
  ``drain.py``), keyed by device (anonymous id, else user id, as the
  API writes it), so a device's events arrive in one partition, in order. Each partition's
  :class:`PartitionProcessor` drops repeats, sessionizes, closes sessions and windows on the
  watermark, and evaluates the session rules; sessionized events go to ``clickstream.events``,
  closed sessions to ``clickstream.sessions``, closed windows (partials) and page-to-next-page
  counts to a one-partition internal topic.
* ``merge`` reads the partials; the :class:`WindowMerger` emits final rows to
  ``clickstream.metrics`` and evaluates the window rules. Reactions go to ``clickstream.reactions``;
  next-page counts to a compacted topic every worker follows to answer
  ``GET /v1/recommendations?path=/x&limit=5``.

State lives in compacted topics (``processor.visitors``: one record per device;
``processor.checkpoints``: one per partition; ``processor.merger``), read back in full by
the worker that takes a partition over.

Consistency after a crash: events are acknowledged (their offsets become committable) only
after a *checkpoint*: first every output of the events is sent and acknowledged by the broker,
then the changed visitor states, then the partition's state (watermark, open windows, offsets
processed, and the offsets its outputs reached). A restarted worker loads the state, skips
records already in the checkpoint and processes the rest again: sessions, windows and metrics
come out the same as without the crash. What it sent after the checkpoint it finds in the output
topics and does not send again (``emitted.py``); the merger does the same with its own state.
Tansu accepts no transactions, so this does without Kafka's exactly-once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone

import faust
from aiokafka import AIOKafkaConsumer
from faust.types import TP
from pydantic import ValidationError
from pydantic_core import from_json

from clickstream.events import Event
from clickstream.garbage import collect_less
from clickstream.kafka import connection_for
from clickstream.metrics import MetricRow
from clickstream.sessions import SessionRecord
from clickstream.settings import Settings
from clickstream.topics import Topics
from stream_processor import emitted as em
from stream_processor.drain import App
from stream_processor.merge import WindowMerger
from stream_processor.recommendations import recommend
from stream_processor.partition import Output, PartitionProcessor, ProcessingConfig
from stream_processor.rules_file import RulesHolder
from stream_processor.state_store import encode, partition_counts, read_partition, read_values

log = logging.getLogger(__name__)

# A checkpoint is taken after this many events, or this often while events are pending. It is
# taken in the background; while one is in flight, processing waits once the next batch holds
# twice as many events (state of a million visitors and what is in flight: under 1 GB).
CHECKPOINT_EVENTS = 2500
CHECKPOINT_INTERVAL_S = 0.25

# Connections a checkpoint's records are sent over, each partition's always through the same
# one (clickstream.kafka.connection_for says why; the API does the same).
SEND_CONNECTIONS = 4


def processing_config(settings: Settings) -> ProcessingConfig:
    return ProcessingConfig(
        session_timeout_s=settings.session_timeout_s,
        lateness_s=settings.lateness_s,
        idle_timeout_s=settings.idle_timeout_s,
        window_sizes=tuple(settings.windows_s),
        conversion_event=settings.conversion_event,
    )


def failpoint(setting: str) -> Callable[[str], Awaitable[None]]:
    """``await passed(name)`` ends the process at once (as a SIGKILL would) the N-th time it passes
    ``name``, for ``setting`` "name:N"; with "hang:name:N" it waits forever there instead, as a broker
    that never answers would make it. It does nothing for any other name or an empty setting. Lets
    the fault tests stop the worker exactly between sending outputs and saving the state that covers
    them."""
    hang = setting.startswith("hang:")
    name, _, count = setting.removeprefix("hang:").partition(":")
    passes = Counter()

    async def passed(point: str) -> None:
        if point == name:
            passes[point] += 1
            if passes[point] >= int(count or 1):
                if hang:
                    log.warning("failpoint %s reached: waiting forever", setting)
                    await asyncio.Event().wait()
                log.warning("failpoint %s reached: exiting", setting)
                logging.shutdown()
                os._exit(70)

    return passed


def create_app(settings: Settings) -> faust.App:
    topics = Topics.from_settings(settings)
    partitions = settings.topic_partitions
    app = App(
        topics.group("processor"),
        broker=f"kafka://{settings.bootstrap_servers}",
        topic_partitions=partitions,
        topic_replication_factor=settings.topic_replication_factor,
        producer_acks=-1,
        # Checkpoints send thousands of records at once: fewer, larger produce requests.
        producer_max_batch_size=512 * 1024,
        producer_linger=0.005,
        # Short group timeouts: a restarted worker gets its partitions back in seconds.
        broker_session_timeout=6,
        broker_rebalance_timeout=6,
        broker_heartbeat_interval=1,
        web_bind=settings.host,
        web_host=settings.host,
        web_port=settings.processor_port,
        datadir=str(settings.data_dir / "processor"),
        consumer_auto_offset_reset="earliest",
        # Each fetch on Tansu's S3 log costs a round trip of tens of milliseconds: fetch more per
        # partition.
        consumer_max_fetch_size=4 * 1024 * 1024,
    )
    stats: Counter[str] = Counter(checkpoint_waits=0, checkpoint_wait_s=0.0)
    fail = failpoint(settings.processor_failpoint)
    config = processing_config(settings)
    rules = RulesHolder(settings.rules_file, settings.page_view_threshold)

    def byte_topic(name: str, **kwargs) -> faust.TopicT:
        return app.topic(name, key_type=bytes, value_type=bytes, value_serializer="raw", **kwargs)

    def state_topic(name: str, count: int) -> faust.TopicT:
        return byte_topic(f"{settings.topic_prefix}processor.{name}", partitions=count, internal=True,
                          compacting=True)

    raw_in = byte_topic(topics.raw)
    events_out = byte_topic(topics.events)
    sessions_out = byte_topic(topics.sessions)
    metrics_out = byte_topic(topics.metrics)
    reactions_out = byte_topic(topics.reactions)
    partials = byte_topic(f"{settings.topic_prefix}processor.window-partials", partitions=1, internal=True)
    visitor_states = state_topic("visitors", partitions)  # key: device; value: its state
    checkpoints = state_topic("checkpoints", partitions)  # key: partition; value: its state
    merger_state = state_topic("merger", 1)
    recommendations = state_topic("recommendations", 1)  # key: "source|page"; value: next page -> count
    next_pages: dict[str, dict[str, int]] = {}  # every worker's copy, for /v1/recommendations

    processors: dict[int, PartitionProcessor] = {}
    loading: dict[int, asyncio.Task] = {}
    outputs = {em.EVENTS: events_out, em.SESSIONS: sessions_out, em.REACTIONS: reactions_out}
    # Per input partition: where its outputs go, the offsets they reached, and what a crashed
    # worker sent after its last checkpoint (see emitted.py).
    targets: dict[int, dict[str, int]] = {}
    emitted: dict[int, dict[str, int]] = {}
    resent: dict[int, em.Resent] = {}
    batch = {"out": {}, "messages": [], "since": time.monotonic()}  # out: partition -> Output
    lock = asyncio.Lock()
    # While this worker owns the partials' partition: the merger ("m"), where its outputs go ("to"),
    # the offsets they reached ("emitted") and what was sent before a restart ("resent").
    merging: dict = {}

    async def output_targets(partition: int, kinds: dict[str, faust.TopicT]) -> dict[str, int]:
        names = {kind: topic.get_topic_name() for kind, topic in kinds.items()}
        counts = await partition_counts(settings.bootstrap_servers, list(names.values()))
        return {kind: em.output_partition(partition, counts[name] or partitions) for kind, name in names.items()}

    async def read_resent(kinds: dict[str, faust.TopicT], where: dict[str, int], offsets: dict[str, int] | None
                          ) -> em.Resent:
        """What was sent after the checkpoint whose emitted ``offsets`` are given (None: before any was kept)."""
        found = em.Resent()
        if offsets is None:
            return found
        tails = await asyncio.gather(*(
            read_values(settings.bootstrap_servers, kinds[kind].get_topic_name(), where[kind], offsets.get(kind, 0))
            for kind in kinds))
        for kind, values in zip(kinds, tails):
            found.add(kind, values)
        return found

    async def load(partition: int) -> PartitionProcessor:
        saved = await read_partition(settings.bootstrap_servers, checkpoints.get_topic_name(), partition)
        state, offsets = em.split_checkpoint(saved.get(str(partition)))
        if saved.get(str(partition)) is None:
            offsets = {}  # never checkpointed: anything in its output partitions was sent by a crashed first run
        where = targets[partition] = await output_targets(partition, outputs)
        visitors, found = await asyncio.gather(
            read_partition(settings.bootstrap_servers, visitor_states.get_topic_name(), partition),
            read_resent(outputs, where, offsets))
        proc = PartitionProcessor(partition, config, visitors, rules.current)
        proc.restore(state, closed_since=[SessionRecord.model_validate(v) for v in found.sessions])
        emitted[partition] = dict(offsets or {})
        resent[partition] = found
        log.info("partition %d: state of %d visitors loaded, resuming after offsets %s; %s outputs sent before "
                 "a restart will not be sent again; %d session ends and %d held events found in states saved "
                 "after the checkpoint", partition, len(visitors), proc.offsets,
                 sum(len(ids) for ids in found.ids.values()), proc.stats["session_ends_restored"],
                 proc.stats["held_released_restored"])
        return proc

    async def processor(partition: int) -> PartitionProcessor:
        proc = processors.get(partition)
        if proc is None:
            task = loading.get(partition)
            if task is None:
                task = loading[partition] = asyncio.ensure_future(load(partition))
            try:
                proc = processors[partition] = await task
            finally:
                loading.pop(partition, None)
        return proc

    @app.on_partitions_revoked.connect
    async def _revoked(sender, revoked, **kwargs) -> None:
        # Their unacknowledged events go to the new owner, which resumes from the checkpoint.
        for tp in revoked:
            if tp.topic == topics.raw:
                processors.pop(tp.partition, None)
            if tp.topic == partials.get_topic_name():
                merging.clear()

    def now() -> datetime:
        return datetime.now(timezone.utc)

    async def checkpoint() -> None:
        """Send the batch's outputs, then its state, then acknowledge its events (see module doc)."""
        try:
            # Bounded: a produce request the broker never answers would hold every output (the
            # producer keeps one request in flight), for Faust's 20-minute request timeout.
            await asyncio.wait_for(take_checkpoint(), settings.processor_checkpoint_timeout_s)
        except Exception as exc:
            # The batch's events can be neither acknowledged nor dropped; a rebalance would wait for
            # them forever. The state on Kafka is consistent: a restarted worker resumes from it.
            give_up("checkpoint", exc)

    def give_up(what: str, exc: BaseException) -> None:
        log.critical("%s failed (%s: %s): exiting, to resume from the last saved state", what,
                     type(exc).__name__, exc)
        logging.shutdown()
        os._exit(75)

    async def take_checkpoint() -> None:
        async with lock:
            outs, messages = batch["out"], batch["messages"]
            batch.update(out={}, messages=[], since=time.monotonic())
            for p, out in outs.items():
                drop_resent(out, p)
            outs = {p: out for p, out in outs.items() if out}
            transitions = [t for t in (proc.take_transitions() for proc in processors.values()) if t]
            # State as of this batch, serialized before any await lets the agent move on.
            states = {p: encode(proc.checkpoint()) for p, proc in processors.items() if proc.changed or p in outs}
            if not messages and not outs and not transitions and not states:
                return
            dirty, sends = [], []
            for p, out in outs.items():
                if p not in processors:
                    continue  # revoked meanwhile: the new owner redoes its events
                to = targets[p]
                dirty += [(key, p, encode(processors[p].visitors.get(key))) for key in out.dirty]
                sends += [(events_out, key.encode(), event.to_bytes(), to[em.EVENTS], (p, em.EVENTS))
                          for key, event in out.events]
                sends += [(sessions_out, r.session_id.encode(), r.to_bytes(), to[em.SESSIONS], (p, em.SESSIONS))
                          for r in out.sessions]
                sends += [(reactions_out, r.subject.encode(), r.to_bytes(), to[em.REACTIONS], (p, em.REACTIONS))
                          for r in out.reactions]
                sends += [(partials, str(x["w"]).encode(), encode(x), 0, None) for x in out.partials]
            sends += [(partials, str(x["w"]).encode(), encode(x), 0, None) for x in transitions]
            reached = await send_all(sends)
            if reached:
                await fail("outputs-sent")
            for (p, kind), offset in reached.items():
                emitted.setdefault(p, {})[kind] = offset
            # The visitors' states are durable before the checkpoint that skips their events is.
            await send_all([(visitor_states, key.encode(), value, partition, None) for key, partition, value in dirty])
            if dirty:
                await fail("states-saved")
            await send_all([(checkpoints, str(p).encode(), em.wrap_checkpoint(value, encode(emitted.get(p, {}))), p,
                             None) for p, value in states.items()])
            ack = app.consumer.ack
            for message in messages:
                ack(message)
            stats["checkpoints"] += 1
            stats["events_out"] += sum(len(out.events) for out in outs.values())
            stats["sessions_out"] += sum(len(out.sessions) for out in outs.values())
            stats["reactions_out"] += sum(len(out.reactions) for out in outs.values())

    async def send_all(records: list) -> dict:
        """Send (topic, key, value, partition, tag) records and wait until the broker acknowledged every
        one; returns, per tag, the offset after the last record with that tag."""
        # Straight to aiokafka, in one batch per topic-partition (as many as its size needs): a
        # record costs an append instead of a send with its own future (Faust's Topic.send and even
        # Producer.send cost more than the rest of the path).
        producers = await send_producers()
        groups: dict[tuple[str, int], list] = {}
        for topic, key, value, partition, tag in records:
            groups.setdefault((topic.get_topic_name(), partition), []).append((key, value, tag))
        sent = []  # (future of a batch, the tags of its records in order)
        for (name, partition), items in groups.items():
            producer = connection_for(partition, producers)
            builder, tags = producer.create_batch(), []
            for key, value, tag in items:
                if builder.append(key=key, value=value, timestamp=None) is None:  # full
                    sent.append((await producer.send_batch(builder, name, partition=partition), tags))
                    builder, tags = producer.create_batch(), []
                    builder.append(key=key, value=value, timestamp=None)  # an empty batch takes any record
                tags.append(tag)
            sent.append((await producer.send_batch(builder, name, partition=partition), tags))
        reached: dict = {}
        for (_, tags), meta in zip(sent, await asyncio.gather(*(future for future, _ in sent))):
            for index, tag in enumerate(tags):
                if tag is not None:
                    reached[tag] = max(reached.get(tag, 0), meta.offset + index + 1)
        return reached

    extra_producers: list = []  # beside Faust's own, made with its settings; see SEND_CONNECTIONS
    starting_producers = asyncio.Lock()

    async def send_producers() -> list:
        if not extra_producers:
            async with starting_producers:  # one set, however many checkpoints ask at once
                if not extra_producers:
                    more = [app.producer._new_producer() for _ in range(SEND_CONNECTIONS - 1)]
                    started = await asyncio.gather(*(p.start() for p in more), return_exceptions=True)
                    failure = next((r for r in started if isinstance(r, BaseException)), None)
                    if failure is not None:  # stop those that did start; the next checkpoint tries again
                        await asyncio.gather(*(p.stop() for p in more), return_exceptions=True)
                        raise failure
                    extra_producers.extend(more)
        return [app.producer._ensure_producer(), *extra_producers]

    @app.on_before_shutdown.connect
    async def stop_extra_producers(sender, **kwargs) -> None:
        producers = list(extra_producers)
        extra_producers.clear()
        await asyncio.gather(*(p.stop() for p in producers), return_exceptions=True)

    def output_of(partition: int) -> Output:
        """The batch's Output of ``partition``: processing adds to it until the next checkpoint."""
        out = batch["out"].get(partition)
        if out is None:
            out = batch["out"][partition] = Output()
        return out

    def drop_resent(out: Output, partition: int) -> None:
        """Leave out what a crashed worker already sent (see emitted.py)."""
        again = resent.get(partition)
        if again:
            out.events = again.drop(em.EVENTS, out.events, lambda item: item[1].event_id)
            out.sessions = again.drop(em.SESSIONS, out.sessions, lambda record: record.session_id)
            out.reactions = again.drop(em.REACTIONS, out.reactions, lambda reaction: reaction.reaction_id)
            stats["resent_dropped"] = sum(r.dropped for r in resent.values())

    background: dict[str, asyncio.Future | None] = {"checkpoint": None}

    def process_record(message) -> Awaitable[None] | None:
        """One record of the raw topic; an awaitable when the caller has to wait (state to load, or
        a checkpoint to finish before the batch grows further) before the next one."""
        proc = processors.get(message.partition)
        if proc is None:
            return process_after_load(message)
        try:
            value = Event.from_bytes(message.value)
        except ValidationError as exc:
            # Only the API writes this topic; a record it cannot have written stays in its log.
            stats["undecodable_raw"] += 1
            log.error("undecodable record on %s at %s: %s", message.topic, message.offset, exc)
        else:
            proc.process(value, message.topic, message.offset, now=now(), wall=time.time(),
                         out=output_of(message.partition))
        batch["messages"].append(message)
        pending = len(batch["messages"])
        if pending >= CHECKPOINT_EVENTS:
            saving = background["checkpoint"]
            if saving is None or saving.done():
                # In the background: records go on being processed while the broker acknowledges
                # the checkpoint's three rounds of sends, which would otherwise stall the consumer.
                background["checkpoint"] = asyncio.ensure_future(checkpoint())
            elif pending >= 2 * CHECKPOINT_EVENTS:
                # One checkpoint in flight at a time, so the batch stays bounded.
                return wait_for_checkpoint(saving)
        return None

    async def wait_for_checkpoint(saving: asyncio.Future) -> None:
        """Processing waits for the checkpoint in flight; /health counts how often and how long."""
        stats["checkpoint_waits"] += 1
        started = time.monotonic()
        try:
            # Shielded: a rebalance that cancels the delivery must not cancel a checkpoint halfway.
            await asyncio.shield(saving)
        finally:
            stats["checkpoint_wait_s"] += time.monotonic() - started

    async def process_after_load(message) -> None:
        await processor(message.partition)
        pending = process_record(message)
        if pending is not None:
            await pending

    # The raw topic's records go straight from the consumer to process_record (see drain.py): Faust's
    # per-record delivery through its conductor and stream cost more than processing them. The agent
    # keeps the topic subscribed and handles anything that still reaches it the same way.
    app.handle_records(raw_in.get_topic_name(), process_record)

    @app.agent(raw_in)
    async def process(stream):
        async for event in stream.noack().events():
            pending = process_record(event.message)
            if pending is not None:
                await pending

    @app.agent(partials)
    async def merge(stream):
        # In batches: the merger's state is saved once per batch, not once per partial.
        async for batch_events in stream.noack_take(1000, within=0.05):
            merger = merging.get("m")
            if merger is None:
                merger = WindowMerger(partitions, config.window_sizes, rules.current, grace_s=settings.idle_timeout_s)
                saved = (await read_partition(settings.bootstrap_servers, merger_state.get_topic_name(), 0)).get("state")
                state, offsets = em.split_checkpoint(saved)
                merger.restore(state)
                kinds = {em.METRICS: metrics_out, em.REACTIONS: reactions_out}
                to = await output_targets(0, kinds)
                found = await read_resent(kinds, to, {} if saved is None else offsets)
                merging.update(to=to, emitted=dict(offsets or {}), resent=found, m=merger)
                log.info("merger: state loaded; %d outputs sent before a restart will not be sent again",
                         sum(len(ids) for ids in found.ids.values()))
            to, again = merging["to"], merging["resent"]
            sends, changed, fired = [], False, []
            for event in batch_events:
                rows, reactions = merger.add(from_json(event.value), now(), time.time())
                changed = changed or merger.changed
                if again:
                    rows = again.drop(em.METRICS, rows, MetricRow.row_id)
                    reactions = again.drop(em.REACTIONS, reactions, lambda reaction: reaction.reaction_id)
                sends += [(metrics_out, row.metric.encode(), row.to_bytes(), to[em.METRICS], em.METRICS)
                          for row in rows]
                sends += [(reactions_out, r.subject.encode(), r.to_bytes(), to[em.REACTIONS], em.REACTIONS)
                          for r in reactions]
                fired += reactions
                stats["metric_rows"] += len(rows)
            sends += [(recommendations, key.encode(), encode(value), 0, None)
                      for key, value in merger.take_recommendation_updates().items()]
            async def save() -> None:
                reached = await send_all(sends)
                if any(tag == em.METRICS for tag in reached):
                    await fail("merger-outputs-sent")
                merging["emitted"].update(reached)
                if changed or reached:
                    state = em.wrap_checkpoint(encode(merger.to_dict()), encode(merging["emitted"]))
                    await send_all([(merger_state, b"state", state, 0, None)])

            try:
                await asyncio.wait_for(save(), settings.processor_checkpoint_timeout_s)
            except Exception as exc:
                give_up("saving the merger's outputs", exc)
            for event in batch_events:
                await stream.ack(event)
            stats["reactions_out"] += len(fired)
            for reaction in fired:
                log.info("reaction %s: %s", reaction.reaction_id, reaction.message)

    def behind(partition: int, proc: PartitionProcessor) -> bool:
        """True when the broker holds records of this partition the processor has not seen yet."""
        try:
            highwater = app.consumer.highwater(TP(topics.raw, partition))
        except Exception:  # no fetch answered yet for this partition
            return False
        done = proc.offsets.get(topics.raw)
        return highwater is not None and highwater > (done if done is not None else -1) + 1

    @app.timer(CHECKPOINT_INTERVAL_S)
    async def tick() -> None:
        if app.rebalancing:
            # The rebalance waits until every event read is acknowledged: take the checkpoint that does it.
            await checkpoint()
            return
        assigned = {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == topics.raw}
        await asyncio.gather(*(processor(p) for p in assigned))  # loads their state side by side
        for partition in sorted(assigned):
            proc, wall = await processor(partition), time.time()
            if behind(partition, proc):
                # Not quiet, only busy (or catching up): records wait to be read.
                proc.last_event_wall = wall
                continue
            idle = proc.idle(now=now(), wall=wall)
            if idle:
                output_of(partition).extend(idle)
        if time.monotonic() - batch["since"] >= CHECKPOINT_INTERVAL_S:
            await checkpoint()

    @app.timer(2.0)
    async def reload_rules() -> None:
        rules.reload_if_changed()

    @app.task
    async def follow_recommendations() -> None:
        # Every worker keeps the whole (small) table, so any of them answers /v1/recommendations.
        consumer = AIOKafkaConsumer(recommendations.get_topic_name(), bootstrap_servers=settings.bootstrap_servers,
                                    group_id=None, auto_offset_reset="earliest", enable_auto_commit=False)
        await consumer.start()
        try:
            while True:
                for records in (await consumer.getmany(timeout_ms=1000)).values():
                    for record in records:
                        next_pages[record.key.decode()] = from_json(record.value)
        finally:
            await consumer.stop()

    @app.page("/v1/recommendations")
    async def recommendations_view(web, request):
        """``GET /v1/recommendations?path=/x&limit=5[&source=web]``: the likeliest next pages of a page."""
        path = request.query.get("path")
        try:
            limit = int(request.query.get("limit", "5"))
        except ValueError:
            limit = 0
        if not path or not 1 <= limit <= 100:
            return web.json({"code": "bad_request", "message": "give ?path=/page and a limit from 1 to 100"},
                            status=400)
        source = request.query.get("source")
        merged: Counter[str] = Counter()
        for key, counts in list(next_pages.items()):
            key_source, page = key.split("|", 1)
            if page == path and (source is None or key_source == source):
                merged.update(counts)
        return web.json({"path": path, "source": source, "recommendations": recommend(merged, limit)})

    @app.page("/health")
    async def health(web, request):
        # Ready once the worker holds its partitions and has loaded their state.
        assigned = sorted(tp.partition for tp in app.assignor.assigned_actives() if tp.topic == topics.raw)
        ready = not app.rebalancing and bool(assigned) and all(p in processors for p in assigned)
        late = sum(v for p in processors.values() for k, v in p.stats.items() if k.startswith("late_events"))
        merger = merging.get("m")
        body = {"status": "ok" if ready else "starting", **stats, "late_events": late,
                "visitors_in_state": sum(len(p.visitors) for p in processors.values()),
                "assigned": assigned, "partitions": sorted(processors),
                "partition_stats": {p: dict(x.stats) for p, x in sorted(processors.items())},
                "merger": dict(merger.stats) if merger else None, "rules": rules.describe()}
        return web.json(body, status=200 if ready else 503)

    return app


def run(settings: Settings) -> None:
    (settings.data_dir / "processor").mkdir(parents=True, exist_ok=True)
    # Processing allocates a few dozen objects per event, most of them short-lived, while the
    # visitors' states are many and long-lived: with Python's default threshold (700) the young
    # generation is collected every few events, and each collection also walks survivors.
    collect_less(freeze=False)
    app = create_app(settings)
    worker = faust.Worker(app, loglevel=settings.log_level, quiet=True)
    worker.execute_from_commandline()

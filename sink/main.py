"""Entry point of ``clickstream sink``: the events, invalid, sessions, metrics and reactions topics ->
Parquet objects in their lake tables.

Exactly once: offsets are committed only after every object of a flush was
uploaded, object keys follow from offsets, and records that an earlier run
uploaded without committing are recognised (``StoredOffsets``) and skipped.
The copies of a record that a retried produce left in a topic are recognised by the
record's id and stored once (``repeats.py``).
While the lake's storage is failing, the sink keeps retrying with backoff and
commits nothing, so it resumes without loss.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections import Counter

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from clickstream.garbage import collect_less
from clickstream.health import start_health_server
from clickstream.lake import hour_prefix
from clickstream.settings import Settings
from clickstream.topics import Topics
from sink.buffer import PartitionBuffer
from sink.destination import DestinationUnavailable, LakeDestination
from sink.maintenance import PassInProgress, compact_periodically, compaction_leader
from sink.parquet import Decoded, decode_records, encode, plan
from sink.repeats import RecentIds, window_start
from sink.stored import StoredOffsets
from sink.tables import TableSpec, by_topic

log = logging.getLogger("clickstream.sink")

# Larger fetches than aiokafka's 1 MB: each fetch also asks for the partitions of the quiet topics
# (sessions, metrics, ...), which costs a broker that keeps its log on S3 a lookup each.
FETCH_BYTES_PER_PARTITION = 4 * 2**20


class LakeSink:
    """Buffers records per topic-partition and writes them when due; the consumer and destination are passed in."""

    def __init__(self, settings: Settings, consumer: AIOKafkaConsumer, destination: LakeDestination):
        self.settings = settings
        self.consumer = consumer
        self.destination = destination
        self.tables = by_topic(Topics.from_settings(settings))
        self.buffers: dict[TopicPartition, PartitionBuffer] = {}
        # Flushes run in the background while the consumer reads on, one at a time per partition,
        # so that a partition's objects and commits keep their offset order.
        self._flushing: dict[TopicPartition, asyncio.Task] = {}
        self._scheduling = asyncio.Lock()  # one flush_due pass at a time (the sink's consumers each call it)
        self._listing = asyncio.Lock()  # one listing of the lake at a time (stored.py is not thread-safe)
        self._owned_since: dict[TopicPartition, int] = {}  # bumped when a partition is revoked
        self.stored = {spec.table: StoredOffsets(spec.table, self._list_keys) for spec in self.tables.values()}
        self.recent: dict[TopicPartition, RecentIds] = {}  # ids of each partition's last records (repeats.py)
        self.stats: Counter[str] = Counter()
        self.last_flush_at: float | None = None

    def _list_keys(self, prefix: str) -> list[str]:
        return self._retrying("list", lambda: self.destination.list_keys(prefix))

    def _retrying(self, what: str, action):
        delay = 0.5
        while True:
            try:
                return action()
            except DestinationUnavailable as exc:
                self.stats["storage_errors"] += 1
                log.warning("lake %s failed (%s); retrying in %.1fs", what, exc, delay)
                time.sleep(delay)
                delay = min(30.0, delay * 2)

    async def _load_stored(self, stored: StoredOffsets, hour_prefix: str) -> None:
        if not stored.is_loaded(hour_prefix):
            async with self._listing:
                if not stored.is_loaded(hour_prefix):
                    # Listing the lake blocks (and retries while storage is down): keep it off the event loop.
                    await asyncio.to_thread(stored.load, hour_prefix)

    async def hand_over(self, partitions) -> None:
        """Give up partitions that a rebalance takes: first finish their flushes in progress, so that
        every object of theirs is in the lake (and committed) before the group hands them to their
        next owner, then forget what is buffered.

        The next owner lists the lake once when it gets a partition and skips the records it finds
        stored. An upload that landed after that listing would be written a second time by the next
        owner, under other cuts. So the rebalance waits for uploads in progress (also while the lake
        is down: the next owner could not write either); only the buffered records, which are in no
        object and not committed, are left for the next owner to read again."""
        started = time.monotonic()
        async with self._scheduling:  # no flush_due pass may start a flush of these meanwhile
            self.stats["flushes_finished_before_rebalance"] += await self.finish_flushes(
                partitions, why="before the rebalance")
            self.drop(partitions)
        # On /health: a rebalance held up by a slow or failing lake shows here.
        self.stats["rebalance_wait_s"] = round(self.stats["rebalance_wait_s"] + time.monotonic() - started, 3)

    async def finish_flushes(self, partitions=None, *, why: str) -> int:
        """Wait for the flushes in progress (of ``partitions``, or all) and say how many there were;
        a failed one is left for flush_due to raise."""
        partitions = None if partitions is None else set(partitions)
        running = [task for tp, task in self._flushing.items()
                   if not task.done() and (partitions is None or tp in partitions)]
        if running:
            log.info("finishing %d flushes %s", len(running), why)
            # wait, not gather: if this wait is cancelled (the sink stopping mid-rebalance), the
            # flushes go on, and the wait before leaving the group still finds them running.
            await asyncio.wait(running)
        return len(running)

    def drop(self, partitions) -> None:
        """Forget buffers of partitions this sink no longer owns: they were not committed, the next owner re-reads."""
        for tp in partitions:
            self.buffers.pop(tp, None)
            self.recent.pop(tp, None)
            self._owned_since[tp] = self._owned_since.get(tp, 0) + 1

    def forget_stored(self) -> None:
        """Forget what the lake was listed to hold: partitions just assigned may have objects that their
        previous owner uploaded after this sink listed an hour (and never committed, if it crashed
        after the upload). Each hour is listed again when next needed."""
        for stored in self.stored.values():
            stored.forget()

    def add_all(self, tp: TopicPartition, records) -> None:
        """Buffer one partition's records, in offset order, as a fetch returned them; they are
        decoded with the rest of their flush (parquet.decode_records)."""
        buffer = self.buffers.get(tp)
        if buffer is None:
            buffer = self.buffers[tp] = PartitionBuffer(opened_at=time.monotonic())
        buffer.extend([(r.offset, r.value) for r in records], sum(len(r.value) for r in records))

    async def _rows_to_store(self, tp: TopicPartition, spec: TableSpec, decoded: Decoded) -> list[int] | None:
        """The rows of a flush that go to the lake, in offset order (None: all of them): not a repeat
        of a record among the partition's previous ones (repeats.py) and not already in the lake
        (stored.py)."""
        repeated: set[int] = set()
        if decoded.ids is not None:
            recent = self.recent.get(tp)
            if recent is None:
                recent = self.recent[tp] = await self._recent_before(tp, decoded.offsets[0], spec)
            repeated = set(recent.repeats(decoded.ids, decoded.offsets))
            self.stats["repeats_dropped"] += len(repeated)
        stored = self.stored[spec.table]
        prefixes = {hour: hour_prefix(spec.table, hour) for hour in set(decoded.hours)}
        for prefix in prefixes.values():
            await self._load_stored(stored, prefix)
        if not repeated and all(stored.last_offset(p, tp.partition) < decoded.offsets[0] for p in prefixes.values()):
            return None  # the usual flush: every row is new, no need to look at each
        keep: list[int] = []
        for i, offset in enumerate(decoded.offsets):
            if i in repeated:
                continue
            if stored.contains(prefixes[decoded.hours[i]], tp.partition, offset):
                self.stats["skipped_already_stored"] += 1
                continue
            keep.append(i)
        return keep

    async def _recent_before(self, tp: TopicPartition, offset: int, spec: TableSpec) -> RecentIds:
        """The ids of the records before ``offset`` that decide whether the next ones are repeats."""
        recent, start = RecentIds(), window_start(offset)
        if start == offset:
            return recent
        reader = AIOKafkaConsumer(bootstrap_servers=self.settings.bootstrap_servers, group_id=None,
                                  enable_auto_commit=False)
        await reader.start()
        try:
            reader.assign([tp])
            reader.seek(tp, start)
            records = []
            while await reader.position(tp) < offset:
                records += [(r.offset, r.value) for r in (await reader.getmany(tp, timeout_ms=1000)).get(tp, [])
                            if r.offset < offset]
        finally:
            await reader.stop()
        # Decoded as a flush is (undecodable records are skipped there too).
        decoded = await asyncio.to_thread(decode_records, spec, records)
        if decoded.offsets:
            recent.repeats(decoded.ids, decoded.offsets)
        return recent

    async def flush_due(self, *, force: bool = False) -> None:
        """Start the flush of each buffer that is due (all, with ``force``, and wait for them all).

        A buffer due by age whose partition is still flushing keeps filling until that flush is
        done; one due by size waits for it, so a partition holds at most two buffers' worth of
        records (one uploading, one filling) and a slow or failing lake pauses consumption."""
        async with self._scheduling:
            await self._flush_due(force)

    async def _flush_due(self, force: bool) -> None:
        for task in [t for t in self._flushing.values() if t.done()]:
            task.result()  # a flush that failed stops the sink here
        now = time.monotonic()
        for tp, buffer in list(self.buffers.items()):
            if not buffer.records:
                continue
            if not (force or buffer.is_due(now, max_age_s=self.settings.flush_interval_s,
                                           max_bytes=self.settings.flush_max_bytes)):
                continue
            full = buffer.size_bytes >= self.settings.flush_max_bytes
            running = self._flushing.get(tp)
            if running is not None and not running.done():
                if not (force or full):
                    continue
                await running
            del self.buffers[tp]  # records that arrive from now on start a new buffer
            self._flushing[tp] = asyncio.ensure_future(self._flush(tp, buffer, self._owned_since.get(tp, 0)))
        if force:
            await asyncio.gather(*self._flushing.values())
        for tp in [tp for tp, t in self._flushing.items() if t.done()]:
            self._flushing.pop(tp).result()

    async def _flush(self, tp: TopicPartition, buffer: PartitionBuffer, owned_since: int) -> None:
        spec: TableSpec = self.tables[tp.topic]
        stored = self.stored[spec.table]
        # Decoding and encoding run off the event loop, so the consumer keeps fetching meanwhile.
        decoded = await asyncio.to_thread(decode_records, spec, buffer.records)
        for offset, why in decoded.undecodable:
            # Only our own services write these topics; keep the record in Kafka and say so.
            self.stats["undecodable"] += 1
            log.error("undecodable record %s %s@%s: %s", tp.topic, tp.partition, offset, why)
        keep = await self._rows_to_store(tp, spec, decoded) if decoded.offsets else []
        for obj in plan(spec, tp.partition, decoded, keep):
            data = await asyncio.to_thread(encode, obj)
            await asyncio.to_thread(self._retrying, "upload", lambda: self.destination.put(obj.key, data))
            await self._load_stored(stored, obj.hour_prefix)
            stored.add(obj.hour_prefix, tp.partition, obj.first_offset, obj.last_offset)
            self.stats["objects"] += 1
            self.stats[f"rows.{spec.table}"] += obj.num_rows
            log.info("wrote %s (%d rows)", obj.key, obj.num_rows)
        self.last_flush_at = time.time()
        if self._owned_since.get(tp, 0) != owned_since:
            # Dropped while uploading (a rebalance hands partitions over only after their flushes,
            # so only a direct drop() gets here): not this sink's to commit. The repeats window this
            # flush filled is not this sink's to keep.
            self.recent.pop(tp, None)
            return
        await self._commit(tp, buffer.last_offset + 1)

    async def _commit(self, tp: TopicPartition, offset: int) -> None:
        try:
            await self.consumer.commit({tp: offset})
        except (CommitFailedError, IllegalStateError) as exc:
            # A rebalance took the partition meanwhile; whoever reads it next skips what is stored.
            log.warning("commit of %s at %d not accepted (%s)", tp, offset, exc)
            return

    def status(self) -> dict:
        return {
            "status": "ok",
            "buffered_rows": sum(len(b.records) for b in self.buffers.values()),
            "flushing": sum(not t.done() for t in self._flushing.values()),
            "last_flush_at": self.last_flush_at,
            **self.stats,
        }


class SplitReading(ConsumerRebalanceListener):
    """Shares the partitions the sink's group consumer is assigned among it and its helpers.

    aiokafka keeps one fetch in flight per consumer and broker, and a broker that keeps its log on
    S3 answers a fetch only after reading it back, so one consumer spends much of its time waiting.
    Helpers (consumers outside the group) fetch meanwhile. The group has one member per sink
    process whatever the number of helpers, so rebalances stay as simple as with one consumer: the
    group consumer pauses the partitions a helper fetches, keeps them assigned, and commits for them.
    A helper starts each partition at the group's committed offset, as the group consumer would."""

    def __init__(self, sink: LakeSink, group: AIOKafkaConsumer, helpers: list[AIOKafkaConsumer],
                 compaction: PassInProgress | None = None):
        self.sink, self.group, self.helpers = sink, group, helpers
        self.compaction = compaction or PassInProgress()

    async def on_partitions_revoked(self, revoked):
        for helper in self.helpers:
            helper.assign([])
        # Still a member of the generation that owned them: the flushes' commits are accepted.
        await self.sink.hand_over(revoked)
        if compaction_leader(self.sink.settings) in revoked:
            # The next holder of the leader partition compacts next: not while this pass runs.
            await self.compaction.finish()

    async def on_partitions_assigned(self, assigned):
        # The previous owners finished their uploads before they rejoined (hand_over), so a listing
        # made from now on sees all of them.
        self.sink.forget_stored()
        if not self.helpers:
            return
        ordered = sorted(assigned)
        shares = [ordered[i::len(self.helpers) + 1] for i in range(1, len(self.helpers) + 1)]
        handed = [tp for share in shares for tp in share]
        self.group.pause(*handed)  # before anything awaits, so the group consumer never fetches them
        try:
            offsets = await asyncio.gather(*(self.group.committed(tp) for tp in handed))
            committed = dict(zip(handed, offsets))
        except KafkaError as exc:
            log.warning("reading all partitions with one consumer: committed offsets unknown (%s)", exc)
            self.group.resume(*handed)
            return
        for helper, share in zip(self.helpers, shares):
            helper.assign(share)
            for tp in share:
                if committed[tp] is not None:
                    helper.seek(tp, committed[tp])
        log.info("fetching %d partitions with %d consumers", len(ordered), len(self.helpers) + 1)


def new_consumer(settings: Settings, topics: Topics, *, group: bool = True) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        group_id=topics.group("sink") if group else None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
        # A long storage outage must not cost the sink its partitions.
        max_poll_interval_ms=3_600_000,
        max_partition_fetch_bytes=FETCH_BYTES_PER_PARTITION,
    )


async def consume(settings: Settings, stop: asyncio.Event, destination: LakeDestination | None = None) -> None:
    topics = Topics.from_settings(settings)
    destination = destination or LakeDestination.from_settings(settings)
    group = new_consumer(settings, topics)
    helpers = [new_consumer(settings, topics, group=False) for _ in range(settings.sink_consumers - 1)]
    sink = LakeSink(settings, group, destination)
    await asyncio.to_thread(sink._retrying, "setup", destination.ensure_ready)
    health = await start_health_server(settings.host, settings.sink_port, sink.status)

    async def read(consumer: AIOKafkaConsumer) -> None:
        while not stop.is_set():
            if not consumer.assignment():
                await asyncio.sleep(0.1)  # a helper between rebalances
                continue
            batch = await consumer.getmany(timeout_ms=500)
            owned = consumer.assignment()  # without a helper's partitions that a rebalance took meanwhile
            for tp, records in batch.items():
                if tp in owned:
                    sink.add_all(tp, records)
            await sink.flush_due()

    consumers = [group, *helpers]
    compactor = None
    try:
        await asyncio.gather(*(helper.start() for helper in helpers))
        compaction = PassInProgress()
        group.subscribe(list(sink.tables), listener=SplitReading(sink, group, helpers, compaction))
        await group.start()
        readers = [asyncio.ensure_future(read(consumer)) for consumer in consumers]
        compactor = asyncio.ensure_future(compact_periodically(settings, group, stop, sink.stats, compaction))
        await asyncio.wait(readers, return_when=asyncio.FIRST_EXCEPTION)
        # A reader that failed (a failed flush, say) stops the others, which finish their pass
        # (never cancelled mid-flush), and then ends the sink; the supervisor restarts it.
        stop.set()
        for result in await asyncio.gather(*readers, return_exceptions=True):
            if isinstance(result, BaseException):
                raise result
        # Shutting down: write what is buffered so nothing waits for the next start. A compaction
        # pass in progress finishes first (its thread cannot be stopped halfway anyway).
        await sink.flush_due(force=True)
        await compactor
    finally:
        if compactor is not None:
            compactor.cancel()  # after a failure: a pass in its thread still runs to its end
        # After a failure, the other partitions' uploads still land: before leaving the group, so
        # that the next owner's listing sees them (as at a rebalance).
        await sink.finish_flushes(why="before leaving the group")
        await asyncio.gather(*(consumer.stop() for consumer in consumers), return_exceptions=True)
        await health.cleanup()


def run(settings: Settings) -> None:
    # Buffered records are long-lived containers: with Python's default threshold every full
    # collection walked all of them, 13% of the sink's CPU.
    collect_less()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await consume(settings, stop)

    asyncio.run(main())

"""Runs of compaction and retention against the lake: one at a time, and the sink's own.

Two compactions planning from listings taken at different moments can merge overlapping sets of
objects (a merged object spans the partitions of an hour, and files that arrive in between shift
where runs are cut); readers would then read the shared rows twice. So every run holds a lock
per lake on this machine, and of the sinks of one consumer group only the one assigned
partition 0 of the events topic compacts, and only once it has held it for a whole interval. A
rebalance that takes that partition from a sink waits for the sink's pass in progress
(:class:`PassInProgress`), so the next holder's passes never overlap it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import logging
import tempfile
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition

from clickstream.kafka import committed_offsets
from clickstream.settings import Settings
from clickstream.topics import Topics
from sink.compaction import CompactionReport, compact
from sink.destination import LakeDestination
from sink.tables import by_topic

log = logging.getLogger("clickstream.sink.maintenance")


class LakeBusy(Exception):
    """Another compaction or retention run of the same lake holds the lock."""


def lake_name(settings: Settings) -> str:
    if settings.lake_dir is not None:
        return settings.lake_root
    return f"{settings.s3_endpoint_url}/{settings.s3_bucket}"


@contextlib.contextmanager
def maintenance_lock(settings: Settings) -> Iterator[None]:
    """Held for a run of compaction or retention; raises :class:`LakeBusy` if another run holds it."""
    lake = lake_name(settings)
    path = Path(tempfile.gettempdir()) / f"clickstream-lake-{hashlib.sha256(lake.encode()).hexdigest()[:16]}.lock"
    with open(path, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LakeBusy(f"another compaction or retention run of {lake} is in progress on this machine "
                           f"(it holds {path})") from None
        yield


async def sink_committed(settings: Settings) -> dict[tuple[str, int], int]:
    """The sink group's committed offsets, by (table, partition): compaction merges only below them."""
    topics = Topics.from_settings(settings)
    tables_by_topic = by_topic(topics)
    raw = await committed_offsets(settings, topics.group("sink"), list(tables_by_topic))
    return {(tables_by_topic[t].table, p): o for (t, p), o in raw.items() if t in tables_by_topic}


def compaction_leader(settings: Settings) -> TopicPartition:
    """The partition whose holder in the sink group compacts the lake."""
    return TopicPartition(Topics.from_settings(settings).events, 0)


class PassInProgress:
    """The sink's compaction pass now running, if any: a rebalance that takes the leader partition
    waits for it (the pass runs in a thread, which cannot be stopped halfway)."""

    def __init__(self) -> None:
        self.task: asyncio.Future | None = None

    async def finish(self) -> None:
        if self.task is not None and not self.task.done():
            log.info("finishing the compaction pass in progress before the rebalance")
            await asyncio.wait([self.task])  # its outcome is for compact_periodically to report


def compact_lake(settings: Settings, committed: dict[tuple[str, int], int] | None, **options) -> CompactionReport:
    """One compaction pass over the lake under the lock (``options``: those of :func:`compact`)."""
    with maintenance_lock(settings):
        return compact(LakeDestination.from_settings(settings), now=datetime.now(timezone.utc),
                       committed=committed, **options)


async def compact_periodically(settings: Settings, group: AIOKafkaConsumer, stop: asyncio.Event,
                               stats: Counter, in_progress: PassInProgress | None = None) -> None:
    """The sink's compaction: every ``compact_interval_s``, a pass over the lake's closed hours, by the
    group member that has held partition 0 of the events topic since the previous tick.

    A failed pass (the lake or Kafka unreachable, another run holding the lock) is logged and
    counted; the sink goes on writing, and the next tick tries again.
    """
    interval = settings.compact_interval_s
    if not interval:
        return
    leader = compaction_leader(settings)
    in_progress = in_progress or PassInProgress()
    held_before = False
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
            return
        held = leader in group.assignment()
        # A member that has just been given the partition waits a tick: the one that had it waited
        # for its pass before letting go, but one that left the group without a rebalance (cut
        # off from the broker, say) may still be in the middle of one.
        due, held_before = held and held_before, held
        if not due:
            continue
        try:
            committed = await sink_committed(settings)
            in_progress.task = asyncio.ensure_future(asyncio.to_thread(
                compact_lake, settings, committed, grace=timedelta(seconds=settings.compact_grace_s)))
            report = await in_progress.task
        except LakeBusy as exc:
            stats["compactions_skipped"] += 1
            log.warning("compaction skipped: %s", exc)
            continue
        except Exception:
            stats["compaction_errors"] += 1
            log.exception("compaction failed; the next one is due in %.0f s", interval)
            continue
        stats["compactions"] += 1
        stats["objects_merged"] += report.merged_from
        stats["objects_merged_into"] += report.merged_objects
        stats["merged_objects_deleted"] += report.deleted
        log.info("compacted the lake: merged %d objects into %d (%d rows); deleted %d merged-away objects",
                 report.merged_from, report.merged_objects, report.rows, report.deleted)

"""Which offsets are already in the lake, so that a restarted sink writes no row twice.

A flush covers a contiguous run of one partition's offsets and writes one object per
event-time hour, named by the first and last offset of the records it holds. So a
record at offset ``o`` whose event falls in hour ``h`` is already stored exactly when
some object of hour ``h`` spans ``first <= o <= last`` for that partition (a compacted
object names a range for each partition it holds). After a
restart the sink re-reads everything past its last committed offset; this index
lets it skip what an earlier run uploaded but did not get to commit, however the
new run's flushes are cut.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from collections.abc import Callable

from clickstream.lake import parse_object_key


class StoredOffsets:
    def __init__(self, table: str, list_keys: Callable[[str], list[str]], max_hours: int = 256):
        self._table = table
        self._list_keys = list_keys
        self._max_hours = max_hours
        # hour prefix -> partition -> sorted [(first, last)]
        self._hours: OrderedDict[str, dict[int, list[tuple[int, int]]]] = OrderedDict()

    def is_loaded(self, hour_prefix: str) -> bool:
        return hour_prefix in self._hours

    def forget(self) -> None:
        """Drop every listing: the next look at an hour lists it again (after a rebalance, when other
        sinks may have written objects of the partitions this one now owns)."""
        self._hours = OrderedDict()

    def load(self, hour_prefix: str) -> None:
        self._hour(hour_prefix)

    def _hour(self, hour_prefix: str) -> dict[int, list[tuple[int, int]]]:
        """The hour's ranges, listed from the lake the first time the hour is seen (blocking I/O)."""
        hour = self._hours.get(hour_prefix)
        if hour is None:
            hour = {}
            for key in self._list_keys(hour_prefix + "/"):
                parsed = parse_object_key(key)
                if parsed and parsed[0] == self._table:
                    for partition, first, last in parsed[1]:
                        hour.setdefault(partition, []).append((first, last))
            for ranges in hour.values():
                ranges.sort()
            self._hours[hour_prefix] = hour
            while len(self._hours) > self._max_hours:
                self._hours.popitem(last=False)
        else:
            self._hours.move_to_end(hour_prefix)
        return hour

    def contains(self, hour_prefix: str, partition: int, offset: int) -> bool:
        ranges = self._hour(hour_prefix).get(partition, [])
        i = bisect.bisect_right(ranges, (offset, float("inf"))) - 1
        return i >= 0 and ranges[i][0] <= offset <= ranges[i][1]

    def last_offset(self, hour_prefix: str, partition: int) -> int:
        """The highest offset of the partition stored in the hour; -1 if none."""
        return max((last for _, last in self._hour(hour_prefix).get(partition, ())), default=-1)

    def add(self, hour_prefix: str, partition: int, first: int, last: int) -> None:
        """Record an object this sink has just written."""
        bisect.insort(self._hour(hour_prefix).setdefault(partition, []), (first, last))

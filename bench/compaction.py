"""Benchmark: one compaction pass over a month of the events table, on S3 and on local disk.

What the sink now runs every ``CLICKSTREAM_COMPACT_INTERVAL_S``, and ``clickstream compact`` by hand:
``sink.compaction.compact`` (list the table, plan, read each run's objects, conform them to the
schema, write the merged object). Its input is a lake as compaction left it before it merged
across Kafka partitions: one object per day, hour and partition, written by

    .venv/bin/python bench/query.py --data-dir /tmp/lake --layout partition

(10 million events, 2,872 objects; the pass merges them into 718, one per hour). Each repetition
copies that lake to a fresh local directory and to a fresh bucket of a SeaweedFS server started
here on free loopback ports, then times, on each:

* ``compact``: one pass, ``committed=None`` (the sink stopped) and no grace, so the next pass would
  delete the merged-away objects; the deletions are not part of the timing;
* ``pyarrow`` (the baseline): the same merges by hand, with the same storage client
  (``LakeDestination.get``/``put``): for each hour, read its objects (``pq.read_table``),
  ``pa.concat_tables``, ``pq.write_table`` (zstd) and upload, under a key of its own.

It prints rows per second of each and the ratio, medians over the repetitions. Run it by hand
from the project root; it is not part of the test suite:

    PYTHONPATH=$PWD .venv/bin/python bench/compaction.py --source /tmp/lake --repeat 3
"""

from __future__ import annotations

import argparse
import io
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

# This file is in bench/, which as a script's folder comes first on sys.path, and bench/sink.py
# would shadow the ``sink`` package measured here.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from clickstream.lake import EVENTS  # noqa: E402
from clickstream.settings import Settings  # noqa: E402
from clickstream.stack.components import stack_components  # noqa: E402
from clickstream.stack.probes import free_port_pair  # noqa: E402
from clickstream.stack.servers import GRPC_OFFSET  # noqa: E402
from clickstream.stack.supervisor import Supervisor  # noqa: E402
from sink.compaction import compact  # noqa: E402
from sink.destination import LakeDestination  # noqa: E402


def copy_lake(source: Path, keys: list[str], destination: LakeDestination) -> None:
    destination.ensure_ready()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda k: destination.put(k, (source / k).read_bytes()), keys))


def by_hand(destination: LakeDestination, keys: list[str]) -> int:
    """The baseline: each hour's objects read, concatenated and written as one, with plain pyarrow."""
    hours = defaultdict(list)
    for key in keys:
        hours[key.rsplit("/", 1)[0]].append(key)
    rows = 0
    for hour, members in sorted(hours.items()):
        table = pa.concat_tables([pq.read_table(io.BytesIO(destination.get(k))) for k in sorted(members)])
        out = io.BytesIO()
        pq.write_table(table, out, compression="zstd")
        destination.put(f"{hour}/by-hand.parquet", out.getvalue())
        rows += table.num_rows
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, required=True,
                        help="a lake written by `bench/query.py --data-dir DIR --layout partition`")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    keys = sorted(str(p.relative_to(args.source)) for p in (args.source / EVENTS).glob("*/*/*.parquet"))
    if not keys:
        sys.exit(f"no objects of the events table under {args.source}")
    rows_total = sum(pq.ParquetFile(args.source / k).metadata.num_rows for k in keys)
    print(f"source: {len(keys):,} objects, {rows_total:,} rows, "
          f"{sum((args.source / k).stat().st_size for k in keys) / 1e6:,.0f} MB in {args.source}", flush=True)

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    results: dict[tuple[str, str], list[float]] = defaultdict(list)
    with tempfile.TemporaryDirectory(prefix="bench-compaction-") as tmp:
        settings = Settings(_env_file=None, s3_port=free_port_pair(GRPC_OFFSET), state_dir=Path(tmp) / "state")
        supervisor = Supervisor(settings, [c for c in stack_components(settings) if c.name == "s3"])
        supervisor.start()
        try:
            for rep in range(args.repeat):
                for store in ("s3", "local"):
                    for what in ("compact", "pyarrow"):
                        if store == "s3":
                            lake = settings.model_copy(update={"s3_bucket": f"bench-{rep}-{what}"})
                        else:
                            lake = settings.model_copy(update={"lake_dir": Path(tmp) / f"lake-{rep}-{what}"})
                        destination = LakeDestination.from_settings(lake)
                        copy_lake(args.source, keys, destination)
                        start = time.perf_counter()
                        if what == "compact":
                            report = compact(destination, now=datetime.now(timezone.utc), committed=None,
                                             grace=timedelta(0))
                            rows = report.rows
                            detail = f"{report.merged_from} objects into {report.merged_objects}"
                        else:
                            rows = by_hand(destination, keys)
                            detail = ""
                        seconds = time.perf_counter() - start
                        assert rows == rows_total, (what, rows, rows_total)
                        results[(store, what)].append(rows / seconds)
                        print(f"run {rep + 1} {store:5} {what:8} {seconds:6.1f} s  {rows / seconds:>10,.0f} rows/s"
                              f"  {detail}", flush=True)
                        if store == "local":
                            shutil.rmtree(lake.lake_dir)
        finally:
            supervisor.stop()
    print("\n| store | compact rows/s | pyarrow rows/s | compact / pyarrow |\n|---|---:|---:|---:|")
    for store in ("s3", "local"):
        ours, base = results[(store, "compact")], results[(store, "pyarrow")]
        ratio = statistics.median(o / b for o, b in zip(ours, base))
        print(f"| {store} | {statistics.median(ours):,.0f} | {statistics.median(base):,.0f} | {ratio:.2f} |")


if __name__ == "__main__":
    main()

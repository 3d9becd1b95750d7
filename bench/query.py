"""Benchmark: each ready-made analysis on 10 million events in the lake, on S3 and on local disk.

One lake of ``--events`` generated events (default 10 million, about 200,000 active visitors
over 30 days) is written twice: to a bucket of a SeaweedFS server started here on free loopback ports
(the local stack's S3 server), and to a local directory. Both hold the same Parquet objects,
laid out as ``clickstream compact`` leaves closed hours: one object per day and hour holding the
rows of every Kafka partition, offsets counted per partition and named by
``clickstream.lake.ranges_object_key``, written with the sink's schema
(``clickstream.lake.EVENTS_SCHEMA``) and compaction's options (``sink.compaction.to_parquet_table``:
zstd, one row group per object). ``--layout partition`` writes one object per hour and partition
instead, as compaction left them before it merged across partitions.

Every analysis of ``query/analyses.py`` then runs through ``query.engine.connect`` over the full 30
days, once with S3 settings (``s3_endpoint``, bucket) and once with ``lake_dir``:

* ``warm``: one connection per lake for all analyses; after one unmeasured run of an analysis,
  the median of ``--runs`` runs. This is a long-lived connection (the dashboard's). DuckDB's
  external file cache (on by default) keeps the bytes it has read in memory, so on S3 these
  runs read mostly from that cache.
* ``cold``: a new connection for each of ``--cold-runs`` runs (default 1; the connection's own
  set-up, listing the lake and defining the views, is timed apart): what ``clickstream analyze``
  does at every call.

The goals: each analysis under 2 s on S3 (warm), and S3 within 2x of local. ``--explain``
writes ``EXPLAIN ANALYZE`` of every analysis on both lakes to a folder, for those that miss.
``--what-if`` (or ``--what-if-only``) times the analyses again on connections built like
``connect``'s but with other DuckDB settings (Parquet and HTTP metadata caches; 8 threads), to
show what they would change; the package's own connection is not touched.

The events are generated with numpy and pyarrow (not through the event model): sessions of a
geometric number of events (mean 8) about 45 s apart, started at diurnal hours by visitors of a
growing site (each active from a first day for an exponential lifetime, mean 30 days, with a
log-normal activity), so that traffic grows over the month and weekly retention decays; 30 page
paths with Zipf-like popularity; referrers and UTM campaigns on landing pages; 15% logged-in
visitors (``user_id``); 3% bot traffic; an A/B test (``Experiment Viewed``, experiment
``checkout-test``, variants ``control`` and ``one-page``) as the second event of a quarter of the
sessions, and ``Order Completed`` ending 5% (control) or 6% (one-page) of sessions with 3 or more
events; JSON ``properties``, ``traits`` and ``context`` like analytics.js sends.

The machine is shared: the CPU used by other processes during each measurement is reported.
The generated data lives in a temporary directory that is removed at the end, unless
``--data-dir`` names a folder to keep it in (and reuse it from, when it holds the same events).
Run it by hand from the project root; it is not part of the test suite:

    .venv/bin/python bench/query.py
    .venv/bin/python bench/query.py --events 1000000 --runs 3 --cold-runs 1 --explain /tmp/plans
    .venv/bin/python bench/query.py --data-dir /tmp/lake --what-if-only --only traffic funnel
    git worktree add /tmp/base d70d6ed && .venv/bin/python bench/query.py --baseline /tmp/base

``--baseline`` times another checkout's ``query/engine.py`` and ``query/analyses.py`` (warm, on
their own connections) right after each of this checkout's warm measurements, so that a change
is compared with what it replaces under the same load.

The default run took about 3 minutes on the 2-core machine of BENCHMARKS.md (generating the lake
about 40 s of it; 5 minutes with ``--layout partition``).
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import os
import platform
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlsplit

# This file is bench/query.py: as a script its folder comes first on sys.path and would shadow
# the ``query`` package it measures.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import duckdb  # noqa: E402
import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from clickstream.lake import EVENTS, EVENTS_SCHEMA, partition_prefix, ranges_object_key  # noqa: E402
from clickstream.settings import Settings  # noqa: E402
from clickstream.stack.components import stack_components  # noqa: E402
from clickstream.stack.probes import free_port_pair  # noqa: E402
from clickstream.stack.servers import GRPC_OFFSET  # noqa: E402
from clickstream.stack.supervisor import StackError, Supervisor, tail  # noqa: E402
from query import analyses  # noqa: E402
from query.analyses import Range, Step  # noqa: E402
from query.engine import _quote, connect, httpfs_extension_path, refresh_views  # noqa: E402
from sink.compaction import to_parquet_table  # noqa: E402
from sink.destination import LakeDestination  # noqa: E402

T0 = datetime(2026, 10, 28, tzinfo=timezone.utc)
DAYS = 30
PARTITIONS = 4
GOAL_S = 2.0
GOAL_RATIO = 2.0

# --- shared-machine accounting (as in bench/sink.py) ---------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def _busy_ticks() -> int:
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return fields[0] + fields[1] + fields[2] + fields[5] + fields[6] + fields[7]


def _process_ticks(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
        return int(rest[11]) + int(rest[12])
    except (OSError, IndexError):
        return 0


class CpuMeter:
    """Cores used over an interval by the machine, by this process, by SeaweedFS and by the rest."""

    weed_pid: int | None = None

    def __enter__(self) -> CpuMeter:
        self.pids = [os.getpid()] + ([self.weed_pid] if self.weed_pid else [])
        self.start = time.monotonic(), _busy_ticks(), [_process_ticks(p) for p in self.pids]
        return self

    def __exit__(self, *exc) -> None:
        t0, busy0, own0 = self.start
        seconds = max(time.monotonic() - t0, 1e-9)
        used = [(_process_ticks(p) - t) / _TICK / seconds for p, t in zip(self.pids, own0)]
        self.machine = (_busy_ticks() - busy0) / _TICK / seconds
        self.bench = used[0]
        self.weed = used[1] if len(used) > 1 else 0.0
        self.others = max(0.0, self.machine - sum(used))


# --- generating the lake -------------------------------------------------------------------------

PATHS = ["/", "/pricing", "/features", "/blog", "/docs", "/signup", "/login", "/checkout", "/cart", "/about",
         "/contact", "/careers", "/blog/launch", "/blog/pricing-update", "/blog/case-study", "/docs/install",
         "/docs/api", "/docs/faq", "/products/alpha", "/products/beta", "/products/gamma", "/products/delta",
         "/integrations", "/security", "/changelog", "/customers", "/partners", "/legal/privacy",
         "/legal/terms", "/status"]
TITLES = ["Home" if p == "/" else p.strip("/").replace("-", " ").replace("/", " - ").title() for p in PATHS]
# Landing pages: (referrer URL, weight); None is direct traffic.
REFERRERS = [(None, 40), ("https://www.google.com/", 25), ("https://www.bing.com/", 5),
             ("https://news.ycombinator.com/", 8), ("https://t.co/", 6), ("https://www.facebook.com/", 6),
             ("https://duckduckgo.com/", 5), ("https://www.reddit.com/r/analytics/", 3), ("https://github.com/", 2)]
UTMS = [(None, 85), (("newsletter", "email", "november"), 6), (("google", "cpc", "brand"), 5),
        (("twitter", "social", "launch"), 4)]
# (user agent, browser, os, device type, is bot, weight)
AGENTS = [
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 "
     "Safari/537.36", "Chrome", "Windows", "desktop", False, 40),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 "
     "Safari/605.1.15", "Safari", "Mac OS X", "desktop", False, 17),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Version/17.4 Mobile/15E148 Safari/604.1", "Mobile Safari", "iOS", "mobile", False, 22),
    ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile "
     "Safari/537.36", "Chrome Mobile", "Android", "mobile", False, 12),
    ("Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0", "Firefox", "Linux", "desktop",
     False, 6),
    ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "Googlebot", "Other", "bot",
     True, 3),
]
LOCALES = ["en-US", "en-GB", "de-DE", "fr-FR", "es-ES"]
# Track events in the middle of sessions, with weights.
TRACKS = [("Product Viewed", 45), ("Product Added", 20), ("Signup Started", 10), ("Element Clicked", 25)]
EXPERIMENT_VIEWED, ORDER_COMPLETED = "Experiment Viewed", "Order Completed"
EVENT_NAMES = [t for t, _ in TRACKS] + [EXPERIMENT_VIEWED, ORDER_COMPLETED]
VARIANTS = ["control", "one-page"]
CONVERSION = [0.05, 0.06]  # of sessions with 3+ events, per variant
PAGE, TRACK, IDENTIFY = 0, 1, 2
TYPES = ["page", "track", "identify"]


def _weights(pairs) -> tuple[list, np.ndarray]:
    values = [v for v, _ in pairs]
    w = np.array([w for _, w in pairs], dtype=float)
    return values, w / w.sum()


@dataclass
class Skeleton:
    """Every event as numbers, sorted by time; strings are made per day from these."""

    ts: np.ndarray  # int64 microseconds since the epoch
    session: np.ndarray  # int32
    visitor: np.ndarray  # int32
    kind: np.ndarray  # int8: PAGE, TRACK, IDENTIFY
    name: np.ndarray  # int8: index into EVENT_NAMES, -1 for pages and identifies
    path: np.ndarray  # int8: index into PATHS
    landing: np.ndarray  # bool: first event of its session
    referrer: np.ndarray  # int8: index into REFERRERS (landing pages only; else -1)
    utm: np.ndarray  # int8: index into UTMS
    delay: np.ndarray  # int32: received_at - timestamp, microseconds
    number: np.ndarray  # float: prices and revenues
    sessions: int
    visitors: int  # the population (ids are drawn for all)
    seen: int  # visitors with at least one session


def skeleton(n: int, visitors: int, seed: int) -> Skeleton:
    rng = np.random.default_rng(seed)
    mean_len = 8
    lengths = rng.geometric(1 / mean_len, int(n / mean_len * 1.2) + 100)
    cum = np.cumsum(lengths)
    k = int(np.searchsorted(cum, n)) + 1
    lengths = lengths[:k].copy()
    lengths[-1] -= int(cum[k - 1] - n)
    sessions = k
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])

    # Visitors of a growing site: each is active from a first day (up to 30 days before the window)
    # for an exponential lifetime (mean 30 days); their sessions fall uniformly in the active days
    # inside the window, as many as their log-normal activity times those days.
    activity = rng.lognormal(0, 1.0, visitors)
    first_day = rng.integers(-DAYS, DAYS, visitors)
    life = rng.exponential(30.0, visitors) + 1
    active_from = np.maximum(first_day, 0)
    active_days = np.clip(np.minimum(first_day + life, DAYS) - active_from, 0, None)
    weight = activity * active_days
    s_visitor = rng.choice(visitors, sessions, p=weight / weight.sum()).astype(np.int32)
    s_day = np.minimum(active_from[s_visitor] + rng.random(sessions) * active_days[s_visitor], DAYS - 1).astype(int)
    hour_w = 1.2 + np.sin((np.arange(24) - 8) / 24 * 2 * np.pi)
    s_hour = rng.choice(24, sessions, p=hour_w / hour_w.sum())
    t0 = int(T0.timestamp() * 1e6)
    end = t0 + DAYS * 86_400_000_000
    s_start = t0 + ((s_day * 24 + s_hour) * 3600 + rng.random(sessions) * 3600) * 1e6
    s_start = np.minimum(s_start, end - 3 * 3_600_000_000).astype(np.int64)

    ev_session = np.repeat(np.arange(sessions, dtype=np.int32), lengths)
    pos = np.arange(n) - np.repeat(starts, lengths)
    gaps = rng.exponential(45e6, n)
    gaps[pos == 0] = 0
    c = np.cumsum(gaps)
    ts = s_start[ev_session] + (c - c[np.repeat(starts, lengths)]).astype(np.int64)
    length = lengths[ev_session]
    landing = pos == 0

    variant = s_visitor[ev_session] % 2
    kind = np.where(rng.random(n) < 0.6, PAGE, TRACK).astype(np.int8)
    kind[rng.random(n) < 0.03] = IDENTIFY
    names, w = _weights(TRACKS)
    name = rng.choice(len(names), n, p=w).astype(np.int8)
    experiment = (pos == 1) & (rng.random(n) < 0.25)
    conversion = (pos == length - 1) & (length >= 3) & (rng.random(n) < np.array(CONVERSION)[variant])
    kind[landing] = PAGE
    kind[experiment | conversion] = TRACK
    name[experiment] = EVENT_NAMES.index(EXPERIMENT_VIEWED)
    name[conversion] = EVENT_NAMES.index(ORDER_COMPLETED)
    name[kind != TRACK] = -1

    zipf = 1 / np.arange(1, len(PATHS) + 1) ** 1.1
    path = rng.choice(len(PATHS), n, p=zipf / zipf.sum()).astype(np.int8)
    _, rw = _weights(REFERRERS)
    referrer = np.where(landing, rng.choice(len(REFERRERS), n, p=rw), -1).astype(np.int8)
    _, uw = _weights(UTMS)
    utm = np.where(landing, rng.choice(len(UTMS), n, p=uw), 0).astype(np.int8)
    delay = rng.integers(20_000, 800_000, n).astype(np.int32)
    number = np.round(rng.lognormal(3.5, 0.8, n), 2)

    keep = ts < end  # sessions running past the last day (a handful of events) are dropped
    order = np.argsort(ts[keep], kind="stable")

    def cut(a):
        return a[keep][order]

    return Skeleton(cut(ts), cut(ev_session), cut(s_visitor[ev_session]), cut(kind), cut(name), cut(path),
                    cut(landing), cut(referrer), cut(utm), cut(delay), cut(number), sessions, visitors,
                    int(np.unique(s_visitor).size))


def hex_ids(rng: np.random.Generator, n: int) -> pa.Array:
    """``n`` random 32-hex-digit ids (a UUID without dashes), vectorised."""
    raw = rng.integers(0, 256, (n, 16), dtype=np.uint8)
    digits = np.frombuffer(b"0123456789abcdef", dtype="S1")
    text = np.empty((n, 32), dtype="S1")
    text[:, 0::2] = digits[raw >> 4]
    text[:, 1::2] = digits[raw & 15]
    return pa.array(text.view("S32").ravel(), type=pa.binary()).cast(pa.string())


def take(values: list, idx: np.ndarray) -> pa.Array:
    return pa.array(values, type=pa.string()).take(pa.array(idx))


def join(*parts) -> pa.Array:
    return pc.binary_join_element_wise(*parts, "")


def quoted(values: list) -> list[str]:
    return ["null" if v is None else json.dumps(v) for v in values]


def by_kind(codes: np.ndarray, builders: dict[int, Callable[[np.ndarray], pa.Array]]) -> pa.Array:
    """One string per row, built by the builder of the row's code (only on its own rows)."""
    order = np.argsort(codes, kind="stable")
    pieces, seen = [], 0
    for code in np.unique(codes):
        rows = order[seen:seen + int((codes == code).sum())]
        seen += len(rows)
        pieces.append(builders[int(code)](rows))
    merged = pa.concat_arrays([p.cast(pa.string()) for p in pieces])
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))
    return merged.take(pa.array(inverse))


class Strings:
    """Per-visitor and per-session ids, made once."""

    def __init__(self, sk: Skeleton, seed: int):
        rng = np.random.default_rng(seed + 1)
        self.anonymous = hex_ids(rng, sk.visitors)
        self.session = hex_ids(rng, sk.sessions)
        self.rng = rng
        agents, aw = _weights([(a, a[-1]) for a in AGENTS])
        self.agent = rng.choice(len(agents), sk.visitors, p=aw)
        self.logged_in = rng.random(sk.visitors) < 0.15
        self.locale = rng.integers(0, len(LOCALES), sk.visitors)
        self.ip = rng.integers(0, 256, sk.visitors)


def day_table(sk: Skeleton, st: Strings, lo: int, hi: int) -> pa.Table:
    """The events ``lo:hi`` of the skeleton as an Arrow table of the lake's schema."""
    n = hi - lo
    s = slice(lo, hi)
    visitor, kind, name, path = sk.visitor[s], sk.kind[s], sk.name[s], sk.path[s]
    referrer, utm = sk.referrer[s], sk.utm[s]
    agent = st.agent[visitor]
    ts = pa.array(sk.ts[s], type=pa.timestamp("us", tz="UTC"))
    received = pa.array(sk.ts[s] + sk.delay[s], type=pa.timestamp("us", tz="UTC"))
    anonymous = st.anonymous.take(pa.array(visitor))
    user_id = pc.if_else(pa.array(st.logged_in[visitor] | (kind == IDENTIFY)),
                         join("user-", pc.cast(pa.array(visitor), pa.string())), pa.nulls(n, pa.string()))
    path_s = take(PATHS, path)
    title_s = take(TITLES, path)
    utm_values = [u for u, _ in UTMS]
    query_values = [None if u is None else f"utm_source={u[0]}&utm_medium={u[1]}&utm_campaign={u[2]}"
                    for u in utm_values]
    query_s = take(query_values, utm)
    url_s = join("https://shop.example", path_s, pc.if_else(pc.is_null(query_s), "", join("?", query_s.fill_null(""))))
    ref_urls = [r for r, _ in REFERRERS]
    # Landing pages carry their referrer; later events were referred by the site itself.
    referrer_s = pc.if_else(pa.array(referrer >= 0), take(ref_urls, np.maximum(referrer, 0)),
                            pa.scalar("https://shop.example/"))
    ref_hosts = [None if r is None else r.split("/")[2] for r in ref_urls]
    referrer_host = pc.if_else(pa.array(referrer >= 0), take(ref_hosts, np.maximum(referrer, 0)),
                               pa.scalar("shop.example"))
    ref_json = pc.if_else(pc.is_null(referrer_s), "null", join('"', referrer_s.fill_null(""), '"'))
    event_s = pc.if_else(pa.array(kind == PAGE), title_s,
                         take(EVENT_NAMES + [""], np.where(name >= 0, name, len(EVENT_NAMES))))
    event_s = pc.if_else(pa.array(kind == IDENTIFY), pa.nulls(n, pa.string()), event_s)
    numbers = pc.cast(pa.array(sk.number[s]), pa.string())
    seq = pc.cast(pa.array(np.arange(lo, hi)), pa.string())
    variant = take(VARIANTS, visitor % 2)
    page_json = join('{"path":"', path_s, '","referrer":', ref_json, ',"title":"', title_s, '","url":"', url_s, '"}')

    def rows(a: pa.Array, idx: np.ndarray) -> pa.Array:
        return a.take(pa.array(idx))

    track_codes = np.where(kind == TRACK, name, np.where(kind == PAGE, -1, -2))
    properties = by_kind(track_codes, {
        -1: lambda i: rows(page_json, i),
        -2: lambda i: pa.array(["{}"] * len(i), pa.string()),
        0: lambda i: join('{"currency":"EUR","price":', rows(numbers, i), ',"product_id":"sku-',
                          pc.cast(pa.array(visitor[i] % 500), pa.string()), '"}'),
        1: lambda i: join('{"currency":"EUR","price":', rows(numbers, i), ',"product_id":"sku-',
                          pc.cast(pa.array(visitor[i] % 500), pa.string()), '","quantity":1}'),
        2: lambda i: pa.array(['{"plan":"pro"}'] * len(i), pa.string()),
        3: lambda i: join('{"element":"', take(["signup", "buy", "nav-docs", "footer-link"], i % 4), '"}'),
        4: lambda i: join('{"experimentId":"checkout-test","variationName":"', rows(variant, i), '"}'),
        5: lambda i: join('{"currency":"EUR","order_id":"o-', rows(seq, i), '","revenue":', rows(numbers, i), '}'),
    })
    traits = pc.if_else(pa.array(kind == IDENTIFY),
                        join('{"email":"', user_id.fill_null(""), '@example.com","plan":"pro"}'), pa.scalar("{}"))
    ip = join("203.0.", pc.cast(pa.array(st.ip[visitor]), pa.string()), ".0")
    context = join('{"ip":"', ip, '","library":{"name":"analytics.js","version":"4.1.0"},"locale":"',
                   take(LOCALES, st.locale[visitor]), '","page":{"path":"', path_s, '","referrer":', ref_json,
                   ',"title":"', title_s, '","url":"', url_s, '"},"userAgent":',
                   take(quoted([a[0] for a in AGENTS]), agent), "}")
    utm_part = [[None if u is None else u[i] for u in utm_values] for i in range(3)]
    columns = {
        "event_id": hex_ids(st.rng, n),
        "type": take(TYPES, kind),
        "event": event_s,
        "anonymous_id": anonymous,
        "user_id": user_id,
        "session_id": st.session.take(pa.array(sk.session[s])),
        "group_id": pa.nulls(n, pa.string()),
        "previous_id": pa.nulls(n, pa.string()),
        "timestamp": ts,
        "received_at": received,
        "source": pa.array(["web"] * n, pa.string()),
        "url": url_s,
        "host": pa.array(["shop.example"] * n, pa.string()),
        "path": path_s,
        "query": query_s,
        "referrer": referrer_s,
        "referrer_host": referrer_host,
        "title": title_s,
        "browser": take([a[1] for a in AGENTS], agent),
        "os": take([a[2] for a in AGENTS], agent),
        "device_type": take([a[3] for a in AGENTS], agent),
        "is_bot": pa.array(np.array([a[4] for a in AGENTS])[agent]),
        "ip": ip,
        "utm_source": take(utm_part[0], utm),
        "utm_medium": take(utm_part[1], utm),
        "utm_campaign": take(utm_part[2], utm),
        "properties": properties,
        "traits": traits,
        "context": context,
    }
    return pa.table(columns, schema=EVENTS_SCHEMA)


@dataclass
class Lake:
    events: int
    objects: int
    bytes: int
    seconds: float
    sessions: int = 0
    visitors: int = 0
    keys: list[str] = field(default_factory=list)


def generate(n: int, visitors: int, seed: int, local: LakeDestination, layout: str = "hour") -> Lake:
    """Write the lake to ``local``: one object per day, hour and partition (visitor hash)."""
    start = time.perf_counter()
    sk = skeleton(n, visitors, seed)
    st = Strings(sk, seed)
    partition_of = (sk.visitor.astype(np.int64) * 2654435761 % 2**32 % PARTITIONS).astype(np.int8)
    offsets = [0] * PARTITIONS
    day_us = 86_400_000_000
    t0 = int(T0.timestamp() * 1e6)
    bounds = np.searchsorted(sk.ts, t0 + np.arange(DAYS + 1) * day_us)
    keys, size = [], 0
    for day in range(DAYS):
        lo, hi = int(bounds[day]), int(bounds[day + 1])
        table = day_table(sk, st, lo, hi)
        hour = ((sk.ts[lo:hi] - t0) // 3_600_000_000 % 24).astype(np.int16)
        group = hour * PARTITIONS + partition_of[lo:hi]
        order = np.argsort(group, kind="stable")  # time order within each group
        counts = np.bincount(group, minlength=24 * PARTITIONS)
        seen = 0
        objects: dict[tuple, tuple[list, list]] = {}  # what goes into each object: ranges, row indices
        for g, count in enumerate(counts):
            if not count:
                continue
            rows = order[seen:seen + count]
            seen += count
            h, p = divmod(g, PARTITIONS)
            first = offsets[p]
            offsets[p] += int(count)
            ranges, indices = objects.setdefault((h,) if layout == "hour" else (h, p), ([], []))
            ranges.append((p, first, first + int(count) - 1))
            indices.append(rows)
        for (h, *_), (ranges, indices) in objects.items():
            prefix = partition_prefix(EVENTS, T0 + timedelta(days=day, hours=h))
            key = ranges_object_key(prefix, EVENTS, ranges)
            data = to_parquet_table(table.take(pa.array(np.concatenate(indices))))
            local.put(key, data)
            keys.append(key)
            size += len(data)
        print(f"\r  day {day + 1}/{DAYS}: {hi:,} events, {len(keys)} objects, {size / 1e6:,.0f} MB", end="",
              flush=True)
    print()
    return Lake(len(sk.ts), len(keys), size, time.perf_counter() - start, sk.sessions, sk.seen, keys)


def upload(local: LakeDestination, s3: LakeDestination, keys: list[str], threads: int = 4) -> float:
    s3.ensure_ready()
    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda k: s3.put(k, local.get(k)), keys))
    return time.perf_counter() - start


# --- running the analyses ------------------------------------------------------------------------

FULL = Range(T0, T0 + timedelta(days=DAYS))
FUNNEL = [Step.parse("/"), Step.parse("/pricing"), Step.parse(ORDER_COMPLETED)]


def analyses_of(module) -> dict[str, Callable]:
    """The measured analyses, as functions of a connection, from a module like ``query.analyses``."""
    return {
        "traffic": lambda con: module.traffic(con, FULL, "day"),
        "top_pages": lambda con: module.top_pages(con, FULL, 10),
        "top_referrers": lambda con: module.top_referrers(con, FULL, 10),
        "funnel": lambda con: module.funnel(con, FULL, FUNNEL),
        "paths": lambda con: module.paths(con, FULL, "/pricing", "next"),
        "retention": lambda con: module.retention(con, FULL, "week"),
        "experiment": lambda con: module.experiment(con, FULL, "checkout-test", ORDER_COMPLETED),
        "sessionize": lambda con: module.sessionize(con, FULL, 30),
    }


ANALYSES: dict[str, Callable] = analyses_of(analyses)


@dataclass
class Baseline:
    """``query/engine.py`` and ``query/analyses.py`` of another checkout, measured alongside."""

    folder: Path
    connect: Callable
    analyses: dict[str, Callable]
    runs: int


def load_baseline(folder: Path, runs: int) -> Baseline:
    """Load another checkout's query engine and analyses under their own module names (the rest,
    ``clickstream`` and ``query.stats``, comes from this checkout)."""
    modules = {}
    for name in ("engine", "analyses"):
        spec = importlib.util.spec_from_file_location(f"baseline_{name}", folder / "query" / f"{name}.py")
        modules[name] = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = modules[name]
        spec.loader.exec_module(modules[name])
    return Baseline(folder, modules["engine"].connect, analyses_of(modules["analyses"]), runs)


class Recorder:
    """Stands in for the connection to catch the SQL and parameters an analysis sends."""

    def __init__(self, con):
        self.con = con
        self.calls: list[tuple[str, list]] = []

    def execute(self, sql, params=None):
        self.calls.append((sql, params))
        return self.con.execute(sql, params)


@dataclass
class Timing:
    seconds: list[float] = field(default_factory=list)
    others: list[float] = field(default_factory=list)
    weed: list[float] = field(default_factory=list)
    rows: int = 0

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


def timed(fn, con) -> tuple[float, CpuMeter, object]:
    with CpuMeter() as cpu:
        start = time.perf_counter()
        result = fn(con)
        seconds = time.perf_counter() - start
    return seconds, cpu, result


def run_analyses(settings: dict[str, Settings], runs: int, cold_runs: int, baseline: Baseline | None = None) -> dict:
    """``{(analysis, lake, warm|cold): Timing}`` and connection set-up times.

    With a baseline, each analysis is also timed warm on the baseline's own connection right after
    this checkout's (``(analysis, lake, "baseline")``), so both see the same load.
    """
    results: dict = {}
    connect_s: dict[str, list[float]] = {lake: [] for lake in settings}
    warm, base = {}, {}
    for lake, s in settings.items():
        start = time.perf_counter()
        warm[lake] = connect(s)
        connect_s[lake].append(time.perf_counter() - start)
        if baseline:
            start = time.perf_counter()
            base[lake] = baseline.connect(s)
            connect_s[f"{lake} baseline"] = [time.perf_counter() - start]
    header = f"{'analysis':<14} {'lake':<6} {'mode':<5} {'median s':>9} {'runs':<28} {'other CPU':>9} {'weed CPU':>8}"
    print(header)
    for name, fn in ANALYSES.items():
        for lake, s in settings.items():
            t = results[(name, lake, "warm")] = Timing()
            _, _, result = timed(fn, warm[lake])  # warm-up
            t.rows = len(result)
            for _ in range(runs):
                seconds, cpu, _ = timed(fn, warm[lake])
                t.seconds.append(seconds)
                t.others.append(cpu.others)
                t.weed.append(cpu.weed)
            _line(name, lake, "warm", t)
            if baseline:
                b = results[(name, lake, "baseline")] = Timing()
                _, _, result = timed(baseline.analyses[name], base[lake])  # warm-up
                b.rows = len(result)
                for _ in range(baseline.runs):
                    seconds, cpu, _ = timed(baseline.analyses[name], base[lake])
                    b.seconds.append(seconds)
                    b.others.append(cpu.others)
                    b.weed.append(cpu.weed)
                _line(name, lake, "base", b)
            if cold_runs:
                t = results[(name, lake, "cold")] = Timing()
                for _ in range(cold_runs):
                    start = time.perf_counter()
                    con = connect(s)
                    connect_s[lake].append(time.perf_counter() - start)
                    seconds, cpu, result = timed(fn, con)
                    con.close()
                    t.seconds.append(seconds)
                    t.others.append(cpu.others)
                    t.weed.append(cpu.weed)
                    t.rows = len(result)
                _line(name, lake, "cold", t)
    for con in [*warm.values(), *base.values()]:
        con.close()
    return {"timings": results, "connect": connect_s}


def _line(name: str, lake: str, mode: str, t: Timing) -> None:
    runs = " ".join(f"{x:.2f}" for x in t.seconds)
    print(f"{name:<14} {lake:<6} {mode:<5} {t.median:>9.2f} {runs:<28} {statistics.median(t.others):>9.2f} "
          f"{statistics.median(t.weed):>8.2f}", flush=True)


def explain(settings: dict[str, Settings], folder: Path) -> None:
    """EXPLAIN ANALYZE of every statement of every analysis, on each lake, one file each."""
    folder.mkdir(parents=True, exist_ok=True)
    for lake, s in settings.items():
        con = connect(s)
        for name, fn in ANALYSES.items():
            recorder = Recorder(con)
            fn(recorder)
            with open(folder / f"{name}-{lake}.txt", "w") as out:
                for sql, params in recorder.calls:
                    out.write(sql.strip() + "\n\n")
                    for _kind, plan in con.execute("EXPLAIN ANALYZE " + sql, params).fetchall():
                        out.write(plan + "\n")
        con.close()
    print(f"EXPLAIN ANALYZE plans in {folder}")


# Connection settings tried by ``--what-if``: SET statements run before the views are defined.
WHAT_IF = {
    "metadata caches": ["SET parquet_metadata_cache = true", "SET enable_http_metadata_cache = true"],
    "metadata caches, 8 threads": ["SET parquet_metadata_cache = true", "SET enable_http_metadata_cache = true",
                                   "SET threads = 8"],
    # Remote Parquet is fetched a column chunk per request; this fetches a row group's chunks together.
    "metadata caches, prefetch all": ["SET parquet_metadata_cache = true", "SET enable_http_metadata_cache = true",
                                      "SET prefetch_all_parquet_files = true"],
}


def what_if_connect(settings: Settings, statements: list[str]) -> duckdb.DuckDBPyConnection:
    """A connection like ``query.engine.connect`` (same extension, secret and views) with extra settings."""
    con = duckdb.connect()
    if settings.lake_dir is None:
        con.execute(f"LOAD {_quote(str(httpfs_extension_path()))}")
        endpoint = urlsplit(settings.s3_endpoint_url)
        con.execute(
            f"""CREATE SECRET lake (
                TYPE s3, KEY_ID {_quote(settings.s3_access_key)}, SECRET {_quote(settings.s3_secret_key)},
                REGION {_quote(settings.s3_region)}, ENDPOINT {_quote(endpoint.netloc)},
                URL_STYLE 'path', USE_SSL {str(endpoint.scheme == "https").lower()})"""
        )
    for statement in statements:
        con.execute(statement)
    refresh_views(con, settings)
    return con


def what_if(settings: dict[str, Settings], runs: int) -> None:
    """Every analysis again on connections with other settings: the first run on a new connection
    (cold), then the median of ``runs`` more (warm)."""
    for label, statements in WHAT_IF.items():
        print(f"\nwhat if: {label} ({'; '.join(statements)})")
        print("| analysis | S3 s | local s | S3 / local | S3 cold s | local cold s |")
        print("|---|---:|---:|---:|---:|---:|")
        for name, fn in ANALYSES.items():
            warm, cold = {}, {}
            for lake, s in settings.items():
                con = what_if_connect(s, statements)
                cold[lake] = timed(fn, con)[0]
                warm[lake] = statistics.median(timed(fn, con)[0] for _ in range(runs))
                con.close()
            print(f"| {name} | {warm['s3']:.2f} | {warm['local']:.2f} | {warm['s3'] / warm['local']:.2f} | "
                  f"{cold['s3']:.2f} | {cold['local']:.2f} |", flush=True)


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def report(out: dict, runs: int, cold_runs: int) -> None:
    timings = out["timings"]
    print(f"\nmedians (warm: {runs} runs after a warm-up on one connection; cold: {cold_runs} new connections):")
    print(f"| analysis | rows | S3 s | local s | S3 / local | S3 cold s | local cold s | goal < {GOAL_S:g} s on S3 "
          f"| goal S3 <= {GOAL_RATIO:g}x local |")
    print("|---|---:|---:|---:|---:|---:|---:|---|---|")
    met = {"time": 0, "ratio": 0}
    for name in ANALYSES:
        s3, local = timings[(name, "s3", "warm")], timings[(name, "local", "warm")]
        ratio = s3.median / local.median
        cold = [timings.get((name, lake, "cold")) for lake in ("s3", "local")]
        cold_text = [f"{c.median:.2f}" if c else "-" for c in cold]
        ok_time, ok_ratio = s3.median < GOAL_S, ratio <= GOAL_RATIO
        met["time"] += ok_time
        met["ratio"] += ok_ratio
        print(f"| {name} | {s3.rows:,} | {s3.median:.2f} | {local.median:.2f} | {ratio:.2f} | {cold_text[0]} | "
              f"{cold_text[1]} | {'yes' if ok_time else 'no'} | {'yes' if ok_ratio else 'no'} |")
    if any(key[2] == "baseline" for key in timings):
        print(f"\nbaseline (warm, same run, right after each of this checkout's measurements):")
        print("| analysis | baseline S3 s | S3 s | baseline local s | local s |")
        print("|---|---:|---:|---:|---:|")
        for name in ANALYSES:
            cells = [timings[(name, lake, mode)].median for lake in ("s3", "local") for mode in ("baseline", "warm")]
            print(f"| {name} | " + " | ".join(f"{c:.2f}" for c in cells) + " |")
    print(f"\n{met['time']}/{len(ANALYSES)} analyses under {GOAL_S:g} s on S3; "
          f"{met['ratio']}/{len(ANALYSES)} with S3 within {GOAL_RATIO:g}x of local")
    for lake, values in out["connect"].items():
        print(f"connect() on {lake}: median {statistics.median(values):.2f} s over {len(values)} connections "
              f"(lists the lake and defines the views)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10_000_000, help="events in the lake")
    parser.add_argument("--visitors", type=int, default=320_000,
                        help="visitor population (about 200,000 of 320,000 are active in the 30 days)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--runs", type=int, default=3, help="measured runs per analysis and lake after a warm-up")
    parser.add_argument("--cold-runs", type=int, default=1, help="runs on a new connection each (0: none)")
    parser.add_argument("--data-dir", type=Path, help="keep the generated lake here (reused if it matches)")
    parser.add_argument("--layout", choices=["hour", "partition"], default="hour",
                        help="one object per hour, as `clickstream compact` leaves closed hours (default), or one "
                             "per hour and Kafka partition, as it left them before it merged across partitions")
    parser.add_argument("--explain", type=Path, help="write EXPLAIN ANALYZE of each analysis here")
    parser.add_argument("--what-if", action="store_true",
                        help="also time every analysis on connections with other settings (metadata caches, threads)")
    parser.add_argument("--what-if-only", action="store_true", help="--what-if without the main measurement")
    parser.add_argument("--only", nargs="*", choices=list(ANALYSES), help="run only these analyses")
    parser.add_argument("--baseline", type=Path,
                        help="another checkout (e.g. from `git worktree add` or `git archive`) whose query engine "
                             "and analyses are timed warm alongside, in the same run")
    parser.add_argument("--baseline-runs", type=int, default=1, help="measured runs of the baseline after a warm-up")
    args = parser.parse_args()
    if args.only:
        for name in list(ANALYSES):
            if name not in args.only:
                del ANALYSES[name]

    # SIGTERM unwinds like Ctrl-C: SeaweedFS is stopped and the temporary directory removed.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-query-") as tmp:
        data = args.data_dir or Path(tmp) / "lake"
        settings = Settings(_env_file=None, s3_port=free_port_pair(GRPC_OFFSET), state_dir=Path(tmp) / "state",
                            s3_bucket="bench-lake")
        lakes = {"s3": settings, "local": Settings(_env_file=None, lake_dir=data)}
        print(f"machine: {os.cpu_count()} CPUs, {cpu_model()}, Python {platform.python_version()}, "
              f"duckdb {duckdb.__version__}, pyarrow {pa.__version__}, numpy {np.__version__}, "
              f"load average {os.getloadavg()[0]:.2f}")
        supervisor = Supervisor(settings, [c for c in stack_components(settings) if c.name == "s3"])
        try:
            supervisor.start()
            CpuMeter.weed_pid = supervisor.children["s3"].process.pid
            print(f"SeaweedFS s3 {settings.s3_endpoint_url}, bucket {settings.s3_bucket}; local lake {data}\n")
            local = LakeDestination.from_settings(lakes["local"])
            marker = data / "generated.json"
            wanted = {"events": args.events, "visitors": args.visitors, "seed": args.seed, "t0": T0.isoformat(),
                      "layout": args.layout}
            cached = json.loads(marker.read_text()) if marker.exists() else None
            if cached and cached.get("params") == wanted:
                lake = Lake(**{k: v for k, v in cached.items() if k != "params"})
                print(f"reusing the lake in {data}: {lake.events:,} events in {lake.objects} objects")
            else:
                if data.exists():
                    shutil.rmtree(data)
                print(f"generating {args.events:,} events over {DAYS} days ...")
                lake = generate(args.events, args.visitors, args.seed, local, args.layout)
                marker.write_text(json.dumps({**vars(lake), "params": wanted}))
                print(f"  {lake.events:,} events ({lake.sessions:,} sessions, {lake.visitors:,} visitors) in "
                      f"{lake.objects} objects, {lake.bytes / 1e6:,.0f} MB, {lake.seconds:.0f} s")
            seconds = upload(local, LakeDestination.from_settings(settings), lake.keys)
            print(f"uploaded to s3://{settings.s3_bucket} in {seconds:.0f} s\n", flush=True)
            if not args.what_if_only:
                baseline = load_baseline(args.baseline, args.baseline_runs) if args.baseline else None
                out = run_analyses(lakes, args.runs, args.cold_runs, baseline)
                report(out, args.runs, args.cold_runs)
            if args.explain:
                explain(lakes, args.explain)
            if args.what_if or args.what_if_only:
                what_if(lakes, args.runs)
        except StackError:
            for log in sorted((Path(tmp) / "state").rglob("*.log")):
                print(f"--- {log.name}\n{tail(log)}", file=sys.stderr)
            raise
        finally:
            supervisor.stop()
    print(f"\ntotal time {time.perf_counter() - started:.0f} s, load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

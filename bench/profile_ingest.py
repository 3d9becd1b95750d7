"""Profile: where the ingest API spends its CPU on the single-event path (``POST /v1/track``).

It starts SeaweedFS, Tansu and ``python -m clickstream api`` as ``bench/ingest.py`` does (or,
with ``--target no-kafka``, the API with a producer that returns at once and no broker), loads
the API with ``--concurrency`` closed-loop aiohttp clients (or at a fixed ``--rate``, open loop)
sending the same track calls as the benchmark, and while that runs samples the API process
with py-spy (``pip install py-spy`` into the venv) for ``--seconds``. It reports:

* the API process's CPU use over the sampling window (from ``/proc``), the requests answered
  in it, and so the CPU time per request;
* the samples by cost category (validation, enrichment, user-agent parsing, serialization,
  JSON logging, Kafka produce, metrics, FastAPI/Starlette, uvicorn/httptools, event loop),
  as a share of the busy samples and as microseconds per request;
* the functions with the most samples of their own;
* ``--micro``: in-process timings of the same steps on one event (no HTTP, no server), including
  user-agent parsing without its cache, and of whole requests through the app's ASGI callable.

Run it by hand from the project root:

    .venv/bin/python bench/profile_ingest.py
    .venv/bin/python bench/profile_ingest.py --target no-kafka --seconds 20
    .venv/bin/python bench/profile_ingest.py --micro-only
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import logging
import os
import shutil
import sys
import tempfile
import time
import timeit
import uuid
from collections import Counter
from contextlib import AsyncExitStack
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ingest as bench  # noqa: E402  (bench/ingest.py: the same workload, targets and stack)

from clickstream.kafka import create_topics  # noqa: E402
from clickstream.settings import LOOPBACK, Settings  # noqa: E402
from clickstream.stack.components import SERVICES_STAGE, Component, stack_components  # noqa: E402
from clickstream.stack.probes import free_port, free_port_pair, http_ok  # noqa: E402
from clickstream.stack.servers import GRPC_OFFSET  # noqa: E402
from clickstream.stack.supervisor import Supervisor  # noqa: E402

# (label, predicate on one frame "function (file:line)"). A sample goes to the category of the deepest
# frame of its stack that matches one (the first label matching that frame); stdlib and pydantic
# frames carry no label, so they count for whoever called them. Outermost frames (the CLI, uvicorn.run,
# asyncio.run) are left out: a stack that has nothing else is the event loop's own (uvloop's C code).
ENTRY_FRAMES = ("clickstream/cli.py", "clickstream/__main__.py", "ingest_api/main.py", "bench/ingest.py",
                "/uvicorn/main.py", "/uvicorn/server.py", "/uvicorn/_compat.py", "/click/", "<module>", "runpy.py")
CATEGORIES = [
    ("JSON logging (log.info, JsonFormatter, write)", lambda f: "/logging/__init__.py" in f or "clickstream/logs.py" in f),
    ("Prometheus metrics", lambda f: "/prometheus_client/" in f),
    ("Kafka produce (aiokafka, send_many)", lambda f: "/aiokafka/" in f or "ingest_api/producer.py" in f),
    ("user-agent parsing", lambda f: f.startswith("parse_user_agent ") or "/ua_parser" in f or "/crawlerdetect/" in f),
    ("validation (parse_incoming: IncomingEvent)", lambda f: f.startswith(("parse_incoming ", "describe_validation"))),
    ("Event serialization (to_bytes)", lambda f: ".to_bytes (" in f),
    ("body read (read_limited, request.stream)", lambda f: f.startswith(("read_limited ", "body_chunks "))),
    ("enrichment (URL/UTM/page fields, IP, timestamps)",
     lambda f: "ingest_api/enrich.py" in f or f.startswith(("anonymize_ip ", "client_ip ", "_ip "))),
    ("per-call size check json.dumps (process_calls)",
     lambda f: f.startswith(("create_app.<locals>.process_calls ", "IngestPipeline.process_calls "))),
    ("body decode (json.loads)", lambda f: f.startswith("decode_body ")),
    ("response render (JSONResponse, json_bytes)", lambda f: "/starlette/responses.py" in f or "/fastapi/responses.py" in f
     or f.startswith(("json_bytes ", "error_reply "))),
    ("lean ASGI front (ingest_api/lean.py: headers, body, send)", lambda f: "ingest_api/lean.py" in f),
    ("ingest handler, other (auth, request id, headers, finish)", lambda f: "/ingest_api/" in f),
    ("FastAPI/Starlette (routing, request, middleware incl. CORS)", lambda f: "/fastapi/" in f or "/starlette/" in f),
    ("uvicorn + httptools (HTTP protocol, transport writes)", lambda f: "/uvicorn/" in f or "httptools" in f),
]
EVENT_MODEL = "Event model construction (pydantic, in build_event)"
OTHER = "event loop (uvloop, asyncio) and other"


def label_of(frames: list[str]) -> str:
    for depth in range(len(frames) - 1, -1, -1):
        frame = frames[depth]
        if any(entry in frame for entry in ENTRY_FRAMES):
            continue
        for name, match in CATEGORIES:
            if match(frame):
                below = frames[depth + 1] if depth + 1 < len(frames) else ""
                if frame.startswith("build_event ") and "/pydantic/" in below:
                    return EVENT_MODEL
                return name
    return OTHER


def categorize(raw: Path) -> tuple[Counter[str], Counter[str], int, dict[str, Counter[str]]]:
    """py-spy raw output -> samples by category, by own (leaf) function, total, leaves by category."""
    by_category, by_leaf, total, leaves = Counter(), Counter(), 0, {}
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        frames = stack.split(";")
        total += n
        by_leaf[frames[-1] if frames else "?"] += n
        label = label_of(frames)
        by_category[label] += n
        leaves.setdefault(label, Counter())[frames[-1]] += n
    return by_category, by_leaf, total, leaves


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


async def load_and_sample(args, url: str, pid: int, raw: Path) -> tuple[int, float, float, list[float]]:
    """Load the API, sample it with py-spy meanwhile: (requests answered, seconds, API CPU seconds, latencies)."""
    track = bench.workloads(argparse.Namespace(events=5000, warmup=0, sweep_events=0, sweep=[], batch_events=100,
                                               batch_size=100, visitors=1000, concurrency=args.concurrency,
                                               batch_concurrency=1))["track"]
    async with AsyncExitStack() as stack:
        post = await bench.open_http("aiohttp", url, max(args.concurrency, 256), stack)
        call = bench.http_call(post, track)
        await bench.drive(call, 500, args.concurrency)  # warm-up
        stop = asyncio.Event()
        done, latencies = 0, []

        async def counted(i: int) -> bool:
            nonlocal done
            start = time.perf_counter()
            ok = await call(i)
            if ok:
                done += 1
                latencies.append(time.perf_counter() - start)
            return ok

        async def closed_loop() -> None:
            i = 0
            while not stop.is_set():
                await bench.drive(lambda j: counted(i + j), 200, args.concurrency)
                i += 200

        async def open_loop() -> None:
            while not stop.is_set():
                await bench.paced(counted, args.rate, 2)

        loader = asyncio.create_task(open_loop() if args.rate else closed_loop())
        await asyncio.sleep(2)
        done, latencies = 0, []
        cpu0, t0 = cpu_seconds(pid), time.perf_counter()
        spy = await asyncio.create_subprocess_exec(
            args.py_spy, "record", "--pid", str(pid), "--duration", str(args.seconds), "--rate", str(args.sample_rate),
            "--format", "raw", "--full-filenames", "--function", "--output", str(raw),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        _, err = await spy.communicate()
        cpu1, t1 = cpu_seconds(pid), time.perf_counter()
        answered, window = done, list(latencies)
        stop.set()
        await loader
        if spy.returncode != 0:
            raise SystemExit(f"py-spy failed: {err.decode()[-2000:]}")
        return answered, t1 - t0, cpu1 - cpu0, window


def profile(args) -> None:
    with tempfile.TemporaryDirectory(prefix="profile-ingest-") as tmp:
        settings = Settings(
            _env_file=None, broker_port=free_port(), s3_port=free_port_pair(GRPC_OFFSET), api_port=free_port(),
            state_dir=Path(tmp), topic_prefix=f"profile-{uuid.uuid4().hex[:8]}.", demo_write_key=bench.WRITE_KEY,
            log_level=args.log_level,
        )
        if args.target == "api":
            components = [c for c in stack_components(settings) if c.name in ("s3", "broker", "api")]
            name = "api"
        else:
            url = settings.url(settings.api_port)
            components = [Component(
                name="no-kafka", command=[sys.executable, bench.__file__, "--serve-no-kafka"], port=settings.api_port,
                url=url, ready=lambda: http_ok(url + "/healthz"), env=settings.as_env())]
            name = "no-kafka"

        def before_stage(stage: int) -> None:
            if stage == SERVICES_STAGE and args.target == "api":
                asyncio.run(create_topics(settings))

        supervisor = Supervisor(settings, components)
        raw = Path(args.output) if args.output else Path(tmp) / "py-spy.txt"
        try:
            supervisor.start(before_stage=before_stage)
            pid = supervisor.children[name].process.pid
            print(f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; {bench.revision()}; load average "
                  f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; profiling {name} (pid {pid}) under "
                  f"{f'{args.rate:.0f} requests/s open loop' if args.rate else f'{args.concurrency} closed-loop clients'}"
                  f", POST /v1/track, {args.seconds} s at {args.sample_rate} Hz, log level {args.log_level}")
            answered, seconds, cpu, latencies = asyncio.run(load_and_sample(args, settings.url(settings.api_port),
                                                                            pid, raw))
        finally:
            supervisor.stop()
        by_category, by_leaf, total, leaves = categorize(raw)

    per_request_us = cpu / answered * 1e6 if answered else float("nan")
    print(f"\n{answered} requests answered in {seconds:.1f} s ({answered / seconds:.0f} requests/s), "
          f"p50 {bench.percentile(latencies, 50) * 1e3:.1f} ms, p99 {bench.percentile(latencies, 99) * 1e3:.1f} ms")
    print(f"API process CPU: {cpu:.1f} s in {seconds:.1f} s = {cpu / seconds:.0%} of one core; "
          f"{per_request_us:.0f} us of CPU per request")
    print(f"py-spy: {total} busy samples (idle samples excluded)\n")
    print(f"{'category':<62} {'share':>6} {'us/request':>10}")
    for label, n in sorted(by_category.items(), key=lambda kv: -kv[1]):
        print(f"{label:<62} {n / total:>6.1%} {n / total * per_request_us:>10.0f}")
        for frame, m in leaves[label].most_common(3):
            print(f"    {m / total:>6.1%}  {shorten(frame)}")
    print(f"\nfunctions with the most own samples (of {total}):")
    for frame, n in by_leaf.most_common(args.top):
        print(f"  {n / total:>6.1%}  {shorten(frame)}")


def shorten(frame: str) -> str:
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in frame:
            head, _, rest = frame.partition("(")
            return head + "(" + rest.split(marker, 1)[-1]
    return frame


def micro(number: int) -> None:
    """The single-event steps in-process, in microseconds per call."""
    from clickstream.logs import JsonFormatter
    from ingest_api.body import decode_body
    from ua_parser import parse as parse_ua

    from clickstream.events import Event
    from ingest_api.client import _crawlers as crawlers
    from ingest_api.client import parse_user_agent
    from ingest_api.enrich import Requester, build_event, client_fields, page_fields, parse_incoming, utm_fields

    body = bench.track_bodies(1, 1000)[0]
    call = json.loads(body)
    requester = Requester(ip=LOOPBACK, user_agent=bench.USER_AGENT)
    now = datetime.now(timezone.utc)
    incoming = parse_incoming(call, "track")
    event = build_event(incoming, source="demo", received_at=now, requester=requester)
    fields = {name: getattr(event, name) for name in Event.model_fields}
    agents = [bench.USER_AGENT,
              "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
              "Version/17.4 Mobile/15E148 Safari/604.1",
              "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
              "Chrome/123.0.0.0 Safari/537.36",
              "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
              "Mozilla/5.0 (Linux; Android 14; SM-S911B) AppleWebKit/537.36 (KHTML, like Gecko) "
              "Chrome/124.0.0.0 Mobile Safari/537.36"]
    uncached = parse_user_agent.__wrapped__
    # Distinct agents (build numbers), so that neither lru_cache nor ua-parser's own cache answers.
    unique = iter([a.replace("537.36", f"537.{i}") for i in range(10 ** 6) for a in agents])
    formatter = JsonFormatter()
    record = logging.LogRecord("clickstream.api", logging.INFO, __file__, 1, "%s %s", ("track", 200), None)
    record.__dict__.update(request_id=uuid.uuid4().hex, status=200, endpoint="track", source="demo", accepted=1,
                           rejected=0, error=None, duration_ms=1.23)
    logger = logging.getLogger("profile.micro")
    logger.propagate = False
    handler = logging.StreamHandler(io.StringIO())
    handler.setFormatter(formatter)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    extra = {k: record.__dict__[k] for k in ("request_id", "status", "endpoint", "source", "accepted", "rejected",
                                             "error", "duration_ms")}

    steps = [
        ("decode_body (JSON parse of the body)",
         lambda: decode_body(body, content_type="application/json", content_encoding=None, limit=32768)),
        ("size check: len(json.dumps(call)) (batches only since 2970aa1)", lambda: len(json.dumps(call, default=str))),
        ("parse_incoming (IncomingEvent validation)", lambda: parse_incoming(call, "track")),
        ("build_event, user agent cached", lambda: build_event(incoming, source="demo", received_at=now,
                                                               requester=requester)),
        ("  of which page_fields (url, host, path, query, referrer)", lambda: page_fields(incoming)),
        ("  of which utm_fields (parse_qs)", lambda: utm_fields(event.url, incoming.context)),
        ("  of which client_fields (agent cached, anonymize_ip)", lambda: client_fields(incoming, requester)),
        ("  of which Event(...) (pydantic validation of the fields)", lambda: Event(**fields)),
        ("parse_user_agent, not cached (distinct agents)", lambda: uncached(next(unique))),
        ("  of which ua_parser.parse", lambda: parse_ua(next(unique))),
        ("  of which CrawlerDetect().isCrawler", lambda: crawlers.isCrawler(next(unique))),
        ("Event.to_bytes (model_dump_json)", event.to_bytes),
        ("JsonFormatter.format of the request's line", lambda: formatter.format(record)),
        ("log.info of the request's line (to a StringIO)", lambda: logger.info("%s %s", "track", 200, extra=extra)),
        ("uuid4().hex (request id) + str(uuid4()) (event id)", lambda: (uuid.uuid4().hex, str(uuid.uuid4()))),
    ]
    print(f"\nin-process, one track event, microseconds per call (best of 5 x {number}):")
    for label, fn in steps:
        n = number // 10 if "agent" in label or "Crawler" in label or "ua_parser" in label else number
        best = min(timeit.repeat(fn, number=n, repeat=5)) / n * 1e6
        print(f"  {best:>8.1f}  {label}")
    print(f"  record: {len(event.to_bytes())} bytes; body {len(body)} bytes")
    print(f"  {whole_app(number):>8.1f}  the whole ASGI app, POST /v1/track, a producer that returns at once, "
          "JSON log lines to /dev/null (best of 5 over distinct bodies)")


def whole_app(number: int) -> float:
    """Microseconds per request through ``create_app``'s ASGI callable (middleware, lean front,
    pipeline, logging), without a server or a broker: the API's own work on one request."""
    import uvloop

    from clickstream.logs import JsonFormatter
    from ingest_api.app import create_app

    api_log = logging.getLogger("clickstream.api")
    handler = logging.StreamHandler(open(os.devnull, "w"))
    handler.setFormatter(JsonFormatter())
    saved = api_log.handlers, api_log.propagate, api_log.level
    api_log.handlers, api_log.propagate, api_log.level = [handler], False, logging.INFO
    settings = Settings(_env_file=None, demo_write_key=bench.WRITE_KEY)
    app = create_app(settings, bench.NoKafka(settings))
    bodies = bench.track_bodies(number, 1000)
    headers = [(k.lower().encode(), v.encode()) for k, v in bench.HEADERS.items()]

    async def one(body: bytes) -> int:
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                 "scheme": "http", "path": "/v1/track", "raw_path": b"/v1/track", "query_string": b"",
                 "root_path": "", "headers": headers + [(b"content-length", str(len(body)).encode())],
                 "client": (LOOPBACK, 40000), "server": (LOOPBACK, 8000), "state": {}}
        status = []

        async def receive():
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message):
            if message["type"] == "http.response.start":
                status.append(message["status"])

        await app(scope, receive, send)
        return status[0]

    async def run() -> float:
        assert await one(bodies[0]) == 200
        best = float("inf")
        for _ in range(5):
            started = time.perf_counter()
            for body in bodies:
                await one(body)
            best = min(best, (time.perf_counter() - started) / len(bodies) * 1e6)
        return best

    try:
        return uvloop.run(run())
    finally:
        api_log.handlers, api_log.propagate, api_log.level = saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", choices=["api", "no-kafka"], default="api")
    parser.add_argument("--seconds", type=int, default=20, help="sampling window")
    parser.add_argument("--sample-rate", type=int, default=200, help="py-spy samples per second")
    parser.add_argument("--concurrency", type=int, default=32, help="closed-loop clients")
    parser.add_argument("--rate", type=float, help="open-loop requests/s instead of closed-loop clients")
    parser.add_argument("--log-level", default="INFO",
                        help="the API's CLICKSTREAM_LOG_LEVEL; WARNING drops the per-request line (for an A/B)")
    parser.add_argument("--top", type=int, default=25, help="functions to list")
    parser.add_argument("--output", help="keep py-spy's raw (collapsed stacks) output here")
    parser.add_argument("--py-spy", default=shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy"))
    parser.add_argument("--micro", type=int, default=2000, help="iterations of the in-process timings (0: none)")
    parser.add_argument("--micro-only", action="store_true", help="only the in-process timings")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if not args.micro_only:
        profile(args)
    if args.micro:
        micro(args.micro)


if __name__ == "__main__":
    main()

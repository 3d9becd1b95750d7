"""The sender's request bodies and its check of the API's answers against the model."""

from datetime import datetime, timezone

from loadgen.deliveries import Delivery
from loadgen.sender import check_answer, request_body
from loadgen.visitors import Call

T0 = datetime(2026, 3, 1, 12, tzinfo=timezone.utc)


def _call(n, valid=True):
    return Call(T0, {"type": "track", "messageId": f"m{n}", "anonymousId": "a", "event": "E",
                     "context": {"userAgent": "UA"}}, valid, "a", "desktop")


def test_bodies_carry_sent_at_for_clock_correction():
    batch = Delivery(0, "batch", (_call(1), _call(2)))
    body = request_body(batch, T0)
    assert body["sentAt"] == "2026-03-01T12:00:00.000Z" and [c["messageId"] for c in body["batch"]] == ["m1", "m2"]
    single = request_body(Delivery(0, "track", (_call(3),)), T0)
    assert single["messageId"] == "m3" and single["sentAt"] == "2026-03-01T12:00:00.000Z"
    assert "sentAt" not in batch.calls[0].payload  # the planned call is left as it was


def test_answers_are_checked_against_the_model():
    batch = Delivery(0, "batch", (_call(1), _call(2, valid=False), _call(3)))
    ok = {"success": True, "accepted": 2, "rejected": [{"index": 1, "reason": "..."}]}
    assert check_answer(batch, 200, ok) is None
    assert "expected 200 with 2 accepted" in check_answer(batch, 200, {"accepted": 3, "rejected": []})
    only_bad = Delivery(0, "batch", (_call(4, valid=False),))
    assert check_answer(only_bad, 400, {"error": "no valid event in the batch"}) is None
    assert check_answer(Delivery(0, "track", (_call(5),)), 200, {}) is None
    assert "expected 400, got 200" in check_answer(Delivery(0, "track", (_call(6, valid=False),)), 200, {})


def test_every_attempt_is_recorded_with_its_answer():
    import asyncio

    import httpx

    from loadgen.sender import send_deliveries

    answers = iter([httpx.Response(503, headers={"Retry-After": "0"}), httpx.Response(200, json={"success": True})])
    clock = iter(range(100))

    async def run():
        transport = httpx.MockTransport(lambda request: next(answers))
        async with httpx.AsyncClient(base_url="http://api", transport=transport) as client:
            return await send_deliveries([Delivery(0, "track", (_call(7),))], client, "key",
                                         monotonic=lambda: float(next(clock)))

    report = asyncio.run(run())
    assert [status for _, _, status in report.attempts] == [503, 200]
    assert all(sent < answered for sent, answered, _ in report.attempts) and report.retries == 1
    assert len(report.acknowledged) == 1 and not report.failed

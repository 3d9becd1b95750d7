"""Expected aggregates, checked against hand counts."""

from datetime import datetime, timedelta, timezone

from loadgen.deliveries import Delivery
from loadgen.expected import expected_aggregates, funnel, sessions
from loadgen.plan import plan_run
from loadgen.visitors import Call

T0 = datetime(2026, 3, 1, 12, tzinfo=timezone.utc)
_ids = iter(range(10_000))


def call(visitor, minute, kind="page", name="/", valid=True, device="desktop", **properties):
    payload = {"type": kind, "messageId": f"m{next(_ids)}", "anonymousId": visitor}
    if kind == "page":
        properties["path"] = name
    else:
        payload["event"] = name
    payload["properties"] = properties
    return Call(T0 + timedelta(minutes=minute), payload, valid, visitor, device)


def test_a_gap_of_thirty_minutes_starts_a_new_session():
    a = [call("a", 0), call("a", 29.99), call("a", 59.99), call("a", 61)]
    b = [call("b", 5)]
    split = sessions(a + b)
    assert [len(s) for s in split] == [2, 2, 1]  # a: 0-29.99, 59.99-61 (exactly 30 is a gap); b


def test_funnel_needs_the_steps_in_order_within_a_session():
    done = [call("a", 0), call("a", 1, name="/products"), call("a", 2, "track", "Product Viewed"),
            call("a", 3, "track", "Product Added"), call("a", 4, name="/checkout"),
            call("a", 5, "track", "Order Completed", revenue=10)]
    backwards = [call("b", 0, name="/products"), call("b", 1)]  # products before home: only step 1
    later_session = [call("c", 0), call("c", 45, name="/products")]  # step 2 is in another session
    steps = funnel(sessions(done + backwards + later_session))
    assert [s["sessions"] for s in steps] == [3, 1, 1, 1, 1, 1]


def test_aggregates_count_duplicates_once_and_invalid_calls_apart():
    exposure_a = call("a", 0, "track", "Experiment Viewed", experiment_id="checkout-button", variation_name="A")
    order_a = call("a", 1, "track", "Order Completed", revenue=12.5)
    early_order_b = call("b", 0, "track", "Order Completed", revenue=7)  # before exposure: no conversion
    exposure_b = call("b", 2, "track", "Experiment Viewed", experiment_id="checkout-button", variation_name="B")
    crawl = call("bot", 0, device="bot")
    bad = call("a", 0, "track", "", valid=False)
    deliveries = [
        Delivery(0, "batch", (exposure_a, order_a, bad)),
        Delivery(1, "batch", (early_order_b, exposure_b, crawl)),
        Delivery(2, "track", (order_a,)),  # a duplicate
    ]
    expected = expected_aggregates(deliveries)
    assert expected["events_sent"] == 7
    assert expected["events_accepted"] == 6
    assert expected["distinct_events"] == 5
    assert expected["duplicates_accepted"] == 1
    assert expected["invalid_rejected"] == 1
    assert expected["visitors"] == 3 and expected["bot_events"] == 1
    assert expected["sessions"] == 3 and expected["sessions_excluding_bots"] == 2
    assert expected["orders"] == 2 and expected["revenue"] == 19.5
    assert expected["experiment"]["variants"] == {"A": {"exposures": 1, "conversions": 1},
                                                  "B": {"exposures": 1, "conversions": 0}}


def test_a_tiny_seed_counted_by_hand():
    # Seed 3 at 6 events/s for 2 s gives two mobile visitors, 16 valid calls, no invalid or repeated one:
    #   user-839 (variant A): identify, /, /products, /product/sku-1005, Product Viewed, Experiment Viewed,
    #                         Product Added                                   -> funnel steps 1-4
    #   ea7b5bf5 (variant B): /, /products, /product/sku-1004, Product Viewed, Experiment Viewed,
    #                         Product Added, /checkout, /, Order Completed (24.0) -> steps 1-6, converted
    plan = plan_run(3, rate=6, duration_s=2, now=T0)
    expected = expected_aggregates(plan.deliveries)
    assert {k: expected[k] for k in ("events_accepted", "distinct_events", "invalid_rejected", "visitors",
                                     "sessions", "orders", "revenue")} == {
        "events_accepted": 16, "distinct_events": 16, "invalid_rejected": 0, "visitors": 2,
        "sessions": 2, "orders": 1, "revenue": 24.0}
    assert [s["sessions"] for s in expected["funnel"]] == [2, 2, 2, 2, 1, 1]
    assert expected["events_by_type"] == {"identify": 1, "page": 8, "track": 7}
    assert expected["experiment"]["variants"] == {"A": {"exposures": 1, "conversions": 0},
                                                  "B": {"exposures": 1, "conversions": 1}}

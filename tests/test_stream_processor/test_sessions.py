from datetime import datetime, timedelta, timezone

from stream_processor.sessions import SessionState, assign_session, session_id_for

T0 = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)
TIMEOUT = timedelta(minutes=30)


def feed(times_and_ids, visitor="v1"):
    state, ids = None, []
    for minutes, event_id in times_and_ids:
        state = assign_session(
            state, visitor_id=visitor, event_id=event_id, event_time=T0 + timedelta(minutes=minutes), timeout=TIMEOUT
        )
        ids.append(state.session_id)
    return state, ids


def test_events_within_timeout_share_a_session():
    state, ids = feed([(0, "e1"), (10, "e2"), (39, "e3")])
    assert len(set(ids)) == 1
    assert ids[0] == session_id_for("v1", "e1")
    assert state.event_count == 3
    assert state.last_seen == T0 + timedelta(minutes=39)


def test_gap_longer_than_timeout_opens_a_new_session():
    _, ids = feed([(0, "e1"), (31, "e2"), (32, "e3")])
    assert ids[0] != ids[1] == ids[2]
    assert ids[1] == session_id_for("v1", "e2")


def test_exactly_the_timeout_still_continues():
    _, ids = feed([(0, "e1"), (30, "e2")])
    assert ids[0] == ids[1]


def test_out_of_order_event_extends_the_start():
    state, ids = feed([(10, "e1"), (0, "e0")])
    assert ids[0] == ids[1]
    assert state.started_at == T0


def test_session_ids_are_deterministic_per_visitor():
    _, a = feed([(0, "e1")], visitor="v1")
    _, b = feed([(0, "e1")], visitor="v2")
    _, c = feed([(0, "e1")], visitor="v1")
    assert a == c != b


def test_state_survives_serialisation():
    state, _ = feed([(0, "e1"), (5, "e2")])
    assert SessionState.from_dict(state.to_dict()) == state
    assert SessionState.from_dict({}) is None

"""Rules: the file format with its errors, and each kind of rule firing (or not)."""

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from scipy import stats as scipy_stats

from clickstream import metrics as m
from clickstream.events import Event
from query.stats import two_proportion_test
from stream_processor.merge import WindowMerger
from stream_processor.partition import PartitionProcessor, ProcessingConfig
from stream_processor.rules import RuleFileError, default_rules, parse_rules, z_score
from stream_processor.rules_file import RulesHolder
from stream_processor.windows import counter_key

NOW = datetime(2026, 11, 28, tzinfo=timezone.utc)
T0 = datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc)


def test_a_valid_file_parses_every_kind():
    rules = parse_rules("""
rules:
  - {name: low, kind: threshold, metric: page_views, dimension: path=/checkout, below: 5}
  - {name: long, kind: session, field: duration_s, above: 600}
  - {name: cart, kind: sequence, first: Product Added, absent: Order Completed}
  - {name: spike, kind: anomaly, metric: events, trailing: 5, z: 3}
  - {name: ab, kind: experiment, alpha: 0.05, min_sample: 10}
""")
    assert [r.kind for r in rules.rules] == ["threshold", "session", "sequence", "anomaly", "experiment"]


@pytest.mark.parametrize("text,where", [
    ("rules:\n  - name: a\n    kind: threshold\n    metric: x\n", "line 2: "),  # no bound
    ("rules:\n  - {name: a, kind: session, field: duration_s, above: 1}\n  - {name: b, kind: nope}\n", "line 3: "),
    ("rules:\n  - {name: a, kind: session, field: duration_s, above: 1}\n"
     "  - {name: a, kind: session, field: duration_s, above: 2}\n", "line 3: a second rule"),
    ("rules:\n  - {name: a, kind: threshold, metric: x, above: 1, bogus: 2}\n", "line 2: "),
    ("rules: [\n", "line 2: not valid YAML"),
    ("- just a list\n", "line 1: expected a mapping"),
])
def test_errors_name_the_line_and_reason(text, where):
    with pytest.raises(RuleFileError) as info:
        parse_rules(text, "rules.yaml")
    assert f"rules.yaml, {where}" in str(info.value)


def test_a_broken_file_keeps_the_rules_in_force(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text("rules:\n  - {name: a, kind: session, field: event_count, at_least: 3}\n")
    holder = RulesHolder(path, 100)
    assert [r.name for r in holder.current().rules] == ["a"]
    path.write_text("rules:\n  - {name: b, kind: session, field: event_count}\n")
    assert not holder.reload_if_changed()
    assert [r.name for r in holder.current().rules] == ["a"] and "line 2" in holder.error
    path.write_text("rules:\n  - {name: c, kind: sequence, first: x, absent: y}\n")
    assert holder.reload_if_changed()
    assert [r.name for r in holder.current().rules] == ["c"] and holder.error is None


def window_partials(size, start, counts, p=0, through=None):
    from stream_processor.hll import HyperLogLog
    return [{"kind": "window", "p": p, "w": size, "s": start, "source": "web",
             "counts": {counter_key(*k): v for k, v in counts.items()}, "hll": HyperLogLog().to_text()},
            {"kind": "progress", "p": p, "w": size, "through": through or start + size}]


def run_windows(rules, windows, size=60):
    merger = WindowMerger(1, (size,), lambda: rules)
    reactions = []
    for start, counts in windows:
        for partial in window_partials(size, start, counts):
            reactions += merger.add(partial, NOW)[1]
    return reactions


def test_threshold_below_fires_on_a_window_without_the_dimension_and_respects_cooldown():
    rules = parse_rules("rules:\n  - {name: low, kind: threshold, metric: page_views, dimension: path=/checkout,"
                        " below: 5, cooldown_s: 120}\n")
    t = int(T0.timestamp())
    busy = {(m.PAGE_VIEWS, "path=/checkout"): 7}
    fired = run_windows(rules, [(t, busy), (t + 60, {}), (t + 120, {}), (t + 180, {}), (t + 240, busy)])
    # 0 views at t+60 fires; t+120 is within the cooldown; t+180 fires again.
    assert [(r.window_start.timestamp() - t, r.value) for r in fired] == [(60, 0.0), (180, 0.0)]
    assert fired[0].subject == "web:page_views:path=/checkout" and fired[0].kind == "threshold"


def test_default_rule_fires_per_path():
    t = int(T0.timestamp())
    fired = run_windows(default_rules(3), [(t, {(m.PAGE_VIEWS, "path=/a"): 3, (m.PAGE_VIEWS, "path=/b"): 2,
                                                (m.PAGE_VIEWS, ""): 5})])
    assert [r.subject for r in fired] == ["web:page_views:path=/a"]


@pytest.mark.parametrize("last,kind", [(40.0, "spike"), (0.0, "drop"), (11.0, None)])
def test_anomaly_spike_and_drop(last, kind):
    rules = parse_rules("rules:\n  - {name: z, kind: anomaly, metric: events, trailing: 6, z: 3}\n")
    history = [10, 12, 9, 11, 10, 12]
    t = int(T0.timestamp())
    windows = [(t + 60 * i, {(m.EVENTS, ""): v}) for i, v in enumerate(history + [last])]
    fired = run_windows(rules, windows)
    assert [r.message.split(": ")[1].split(",")[0] for r in fired] == ([kind] if kind else [])


def test_z_score_matches_numpy_and_scipy():
    history = [3.0, 5.0, 4.0, 6.0, 5.5]
    expected = (9.0 - np.mean(history)) / np.std(history, ddof=1)
    assert z_score(9.0, history) == pytest.approx(expected)
    # scipy's zscore of the history plus the value, against the history's own statistics
    assert scipy_stats.zscore(history, ddof=1)[0] == pytest.approx(z_score(3.0, history))


def test_two_proportion_test_matches_scipy():
    t = two_proportion_test(120, 1000, 160, 1000)
    table = np.array([[160, 840], [120, 880]])
    chi2, p, _, _ = scipy_stats.chi2_contingency(table, correction=False)
    assert t.p_value == pytest.approx(p, rel=1e-9)
    assert t.z == pytest.approx(np.sqrt(chi2))


def test_experiment_decided_once_with_a_minimum_sample():
    rules = parse_rules("rules:\n  - {name: ab, kind: experiment, alpha: 0.05, min_sample: 100}\n")
    t = int(T0.timestamp())
    dim_a, dim_b = m.dimension(experiment="e1", variant="A"), m.dimension(experiment="e1", variant="B")
    small = {(m.EXPERIMENT_SESSIONS, dim_a): 50, (m.EXPERIMENT_CONVERSIONS, dim_a): 5,
             (m.EXPERIMENT_SESSIONS, dim_b): 50, (m.EXPERIMENT_CONVERSIONS, dim_b): 15}
    fired = run_windows(rules, [(t, small), (t + 60, small), (t + 120, small)])
    # After two windows each side has 100 sessions: 10% vs 30%, decided; not again after.
    assert [(r.subject, r.window_start.timestamp() - t) for r in fired] == [("web:e1:B", 60)]
    assert fired[0].value < 0.05


def page(n, minutes, **fields):
    t = T0 + timedelta(minutes=minutes)
    values = dict(event_id=f"e{n}", type="page", anonymous_id="a1", timestamp=t, received_at=t, source="web",
                  path="/")
    values.update(fields)
    return Event(**values)


def test_session_rule_fires_once_when_the_condition_first_holds():
    rules = parse_rules("rules:\n  - {name: busy, kind: session, field: event_count, at_least: 3}\n")
    proc = PartitionProcessor(0, ProcessingConfig(window_sizes=(60,)), {}, lambda: rules)
    fired = [r for n in range(5) for r in proc.process(page(n, n), "raw", n, now=NOW, wall=0).reactions]
    assert len(fired) == 1 and fired[0].value == 3 and fired[0].kind == "session"


@pytest.mark.parametrize("names,fires", [(["Product Added"], True), (["Product Added", "Order Completed"], False),
                                         ([], False)])
def test_sequence_rule_at_session_end(names, fires):
    rules = parse_rules("rules:\n  - {name: cart_abandoned, kind: sequence, first: Product Added,"
                        " absent: Order Completed}\n")
    proc = PartitionProcessor(0, ProcessingConfig(window_sizes=(60,)), {}, lambda: rules)
    events = [page(0, 0)] + [page(i + 1, i + 1, type="track", event=name, path=None) for i, name in enumerate(names)]
    for offset, event in enumerate(events):
        assert proc.process(event, "raw", offset, now=NOW, wall=0).reactions == []
    out = proc.advance(T0.timestamp() + 7200, now=NOW)
    assert [r.rule for r in out.reactions] == (["cart_abandoned"] if fires else [])

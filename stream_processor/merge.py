"""Merging the partitions' closed windows into final metric rows, and the window rules.

Every input partition sends, for each window it closes, its partial counts and a sketch of its
visitors, then a progress mark ("closed every window of this size ending by T"). A window is
final once every partition's progress has passed its end: its partials are summed (the
HyperLogLog sketches merged), ratios derived, rows emitted, and the threshold, anomaly and
experiment rules evaluated on it. Partials are remembered per partition, so one read twice
after a crash is not counted twice. Plain code: ``app.py`` feeds it and sends what it returns.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import datetime

from clickstream import metrics as m
from clickstream.metrics import MetricRow
from clickstream.reactions import Reaction
from stream_processor import rules as r
from stream_processor.hll import HyperLogLog
from stream_processor.windows import split_counter_key, utc

# After a long quiet spell, at most this many empty windows per size are written (as zeros) at once.
MAX_EMPTY_WINDOWS = 360
# Next pages remembered per page (the most frequent).
MAX_NEXT_PAGES = 100



def window_values(counts: Counter, visitors: HyperLogLog) -> dict[tuple[str, str], float]:
    """A window's final values by (metric, dimension): the sums, distinct visitors and the ratios."""
    values = {split_counter_key(k): float(v) for k, v in counts.items()}
    for metric in m.ALWAYS_WRITTEN:
        values.setdefault((metric, ""), 0.0)
    values[(m.UNIQUE_VISITORS, "")] = float(visitors.count())
    ended = values[(m.SESSIONS_ENDED, "")]
    if ended:
        values[(m.BOUNCE_RATE, "")] = values.get((m.BOUNCES, ""), 0.0) / ended
        values[(m.CONVERSION_RATE, "")] = values.get((m.CONVERTED_SESSIONS, ""), 0.0) / ended
    if values[(m.EVENTS, "")]:
        values[(m.BOT_SHARE, "")] = values.get((m.BOT_EVENTS, ""), 0.0) / values[(m.EVENTS, "")]
    return values


class WindowMerger:
    def __init__(self, partitions: int, window_sizes: tuple[int, ...], rules: Callable[[], r.RuleSet],
                 grace_s: float = 10.0):
        self.partitions = partitions
        self.grace_s = grace_s
        self.waiting: dict[int, float] = {}
        self.window_sizes = window_sizes
        self.rules = rules
        self.progress: dict[int, dict[int, int]] = {w: {} for w in window_sizes}
        self.final_through: dict[int, int] = {}
        self.pending: dict[tuple[int, int, str], dict] = {}
        self.sources: set[str] = set()
        self.history: dict[str, list[float]] = {}
        self.experiments: dict[str, dict[str, dict[str, list[int]]]] = {}
        self.decided: set[str] = set()
        self.cooldowns = r.Cooldowns()
        self.stats: Counter[str] = Counter()
        self.changed = False
        self.transitions: dict[str, dict[str, int]] = {}  # "source|page" -> next page -> count
        self.updated_pages: set[str] = set()  # "source|page" whose next pages changed since taken
        # Per input partition: the checkpoint offset its latest transitions followed, and the offsets
        # of the steps counted past it (see PartitionProcessor.take_transitions).
        self.steps_counted: dict[int, tuple[int, set[int]]] = {}

    # --- state ---------------------------------------------------------------------------------

    def to_dict(self) -> dict:
        return {
            "progress": {str(w): {str(p): t for p, t in ps.items()} for w, ps in self.progress.items()},
            "final_through": {str(w): t for w, t in self.final_through.items()},
            "pending": {f"{w}|{s}|{src}": {"counts": dict(v["counts"]), "hll": self._hll_text(v),
                                           "parts": sorted(v["parts"])}
                        for (w, s, src), v in self.pending.items()},
            "sources": sorted(self.sources),
            "history": self.history,
            "experiments": self.experiments,
            "decided": sorted(self.decided),
            "cooldowns": self.cooldowns.last,
            "transitions": self.transitions,
            "steps_counted": {str(p): [floor, sorted(seen)] for p, (floor, seen) in self.steps_counted.items()},
        }

    @staticmethod
    def _hll_text(entry: dict) -> str:
        # Encoding a sketch is the costliest part of saving the state: only redo it when it changed.
        if "text" not in entry:
            entry["text"] = entry["hll"].to_text()
        return entry["text"]

    def restore(self, d: dict | None) -> None:
        if not d:
            return
        for w, ps in d["progress"].items():
            self.progress.setdefault(int(w), {}).update({int(p): t for p, t in ps.items()})
        self.final_through = {int(w): t for w, t in d["final_through"].items()}
        self.pending = {}
        for key, v in d["pending"].items():
            w, s, src = key.split("|", 2)
            self.pending[(int(w), int(s), src)] = {
                "counts": Counter(v["counts"]), "hll": HyperLogLog.from_text(v["hll"]), "parts": set(v["parts"])}
        self.sources = set(d["sources"])
        self.history = d["history"]
        self.experiments = d["experiments"]
        self.decided = set(d["decided"])
        self.cooldowns = r.Cooldowns(d["cooldowns"])
        self.transitions = d.get("transitions", {})
        self.steps_counted = {int(p): (floor, set(seen)) for p, (floor, seen) in d.get("steps_counted", {}).items()}

    # --- input ---------------------------------------------------------------------------------

    def add(self, partial: dict, now: datetime, wall: float = 0.0) -> tuple[list[MetricRow], list[Reaction]]:
        """Take one partial or progress mark; ``wall`` is the processing-time clock (seconds).
        Afterwards :attr:`changed` says whether the state changed (and needs saving)."""
        self.changed = False
        size = partial["w"]
        if partial["kind"] == "transitions":
            self._count_transitions(partial)
            return [], []
        if size not in self.progress:
            return [], []  # a window size no longer configured
        if partial["kind"] == "window":
            start, source = partial["s"], partial["source"]
            if start + size <= self.final_through.get(size, -1):
                # Its window is final already: a partial read again after a crash (or from a
                # partition that was empty when the window was finalized).
                self.stats["partials_after_final"] += 1
                return [], []
            self.sources.add(source)
            entry = self.pending.setdefault(
                (size, start, source), {"counts": Counter(), "hll": HyperLogLog(), "parts": set()})
            if partial["p"] in entry["parts"]:
                return [], []
            entry["parts"].add(partial["p"])
            entry["counts"].update(partial["counts"])
            entry["hll"].merge(HyperLogLog.from_text(partial["hll"]))
            entry.pop("text", None)
            self.changed = True
            return [], []
        marks = self.progress[size]
        self.changed = True
        through = partial["through"]
        if through is None:
            # A partition without events: windows need not wait for it (until it has some).
            marks.setdefault(partial["p"], None)
        else:
            marks[partial["p"]] = max(through, marks.get(partial["p"]) or through)
        known = [t for t in marks.values() if t is not None]
        if len(marks) < self.partitions or not known:
            return [], []
        if len(known) < len(marks):
            # Some partitions have had no events: wait a grace period (processing time) for them
            # before finalizing without them, so a worker that starts a little later is not left out.
            first_ready = self.waiting.setdefault(size, wall)
            if wall - first_ready < self.grace_s:
                return [], []
        self.waiting.pop(size, None)
        return self._finalize(size, min(known), now)

    def _finalize(self, size: int, through: int, now: datetime) -> tuple[list[MetricRow], list[Reaction]]:
        previous = self.final_through.get(size)
        if previous is not None and through <= previous:
            return [], []
        self.final_through[size] = through
        ready = sorted(k for k in self.pending if k[0] == size and k[1] + size <= through)
        windows = {(k[1], k[2]): self.pending.pop(k) for k in ready}
        if previous is not None:
            # Known sources get rows for windows without events too: "nothing happened" is data.
            first = max(previous, through - MAX_EMPTY_WINDOWS * size)
            for start in range(first, through, size):
                for source in self.sources:
                    windows.setdefault((start, source), None)
        rows, reactions = [], []
        for (start, source), entry in sorted(windows.items()):
            counts = entry["counts"] if entry else Counter()
            hll = entry["hll"] if entry else HyperLogLog()
            values = window_values(counts, hll)
            rows += [MetricRow(window_start=utc(start), window_end=utc(start + size), window_s=size,
                               source=source, metric=metric, dimension=dim, value=value)
                     for (metric, dim), value in sorted(values.items())]
            reactions += self._window_rules(size, start, source, values, now)
        return rows, reactions

    # --- paths ---------------------------------------------------------------------------------

    def _count_transitions(self, partial: dict) -> None:
        """Add a partition's page-to-next-page counts, each step once even when sent again after a
        crash: a step at an offset already counted, or at or before the checkpoint that an earlier
        message followed, was counted before."""
        floor, seen = self.steps_counted.get(partial["p"], (-1, set()))
        # Without "offsets" (written by an earlier version), the counts are taken as sent.
        offsets = partial.get("offsets") or [None] * len(partial["counts"])
        for (source, page, following, n), at in zip(partial["counts"], offsets):
            if at is not None:
                fresh = [o for o in at if o > floor and o not in seen]
                seen.update(fresh)
                self.stats["steps_counted_before"] += n - len(fresh)
                n = len(fresh)
                if not n:
                    continue
            key = f"{source}|{page}"
            nexts = self.transitions.setdefault(key, {})
            nexts[following] = nexts.get(following, 0) + n
            if len(nexts) > 2 * MAX_NEXT_PAGES:
                # Keep the most frequent next pages of a page: a bound against endless distinct paths.
                kept = sorted(nexts.items(), key=lambda kv: -kv[1])[:MAX_NEXT_PAGES]
                self.transitions[key] = dict(kept)
            self.updated_pages.add(key)
        start = partial.get("from")
        if start is not None and start > floor:
            # A restart resumes at a checkpoint at or after this one: steps before it never come again.
            floor, seen = start, {o for o in seen if o > start}
        self.steps_counted[partial["p"]] = (floor, seen)
        self.changed = True

    def take_recommendation_updates(self) -> dict[str, dict[str, int]]:
        """Next-page counts of the pages whose counts changed since the last call."""
        updates = {key: self.transitions[key] for key in self.updated_pages}
        self.updated_pages = set()
        return updates

    # --- rules ---------------------------------------------------------------------------------

    def _applies(self, rule, size: int, source: str) -> bool:
        return rule.applies_to(source) and (rule.window_s or self.window_sizes[0]) == size

    def _window_rules(self, size: int, start: int, source: str, values: dict, now: datetime) -> list[Reaction]:
        ruleset, end, fired = self.rules(), start + size, []
        for rule in ruleset.of(r.ThresholdRule):
            if not self._applies(rule, size, source):
                continue
            present = [d for (metric, d) in values if metric == rule.metric]
            for dim in rule.dimensions(present):
                value = values.get((rule.metric, dim), 0.0)
                subject = f"{source}:{rule.metric}" + (f":{dim}" if dim else "")
                if rule.holds(value) and self.cooldowns.allow(rule, subject, start):
                    fired.append(r.make_reaction(
                        rule, "threshold", subject, start, end, value, rule.bound,
                        f"{subject} = {value:g} in the {size}s window from {utc(start):%Y-%m-%d %H:%M:%S}Z "
                        f"(rule {rule.name})", now))
        for rule in ruleset.of(r.AnomalyRule):
            if not self._applies(rule, size, source):
                continue
            subject = f"{source}:{rule.metric}" + (f":{rule.dimension}" if rule.dimension else "")
            value = values.get((rule.metric, rule.dimension), 0.0)
            history = self.history.setdefault(f"{rule.name}|{subject}", [])
            z = r.z_score(value, history) if len(history) >= rule.trailing else None
            history.append(value)
            del history[:-rule.trailing]
            if z is not None and abs(z) >= rule.z and self.cooldowns.allow(rule, subject, start):
                kind = "spike" if z > 0 else "drop"
                fired.append(r.make_reaction(
                    rule, "anomaly", subject, start, end, value, rule.z,
                    f"{subject}: {kind}, {value:g} is {z:+.1f} standard deviations from the trailing "
                    f"{rule.trailing} windows (rule {rule.name})", now))
        experiment_rules = [x for x in ruleset.of(r.ExperimentRule) if self._applies(x, size, source)]
        if size == self.window_sizes[0]:
            self._count_experiments(source, values)
        for rule in experiment_rules:
            for experiment, variants in self.experiments.get(source, {}).items():
                counts = {v: (n, c) for v, (n, c) in variants.items()}
                for control, variant, p, lift in r.experiment_decision(rule, counts):
                    subject = f"{source}:{experiment}:{variant}"
                    if f"{rule.name}|{subject}" in self.decided:
                        continue
                    self.decided.add(f"{rule.name}|{subject}")
                    fired.append(r.make_reaction(
                        rule, "experiment", subject, start, end, p, rule.alpha,
                        f"experiment {experiment}: variant {variant} vs {control}: lift {lift:+.1%}, "
                        f"p = {p:.4f} < {rule.alpha} (rule {rule.name})", now))
        return fired

    def _count_experiments(self, source: str, values: dict) -> None:
        """Cumulative sessions and conversions per experiment variant, from the 1-minute windows."""
        for (metric, dim), value in values.items():
            if metric not in (m.EXPERIMENT_SESSIONS, m.EXPERIMENT_CONVERSIONS):
                continue
            parts = m.parse_dimension(dim)
            cell = self.experiments.setdefault(source, {}).setdefault(parts["experiment"], {}).setdefault(
                parts["variant"], [0, 0])
            cell[0 if metric == m.EXPERIMENT_SESSIONS else 1] += int(value)



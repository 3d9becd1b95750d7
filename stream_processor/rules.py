"""The rules engine: rule definitions, the YAML rules file, and deciding when a rule fires. No I/O
beyond reading the rules file's text handed in.

A rules file::

    rules:
      - name: checkout_views_low          # page views of /checkout below 5 in a minute
        kind: threshold
        metric: page_views
        dimension: path=/checkout         # "" (default) is the metric's total; "path=*" any path
        below: 5                          # or above / at_least / at_most
      - name: long_session                # a session longer than 10 minutes
        kind: session
        field: duration_s                 # duration_s, event_count or page_views
        above: 600
      - name: cart_abandoned              # Product Added, then no Order Completed by session end
        kind: sequence
        first: Product Added
        absent: Order Completed
      - name: traffic_anomaly             # z-score against the trailing 30 windows, spike or drop
        kind: anomaly
        metric: events
        trailing: 30
        z: 3
      - name: experiment_decided          # two-proportion z-test between variants
        kind: experiment
        alpha: 0.05
        min_sample: 100

Every rule also takes ``source`` (only that source), ``window_s`` (for window rules: which
window size, default the 1-minute one) and ``cooldown_s`` (minimum event time between two
firings for the same subject, default 600).
"""

from __future__ import annotations

import math
import statistics
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from clickstream.reactions import Reaction, reaction_id
from query.stats import two_proportion_test
from stream_processor.windows import utc


class RuleFileError(Exception):
    """The rules file cannot be used; the message names the line and the reason."""

    retriable = False


class _Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    source: str | None = None
    cooldown_s: float = Field(600, ge=0)

    def applies_to(self, source: str) -> bool:
        return self.source is None or self.source == source


class _Comparison(BaseModel):
    above: float | None = None
    below: float | None = None
    at_least: float | None = None
    at_most: float | None = None

    @model_validator(mode="after")
    def _one_bound(self):
        given = [k for k in ("above", "below", "at_least", "at_most") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of above, below, at_least, at_most")
        return self

    @property
    def bound(self) -> float:
        return next(v for v in (self.above, self.below, self.at_least, self.at_most) if v is not None)

    def holds(self, value: float) -> bool:
        if self.above is not None:
            return value > self.above
        if self.below is not None:
            return value < self.below
        if self.at_least is not None:
            return value >= self.at_least
        return value <= self.at_most


class ThresholdRule(_Rule, _Comparison):
    kind: Literal["threshold"]
    metric: str
    dimension: str = ""
    window_s: int | None = None

    def dimensions(self, present: list[str]) -> list[str]:
        """The dimensions this rule looks at in a window: a ``name=*`` pattern matches every one
        present; a fixed dimension is looked at even when absent (its value is then 0)."""
        if self.dimension.endswith("=*"):
            prefix = self.dimension[:-1]
            return [d for d in present if d.startswith(prefix)]
        return [self.dimension]


class SessionRule(_Rule, _Comparison):
    kind: Literal["session"]
    field: Literal["duration_s", "event_count", "page_views"]


class SequenceRule(_Rule):
    kind: Literal["sequence"]
    first: str
    absent: str


class AnomalyRule(_Rule):
    kind: Literal["anomaly"]
    metric: str
    dimension: str = ""
    window_s: int | None = None
    trailing: int = Field(30, ge=3)
    z: float = Field(3.0, gt=0)


class ExperimentRule(_Rule):
    kind: Literal["experiment"]
    window_s: int | None = None  # evaluated as windows of this size close
    alpha: float = Field(0.05, gt=0, lt=1)
    min_sample: int = Field(100, ge=1)
    control: str | None = None  # the control variation; default: the first in sorted order


Rule = Annotated[
    Union[ThresholdRule, SessionRule, SequenceRule, AnomalyRule, ExperimentRule], Field(discriminator="kind")
]
_RULE = TypeAdapter(Rule)


class RuleSet(BaseModel):
    model_config = ConfigDict(frozen=True)

    rules: tuple[Rule, ...] = ()

    def of(self, kind: type) -> list:
        return [r for r in self.rules if isinstance(r, kind)]


def parse_rules(text: str, origin: str = "rules file") -> RuleSet:
    """Parse and check a rules file; any error raises :class:`RuleFileError` with its line."""
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "?"
        raise RuleFileError(f"{origin}, {where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        return RuleSet()
    if not isinstance(data, dict) or not isinstance(data.get("rules"), list):
        raise RuleFileError(f"{origin}, line 1: expected a mapping with a 'rules' list")
    items = next(v for k, v in root.value if k.value == "rules").value
    rules, names = [], set()
    for node, item in zip(items, data["rules"]):
        line = node.start_mark.line + 1
        try:
            rule = _RULE.validate_python(item)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or "rule"
            raise RuleFileError(f"{origin}, line {line}: {field}: {first['msg']}") from None
        if rule.name in names:
            raise RuleFileError(f"{origin}, line {line}: a second rule named {rule.name!r}")
        names.add(rule.name)
        rules.append(rule)
    return RuleSet(rules=tuple(rules))


def load_rules(path: Path) -> RuleSet:
    try:
        text = path.read_text()
    except OSError as exc:
        raise RuleFileError(f"{path}: cannot read: {exc.strerror}") from None
    return parse_rules(text, str(path))


def default_rules(page_view_threshold: int) -> RuleSet:
    """The rules in force without a rules file: a page's views in a window reaching a threshold."""
    return RuleSet(rules=(ThresholdRule(
        name="page_views_threshold", kind="threshold", metric="page_views", dimension="path=*",
        at_least=page_view_threshold),))


# --- deciding -------------------------------------------------------------------------------

class Cooldowns:
    """Last firing time (event time, epoch s) per rule and subject; a rule fires again for a subject
    only ``cooldown_s`` after its last firing."""

    def __init__(self, last: dict[str, float] | None = None):
        self.last = dict(last or {})

    def allow(self, rule: _Rule, subject: str, at: float) -> bool:
        key = f"{rule.name}|{subject}"
        previous = self.last.get(key)
        if previous is not None and at < previous + rule.cooldown_s and at != previous:
            return False
        self.last[key] = at
        return True



def make_reaction(rule: _Rule, kind: str, subject: str, start: float, end: float, value: float,
                  threshold: float, message: str, now: datetime) -> Reaction:
    return Reaction(
        reaction_id=reaction_id(rule.name, subject, utc(start)), rule=rule.name, kind=kind, subject=subject,
        window_start=utc(start), window_end=utc(end), value=value, threshold=threshold, message=message,
        created_at=now,
    )


def z_score(value: float, history: list[float]) -> float | None:
    """How many (sample) standard deviations ``value`` lies from the mean of ``history``; None when
    the history is too short or flat to say."""
    if len(history) < 3:
        return None
    spread = statistics.stdev(history)
    if spread == 0:
        return None
    return (value - statistics.fmean(history)) / spread


def experiment_decision(rule: ExperimentRule, variants: dict[str, tuple[int, int]]) -> list[tuple[str, str, float, float]]:
    """Variants that differ from the control with p < alpha, each side with at least ``min_sample``
    sessions: ``(control, variant, p_value, lift)``. ``variants`` maps variation -> (sessions, conversions)."""
    if len(variants) < 2:
        return []
    control = rule.control if rule.control in variants else sorted(variants)[0]
    n_c, conv_c = variants[control]
    decided = []
    for variant, (n_v, conv_v) in sorted(variants.items()):
        if variant == control or n_c < rule.min_sample or n_v < rule.min_sample:
            continue
        test = two_proportion_test(conv_c, n_c, conv_v, n_v)
        if not math.isnan(test.p_value) and test.p_value < rule.alpha:
            decided.append((control, variant, test.p_value, test.lift))
    return decided

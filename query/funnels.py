"""Funnels compared across groups: by source, or by the variant of an experiment a visitor saw.

The rule is ``query.analyses.funnel``'s (a unit reaches step k if it did steps 1..k in order,
each the first occurrence after the previous step; the unit is a session, or a visitor within
``within`` minutes of step 1), computed for every group at once.
"""

from __future__ import annotations

from typing import Literal

import duckdb
import pandas as pd

from query.analyses import VISITOR, Range, Step

Group = Literal["source", "variant"]


def funnel_by(con: duckdb.DuckDBPyConnection, r: Range, steps: list[Step], within: Literal["session"] | int,
              by: Group, experiment_id: str | None = None) -> pd.DataFrame:
    """Columns ``group, step, name, units, conversion, drop_off``: one funnel per group.

    ``by="variant"`` keeps the visitors exposed to ``experiment_id`` (Segment's ``Experiment
    Viewed``) and groups them by the first variant they saw.
    """
    if not steps:
        raise ValueError("a funnel needs at least one step")
    if by == "variant" and not experiment_id:
        raise ValueError("comparing by variant needs an experiment")
    unit = "session_id" if within == "session" else VISITOR
    where, params = r.where()
    all_params = list(params)
    if by == "source":
        base = (f"base AS (SELECT source AS grp, {unit} AS unit, timestamp AS ts, type, path, event FROM events "
                f"WHERE {where} AND {unit} IS NOT NULL)")
    else:
        base = (f"""exposed AS (
                SELECT {VISITOR} AS visitor,
                       arg_min(coalesce(properties->>'$.variation_name', properties->>'$.variationName', properties->>'$.variation_id', properties->>'$.variationId'), timestamp) AS grp
                FROM events WHERE {where} AND type = 'track' AND event = 'Experiment Viewed'
                      AND coalesce(properties->>'$.experiment_id', properties->>'$.experimentId', properties->>'$.experiment_name', properties->>'$.experimentName') = ?
                GROUP BY 1),
            base AS (SELECT x.grp, {unit} AS unit, timestamp AS ts, type, path, event
                FROM events JOIN exposed x ON x.visitor = {VISITOR} WHERE {where} AND {unit} IS NOT NULL)""")
        all_params += [experiment_id] + list(params)
    ctes = [base]
    for i, step in enumerate(steps, start=1):
        condition, step_params = step.condition()
        if i == 1:
            ctes.append(f"s1 AS (SELECT grp, unit, min(ts) AS ts, min(ts) AS start FROM base WHERE {condition} "
                        "GROUP BY grp, unit)")
        else:
            window = "" if within == "session" else f" AND b.ts <= p.start + INTERVAL {int(within)} MINUTE"
            ctes.append(
                f"s{i} AS (SELECT b.grp, b.unit, min(b.ts) AS ts, any_value(p.start) AS start FROM base b "
                f"JOIN s{i - 1} p ON b.grp IS NOT DISTINCT FROM p.grp AND b.unit = p.unit AND b.ts >= p.ts{window} "
                f"WHERE {condition} GROUP BY b.grp, b.unit)")
        all_params += step_params
    counts = " UNION ALL ".join(f"SELECT grp, {i} AS step, count(*) AS units FROM s{i} GROUP BY grp"
                                for i in range(1, len(steps) + 1))
    df = con.execute(f"WITH {', '.join(ctes)} {counts} ORDER BY 1, 2", all_params).df()
    # A group that nobody carried to step k has no row for it: fill in zeros.
    full = pd.MultiIndex.from_product([df["grp"].drop_duplicates(), range(1, len(steps) + 1)], names=["grp", "step"])
    df = df.set_index(["grp", "step"]).reindex(full, fill_value=0).reset_index()
    df = df.rename(columns={"grp": "group"})
    df["group"] = df["group"].fillna("(none)")
    df.insert(2, "name", [steps[s - 1].value for s in df["step"]])
    first = df.groupby("group")["units"].transform("first")
    df["conversion"] = (df["units"] / first).where(first > 0, 0.0)
    previous = df.groupby("group")["units"].shift(1).fillna(df["units"])
    df["drop_off"] = (previous - df["units"]).astype(int)
    return df.reset_index(drop=True)

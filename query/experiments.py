"""Experiments in the lake and the verdict on each variant, beside ``query.analyses.experiment``."""

from __future__ import annotations

import math

import duckdb
import pandas as pd

from query.analyses import Range


def experiment_ids(con: duckdb.DuckDBPyConnection, r: Range) -> list[str]:
    """Experiments with exposures (Segment's ``Experiment Viewed``) in range, most exposed first."""
    where, params = r.where()
    return [row[0] for row in con.execute(f"""
        SELECT coalesce(properties->>'$.experiment_id', properties->>'$.experimentId', properties->>'$.experiment_name', properties->>'$.experimentName') AS id
        FROM events WHERE {where} AND type = 'track' AND event = 'Experiment Viewed'
        GROUP BY 1 HAVING id IS NOT NULL ORDER BY count(*) DESC, 1""", params).fetchall()]


def verdicts(result: pd.DataFrame, confidence: float = 0.95, min_exposures: int = 100) -> list[str]:
    """A verdict per row of ``query.analyses.experiment``'s result (its first row is the control).

    A variant is decided when its p-value is below ``1 - confidence`` and both it and the control
    have at least ``min_exposures`` exposures (a guard against calling a test on a handful of visitors).
    """
    out = []
    for i, row in enumerate(result.itertuples(index=False)):
        if i == 0:
            out.append("control")
            continue
        control_n = int(result.iloc[0]["exposures"])
        if min(control_n, int(row.exposures)) < min_exposures:
            out.append(f"collecting data (fewer than {min_exposures} exposures)")
        elif math.isnan(row.p_value) or row.p_value >= 1 - confidence:
            out.append("no significant difference yet")
        elif row.lift > 0 or (math.isnan(row.lift) and row.rate > 0):
            out.append("decided: better than control")
        else:
            out.append("decided: worse than control")
    return out

"""The feed of fired rules (``reactions`` table) with the dashboard's filters."""

from __future__ import annotations

from datetime import datetime

import duckdb
import pandas as pd


def reactions_feed(con: duckdb.DuckDBPyConnection, since: datetime, until: datetime, rule: str | None = None,
                   kind: str | None = None, subject: str | None = None, limit: int = 500) -> pd.DataFrame:
    """Reactions created in [since, until), newest first; ``subject`` matches a part of the subject."""
    clauses = ["dt BETWEEN ?::DATE AND ?::DATE", "created_at >= ?", "created_at < ?"]
    params: list = [since.date(), until.date(), since, until]
    for column, value in (("rule", rule), ("kind", kind)):
        if value:
            clauses.append(f"{column} = ?")
            params.append(value)
    if subject:
        clauses.append("contains(subject, ?)")
        params.append(subject)
    return con.execute(f"""
        SELECT created_at, rule, kind, subject, value, threshold, window_start, window_end, message, reaction_id
        FROM reactions WHERE {' AND '.join(clauses)} ORDER BY created_at DESC, reaction_id LIMIT ?""",
                       params + [limit]).df()


def rule_names(con: duckdb.DuckDBPyConnection) -> tuple[list[str], list[str]]:
    """The rules and kinds that have fired, for the filters."""
    rules = [r[0] for r in con.execute("SELECT DISTINCT rule FROM reactions WHERE rule IS NOT NULL ORDER BY 1").fetchall()]
    kinds = [r[0] for r in con.execute("SELECT DISTINCT kind FROM reactions WHERE kind IS NOT NULL ORDER BY 1").fetchall()]
    return rules, kinds

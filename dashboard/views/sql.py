"""SQL: one read-only query over the lake's tables, as a table, a quick chart and a CSV download."""

import pandas as pd
import streamlit as st

from dashboard.lake import lake, settings
from query.engine import QueryError, run_query

EXAMPLE = "SELECT path, count(*) AS page_views\nFROM events WHERE type = 'page'\nGROUP BY 1 ORDER BY 2 DESC\nLIMIT 20"
MAX_ROWS = 100_000

st.title("SQL")
st.caption("One SELECT over the tables `events`, `invalid_events`, `sessions`, `metrics` and `reactions` "
           "(DuckDB SQL). The connection reads the lake and nothing else.")
sql = st.text_area("Query", EXAMPLE, height=150, key="sql_text")
if st.button("Run", type="primary", key="sql_run") or "sql_result" not in st.session_state:
    try:
        columns, rows = lake().run(lambda con: run_query(con, sql, refresh=settings(), views=lake().views))
        st.session_state.sql_result = (sql, columns, rows[:MAX_ROWS], len(rows))
    except QueryError as exc:
        st.session_state.sql_result = None
        st.error(f"Query failed: {exc}")
    except Exception as exc:  # the lake is unreachable, or DuckDB failed in another way
        st.session_state.sql_result = None
        st.error(f"Query failed: {type(exc).__name__}: {exc}")

result = st.session_state.get("sql_result")
if result:
    ran, columns, rows, total = result
    df = pd.DataFrame(rows, columns=columns)
    st.caption(f"{total:,} rows" + (f" (the first {MAX_ROWS:,} shown)" if total > MAX_ROWS else ""))
    st.dataframe(df, hide_index=True, width="stretch")
    numeric = [c for c in df.columns[1:] if pd.api.types.is_numeric_dtype(df[c])]
    if len(df) > 1 and numeric:
        kind = st.segmented_control("Chart", ["bar", "line"], default="bar", key="sql_chart") or "bar"
        chart = st.bar_chart if kind == "bar" else st.line_chart
        chart(df, x=df.columns[0], y=numeric)
    st.download_button("Download CSV", df.to_csv(index=False).encode(), "query.csv", "text/csv", key="sql_csv")

"""Plotly figures for the pages, built from query results (pure: DataFrame in, figure out)."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

LAYOUT = dict(margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h", y=-0.2))


def line(df: pd.DataFrame, x: str, y: str | list[str], title: str, y_title: str | None = None) -> go.Figure:
    fig = px.line(df, x=x, y=y, title=title, markers=len(df) < 60)
    fig.update_layout(**LAYOUT, yaxis_title=y_title, xaxis_title=None, legend_title=None)
    return fig


def bars(df: pd.DataFrame, label: str, value: str, title: str) -> go.Figure:
    """Horizontal bars, biggest on top."""
    fig = px.bar(df.iloc[::-1], x=value, y=label, orientation="h", title=title, text=value)
    fig.update_layout(**LAYOUT, yaxis_title=None, height=max(250, 28 * len(df) + 80))
    return fig


def donut(df: pd.DataFrame, label: str, value: str, title: str) -> go.Figure:
    fig = px.pie(df, names=label, values=value, title=title, hole=0.5)
    fig.update_layout(**LAYOUT)
    return fig


def funnel(df: pd.DataFrame, group: str | None = None) -> go.Figure:
    """Bars of units per step, labelled with conversion from step 1 and drop-off from the step before."""
    fig = go.Figure()
    groups = [(None, df)] if group is None else list(df.groupby(group, sort=True))
    for name, part in groups:
        labels = [f"{r.units:,} ({r.conversion:.1%})" + (f"<br>-{r.drop_off:,}" if r.step > 1 else "")
                  for r in part.itertuples(index=False)]
        fig.add_bar(x=[f"{s}. {n}" for s, n in zip(part["step"], part["name"])], y=part["units"],
                    name=str(name) if name is not None else "units", text=labels, textposition="auto")
    fig.update_layout(**LAYOUT, barmode="group", title="Units reaching each step (conversion from step 1, drop-off)",
                      yaxis_title="units", showlegend=group is not None)
    return fig


def sankey(page: str, previous: pd.DataFrame, following: pd.DataFrame) -> go.Figure:
    """Flows into ``page`` (from ``previous_page``) and out of it (to ``next_page``), with ``transitions``."""
    labels = [f"{p} " for p in previous["previous_page"]] + [page] + [f" {p}" for p in following["next_page"]]
    middle = len(previous)
    sources = list(range(middle)) + [middle] * len(following)
    targets = [middle] * len(previous) + list(range(middle + 1, middle + 1 + len(following)))
    values = list(previous["transitions"]) + list(following["transitions"])
    fig = go.Figure(go.Sankey(
        node=dict(label=labels, pad=12, thickness=14),
        link=dict(source=sources, target=targets, value=values),
    ))
    fig.update_layout(**LAYOUT, title=f"Into and out of {page}", height=max(350, 30 * max(len(previous),
                                                                                         len(following)) + 120))
    return fig


def retention_heatmap(df: pd.DataFrame, period: str) -> go.Figure:
    """Cohort rows (first active period), period-offset columns, share of the cohort as colour."""
    share = df.pivot(index="cohort", columns="offset", values="share").sort_index()
    visitors = df.pivot(index="cohort", columns="offset", values="visitors").reindex(share.index)
    size = df.groupby("cohort")["cohort_size"].first().reindex(share.index)
    fmt = "%Y-%m-%d"
    rows = [f"{c.strftime(fmt)} ({n:,})" for c, n in zip(pd.to_datetime(share.index), size)]
    text = [[("" if pd.isna(v) else f"{v:.0%}") for v in row] for row in share.to_numpy()]
    fig = go.Figure(go.Heatmap(
        z=share.to_numpy(), x=[f"{period} {o}" for o in share.columns], y=rows, text=text,
        texttemplate="%{text}", customdata=visitors.to_numpy(), colorscale="Blues", zmin=0, zmax=1,
        hovertemplate="cohort %{y}<br>%{x}: %{customdata:,} visitors (%{z:.1%})<extra></extra>",
    ))
    fig.update_layout(**LAYOUT, title=f"Share of each cohort active {period}s later", yaxis_autorange="reversed",
                      height=max(300, 26 * len(rows) + 120))
    return fig


def experiment_rates(df: pd.DataFrame) -> go.Figure:
    """Conversion rate per variant, with the confidence interval of its difference from the control."""
    base = df["rate"].iloc[0]
    fig = go.Figure(go.Bar(
        x=df["variant"], y=df["rate"], text=[f"{r:.2%}" for r in df["rate"]], textposition="auto",
        error_y=dict(type="data", symmetric=False, array=(base + df["ci_high"] - df["rate"]).clip(lower=0),
                     arrayminus=(df["rate"] - base - df["ci_low"]).clip(lower=0)),
    ))
    fig.update_layout(**LAYOUT, title="Conversion rate (bars: interval of the difference to the control)",
                      yaxis_tickformat=".1%")
    return fig

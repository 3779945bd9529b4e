"""Results page: the results table across runs (filters: split, era, backbones), per-story drill-down, Table 1.

Values come from each arm's ``metrics/`` files as the evaluator wrote them (the dashboard never recomputes a
metric); rows scored with the weight-free ``toy`` backbones are flagged as not comparable with published numbers.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import common, runs
from formats.published import UNIMAGE_TABLE1
from formats.results import HEADERS, RESULT_COLUMNS, TABLE1_COLUMNS

ID_COLUMNS = ("sweep", "arm", "split", "era", "backbones", "judge")


def _filter(df: pd.DataFrame, column: str, label: str) -> pd.DataFrame:
    options = sorted(df[column].fillna("").astype(str).unique())
    chosen = st.sidebar.multiselect(label, options, default=options, key=f"res_{column}")
    return df[df[column].fillna("").astype(str).isin(chosen)]


def render() -> None:
    s = common.settings()
    st.title("Results")
    if not s.runs:
        st.info("No run roots configured. Start the app with `unimage dashboard --runs DIR`.")
        return
    catalog = runs.cached_catalog(s.runs)
    rows, problems = runs.cached_results_table(catalog)
    for p in problems:
        st.warning(p)
    if not rows:
        st.info("No evaluated runs (no `metrics/summary.json`) under: " + ", ".join(s.runs))
        return
    df = pd.DataFrame(rows)
    for c in RESULT_COLUMNS:
        if c not in df:
            df[c] = float("nan")
    df = _filter(df, "split", "Split")
    df = _filter(df, "era", "Era")
    df = _filter(df, "backbones", "Backbones")
    not_comparable = df["backbones"].astype(str).str.contains("toy")
    if "comparable" in df:
        not_comparable |= df["comparable"].eq(False)
    if not_comparable.any():
        st.warning(
            f"{int(not_comparable.sum())} row(s) were scored with `toy` backbones or judge: NOT comparable with "
            "published numbers."
        )

    tab_table, tab_story, tab_t1 = st.tabs(["Results table", "Per-story drill-down", "Table 1 view"])
    with tab_table:
        st.dataframe(
            df[[*ID_COLUMNS, *RESULT_COLUMNS]],
            hide_index=True,
            column_config={c: st.column_config.NumberColumn(format="%.2f") for c in RESULT_COLUMNS},
            key="res_table",
        )
        st.caption(f"{len(df)} rows · CSD, CIDS, OCCM ×100; Alignment 0–100; Inception and Aesthetics raw.")
    with tab_story:
        _drill_down(df)
    with tab_t1:
        _table1(df)


def _drill_down(df: pd.DataFrame) -> None:
    if df.empty:
        st.info("No rows match the filters.")
        return
    options = [f"{r.sweep} / {r.arm} [{r.split or '-'}, era {r.era or '-'}]" for r in df.itertuples()]
    choice = str(st.selectbox("Run", options, key="res_drill"))
    row = df.iloc[options.index(choice)]
    arm_dir = str(row["arm_dir"])
    per_story = runs.cached_story_metrics(arm_dir)
    for p in runs.story_metric_problems(arm_dir):
        st.warning(p)
    if not per_story:
        st.info("This run has no per-story metric files.")
    else:
        table = pd.DataFrame([{"story": sid, **runs.story_columns(v)} for sid, v in per_story.items()]).sort_values(
            "story"
        )
        st.dataframe(table, hide_index=True, key="res_story_table")
        sid = st.selectbox("Story", list(table["story"]), key="res_drill_story")
        st.page_link(
            "views/storyboards.py",
            label=f"Open story {sid} in Storyboards",
            icon=":material/view_column:",
            query_params={"group": str(row["sweep"]), "story": sid},
        )
        with st.expander(f"All per-story values of story {sid}"):
            st.json(per_story[sid])
    with st.expander("Provenance and status"):
        st.json({"provenance": runs.provenance(arm_dir), "status": runs.status(arm_dir)})


def _table1(df: pd.DataFrame) -> None:
    published = pd.DataFrame(
        [
            {"method": p.method, "source": "paper", **{HEADERS[c]: p.values.get(c) for c in TABLE1_COLUMNS}}
            for p in UNIMAGE_TABLE1
        ]
    )
    measured = pd.DataFrame(
        [
            {
                "method": f"{r['sweep']}/{r['arm']}",
                "source": f"measured ({r['split'] or '?'}, era {r['era'] or '?'}, {r['backbones'] or '?'})",
                **{HEADERS[c]: r.get(c) for c in TABLE1_COLUMNS},
            }
            for _, r in df.iterrows()
        ]
    )
    show_paper = st.toggle("Show the paper's rows", value=True, key="res_t1_paper")
    table = pd.concat([published, measured] if show_paper else [measured], ignore_index=True)
    cols = [HEADERS[c] for c in TABLE1_COLUMNS]
    table[cols] = table[cols].astype(float)
    styled = table.style.highlight_max(subset=cols, props="font-weight: bold; background-color: #e8f0fe").format(
        dict.fromkeys(cols, "{:.2f}"), na_rep="–"
    )
    st.dataframe(styled, hide_index=True, key="res_t1")
    st.caption(
        "Table 1 of the paper: ViStoryBench full split, Era A conventions. Best value per column highlighted. "
        "Measured rows are comparable only when scored with the official backbones, Era A, full split."
    )


if __name__ == "__main__":
    render()

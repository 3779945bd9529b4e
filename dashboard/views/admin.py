"""Admin page (admin token): create studies from run directories, issue invites, watch progress, exclude
annotators by the declared rules, export answers and read the statistics.

The admin token is the one given to ``unimage dashboard --admin-token`` (or printed at start), or any token the
store issued with `StudyStore.issue_admin_token`. It is typed into a password field, never put into the URL.
"""

from __future__ import annotations

import hmac
import math

import pandas as pd
import streamlit as st

from dashboard import common, runs
from dashboard.settings import admin_token_problem

DEFAULT_INSTRUCTIONS = (
    "You will see storyboards (a sequence of keyframes with their script) that tell the same story, made by "
    "different systems. The systems are anonymous and shown in a random order. Judge each question on its own."
)


FULL_MODE_WARNING = (
    "**This app runs in full mode**: anyone who opens it without a `?token=` link (an annotator who shortens "
    "theirs) can browse the named Storyboards and Results pages, which unblinds the study. Restart it with "
    "`unimage dashboard --mode study ...` before sending invites."
)


def _check_token(s, store, token: str) -> bool:
    if not token:
        return False
    # A configured token too short to be safe is never accepted (the CLI refuses it; this covers the environment).
    configured_ok = bool(s.admin_token) and admin_token_problem(s.admin_token) is None
    if configured_ok and hmac.compare_digest(s.admin_token.encode(), token.encode()):
        return True
    return bool(store.verify_admin_token(token))


def render() -> None:
    s = common.settings()
    st.title("Admin")
    store = common.get_store(s.db_url)
    if not st.session_state.get("admin_ok"):
        with st.form("admin_login"):
            token = st.text_input("Admin token", type="password", key="admin_token_input")
            if st.form_submit_button("Unlock"):
                throttle = common.admin_login_throttle()
                wait = throttle.wait()
                if wait > 0:  # not even checked: a guesser learns nothing while throttled
                    st.error(f"Too many wrong admin tokens: try again in {math.ceil(wait)} s.")
                elif _check_token(s, store, token):
                    throttle.success()
                    st.session_state["admin_ok"] = True
                    st.rerun()
                else:
                    throttle.failure()
                    st.error("Wrong admin token.")
        if s.admin_token and (problem := admin_token_problem(s.admin_token)):
            st.warning(f"The configured admin token is refused: {problem}. Use a token issued by the store.")
        return
    if s.mode != "study":
        st.warning(FULL_MODE_WARNING, icon=":material/warning:")

    studies = store.list_studies()
    tab_new, tab_inv, tab_quality, tab_export, tab_stats = st.tabs(
        ["Create study", "Invites & progress", "Exclusions", "Export", "Statistics"]
    )
    with tab_new:
        _create_study(s, store)
    if not studies:
        for tab in (tab_inv, tab_quality, tab_export, tab_stats):
            tab.info("No study yet: create one first.")
        return
    labels = {f"{x.study_id}: {x.spec.name}": x for x in studies}
    choice = str(st.sidebar.selectbox("Study", list(labels), index=len(labels) - 1, key="admin_study"))
    info = labels[choice]
    with tab_inv:
        _invites(s, store, info)
    with tab_quality:
        _exclusions(store, info)
    with tab_export:
        _export(store, info)
    with tab_stats:
        _statistics(store, info)


# ----------------------------------------------------------------------------------------------- create
def _method_names(chosen: list[runs.StoryboardSet]) -> dict[str, runs.StoryboardSet]:
    """Method name per chosen set: the label, qualified by the group only where labels collide."""
    counts: dict[str, int] = {}
    for x in chosen:
        counts[x.label] = counts.get(x.label, 0) + 1
    return {(x.label if counts[x.label] == 1 else f"{x.group}/{x.label}"): x for x in chosen}


def _create_study(s, store) -> None:
    from study import ExclusionRules, StoreError, StudySpec, paper_criteria

    if not s.runs:
        st.info("No run roots configured (`unimage dashboard --runs DIR`): studies are created from run directories.")
        return
    catalog = runs.cached_catalog(s.runs)
    if not catalog.sets:
        st.info("No storyboards found under the run roots.")
        return
    by_key = {x.key: x for x in catalog.sets}
    keys = st.multiselect(
        "Methods / arms (storyboard sets)",
        list(by_key),
        format_func=lambda k: f"{by_key[k].group} · {by_key[k].label} ({by_key[k].lang})",
        key="admin_new_sets",
    )
    chosen = [by_key[k] for k in keys]
    if len(chosen) < 2:
        st.caption("Pick at least two storyboard sets.")
        return
    names = _method_names(chosen)
    common_stories = sorted(set.intersection(*(set(x.stories) for x in chosen)), key=lambda v: (len(v), v))
    if not common_stories:
        st.warning("The chosen sets have no story in common.")
        return
    all_criteria = {c.key: c for c in paper_criteria("rank")}
    with st.form("admin_new_form"):
        name = st.text_input("Study name", key="admin_new_name")
        stories = st.multiselect("Stories", common_stories, default=common_stories, key="admin_new_stories")
        crit_keys = st.multiselect(
            "Criteria",
            list(all_criteria),
            default=list(all_criteria),
            format_func=lambda k: all_criteria[k].label,
            key="admin_new_criteria",
        )
        kind = st.radio(
            "Question type",
            ["rank", "gsb", "both"],
            horizontal=True,
            key="admin_new_kind",
            format_func={"rank": "Rank all methods", "gsb": "Good/Same/Bad vs reference", "both": "Both"}.__getitem__,
        )
        reference = st.selectbox("Reference method (for Good/Same/Bad)", list(names), key="admin_new_ref")
        c1, c2, c3 = st.columns(3)
        raters = c1.number_input("Raters per item", 1, 100, 3, key="admin_new_raters")
        per_ann = c2.number_input("Items per annotator (0 = all)", 0, 10000, 0, key="admin_new_per_ann")
        catch = c3.slider("Catch-trial rate", 0.0, 0.5, 0.1, 0.05, key="admin_new_catch")
        st.markdown("**Exclusion rules** (declared now, applied to the statistics)")
        r1, r2, r3, r4 = st.columns(4)
        min_acc = r1.number_input("Min catch accuracy", 0.0, 1.0, 0.8, 0.05, key="admin_new_acc")
        min_sec = r2.number_input("Min median seconds / item", 0.0, 600.0, 5.0, 1.0, key="admin_new_sec")
        max_same = r3.number_input("Max identical-answer share", 0.0, 1.0, 0.9, 0.05, key="admin_new_same")
        min_n = r4.number_input("Rules apply from N answers", 0, 10000, 10, key="admin_new_min_n")
        seed = st.number_input("Seed", 0, 2**31 - 1, 0, key="admin_new_seed")
        instructions = st.text_area("Instructions (markdown)", DEFAULT_INSTRUCTIONS, key="admin_new_instr")
        submitted = st.form_submit_button("Create study", type="primary")
    if not submitted:
        return
    criteria: tuple = ()
    if kind in ("rank", "both"):
        criteria += tuple(c for c in paper_criteria("rank") if c.key in crit_keys)
    if kind in ("gsb", "both"):
        criteria += tuple(
            type(c)(f"{c.key}_gsb" if kind == "both" else c.key, c.label, c.question, "gsb")
            for c in paper_criteria("gsb")
            if c.key in crit_keys
        )
    spec = StudySpec(
        name=name.strip(),
        methods=tuple(names),
        stories=tuple(stories),
        criteria=criteria,
        reference_method=reference if kind in ("gsb", "both") else None,
        raters_per_item=int(raters),
        items_per_annotator=int(per_ann) or None,
        catch_rate=float(catch),
        exclusion=ExclusionRules(float(min_acc), float(min_sec), float(max_same), int(min_n)),
        seed=int(seed),
        instructions=instructions,
        sources={m: x.base for m, x in names.items()},
    )
    try:
        sid = store.create_study(spec)
    except StoreError as exc:
        st.error(str(exc))
        return
    st.session_state["admin_study_created"] = sid
    st.success(f"Created study {sid}: {spec.name} ({len(spec.methods)} methods, {len(spec.stories)} stories).")


# ----------------------------------------------------------------------------------------------- invites
def _invites(s, store, info) -> None:
    from study import StoreError

    spec = info.spec
    st.markdown(
        f"**{spec.name}** · methods: {', '.join(spec.methods)} · {len(spec.stories)} stories · "
        f"{info.n_items} items + {info.n_catch_items} catch items · {info.n_annotators} annotators"
    )
    with st.form(f"admin_inv_form_{info.study_id}"):
        count = st.number_input("Number of invites", 1, 1000, 5, key=f"admin_inv_n_{info.study_id}")
        if st.form_submit_button("Issue invites"):
            try:
                invites = store.issue_invites(info.study_id, int(count))
            except StoreError as exc:
                st.error(str(exc))
            else:
                st.session_state[f"admin_links_{info.study_id}"] = [
                    {"annotator": i.name, "link": f"{s.base_url}/?token={i.token}"} for i in invites
                ]
    links = st.session_state.get(f"admin_links_{info.study_id}")
    if links:
        if s.mode != "study":
            st.warning(FULL_MODE_WARNING, icon=":material/warning:")
        st.warning("Copy these links now: tokens are stored hashed and cannot be shown again.")
        df = pd.DataFrame(links)
        st.dataframe(df, hide_index=True, key=f"admin_links_table_{info.study_id}")
        st.download_button(
            "Download links (CSV)",
            df.to_csv(index=False).encode(),
            file_name=f"study_{info.study_id}_invites.csv",
            mime="text/csv",
            key=f"admin_links_dl_{info.study_id}",
        )
    head, refresh = st.columns([4, 1])
    head.markdown("**Progress**")
    refresh.button("Refresh", key=f"admin_refresh_{info.study_id}", help="Reload progress from the database")
    prog = store.progress(info.study_id)
    if not prog:
        st.info("No annotators yet.")
        return
    df = pd.DataFrame(
        [
            {
                "annotator": p.name,
                "completed": p.completed,
                "skipped": p.skipped,
                "total": p.total,
                "answers": p.answers,
                "last answer": p.last_answer_at,
                "excluded": p.excluded,
                "reasons": "; ".join(p.exclusion_reasons),
            }
            for p in prog
        ]
    )
    done = sum(p.completed for p in prog)
    total = sum(p.total for p in prog)
    st.progress(done / max(1, total), text=f"{done} of {total} assigned items completed")
    st.dataframe(df, hide_index=True, key=f"admin_progress_{info.study_id}")


# ----------------------------------------------------------------------------------------------- exclusions
def _exclusions(store, info) -> None:
    ex = info.spec.exclusion
    st.markdown(
        "Declared rules: "
        f"catch accuracy ≥ {ex.min_catch_accuracy}; median seconds per item ≥ {ex.min_median_seconds}; "
        f"identical-answer share ≤ {ex.max_identical_share}; applied from {ex.min_answers_for_rules} answers."
    )
    decisions = store.exclusions(info.study_id)
    if not decisions:
        st.info("No annotators yet.")
        return
    df = pd.DataFrame(
        [
            {
                "id": d.annotator_id,
                "annotator": d.name,
                "answers": d.n_answers,
                "catch answers": d.n_catch_answers,
                "catch accuracy": d.catch_accuracy,
                "median s": d.median_seconds,
                "identical share": d.identical_share,
                "excluded": d.excluded,
                "reasons": "; ".join(d.reasons),
            }
            for d in decisions
        ]
    )
    st.dataframe(df, hide_index=True, key=f"admin_excl_{info.study_id}")
    st.caption(f"{int(df['excluded'].sum())} of {len(df)} annotators excluded.")
    with st.form(f"admin_manual_{info.study_id}"):
        names = {f"{d.annotator_id}: {d.name}": d.annotator_id for d in decisions}
        who = str(st.selectbox("Annotator", list(names), key=f"admin_manual_who_{info.study_id}"))
        reason = st.text_input("Reason (empty = lift a manual exclusion)", key=f"admin_manual_reason_{info.study_id}")
        if st.form_submit_button("Apply"):
            store.set_manual_exclusion(info.study_id, names[who], reason.strip() or None)
            st.rerun()


# ----------------------------------------------------------------------------------------------- export
def _export(store, info) -> None:
    frame = store.answers_frame(info.study_id)
    st.markdown(f"{len(frame)} answers stored (append-only; catch trials and excluded annotators included, flagged).")
    c1, c2 = st.columns(2)
    c1.download_button(
        "Download answers (CSV)",
        store.export_bytes(info.study_id, "csv"),
        file_name=f"study_{info.study_id}_answers.csv",
        mime="text/csv",
        key=f"admin_dl_csv_{info.study_id}",
    )
    c2.download_button(
        "Download answers (JSON)",
        store.export_bytes(info.study_id, "json"),
        file_name=f"study_{info.study_id}_answers.json",
        mime="application/json",
        key=f"admin_dl_json_{info.study_id}",
    )
    if len(frame):
        st.dataframe(frame.tail(200), hide_index=True, key=f"admin_answers_{info.study_id}")


# ----------------------------------------------------------------------------------------------- statistics
def _statistics(store, info) -> None:
    apply = st.toggle("Apply exclusion rules", value=True, key=f"admin_stats_excl_{info.study_id}")
    n_boot = st.select_slider(
        "Bootstrap resamples", [200, 500, 1000, 2000], value=500, key=f"admin_nboot_{info.study_id}"
    )
    if not st.button("Compute statistics", key=f"admin_stats_go_{info.study_id}"):
        return
    report = store.statistics(info.study_id, n_boot=int(n_boot), apply_exclusions=apply)
    _show_report(report)


def _show_report(report) -> None:
    """Render a `StudyReport`: annotators kept, per-method table, per-criterion agreement and tests."""
    c1, c2, c3 = st.columns(3)
    c1.metric("Annotators answering", report.n_annotators_answering)
    c2.metric("Kept", report.n_annotators_kept)
    c3.metric("Flagged by the rules", len(report.excluded_annotators))
    if report.reference_method:
        st.caption(
            f"GSB against the reference method **{report.reference_method}**: net = (G−B)/(G+S+B) (primary), "
            "ratio = (G+S)/(S+B); 95% bootstrap CIs over items."
        )
    summary = report.summary_frame()
    if summary.empty:
        if report.n_annotators_answering and not report.n_annotators_kept:
            st.info("Every annotator is excluded by the declared rules; switch them off above to see the raw figures.")
        else:
            st.info("No answers to analyse yet.")
        return
    st.markdown("**Per method**")
    st.dataframe(summary.round(4), hide_index=True, key="admin_stats_summary")
    st.markdown("**Per criterion**")
    rows = []
    for c in report.criteria:
        rows.append(
            {
                "criterion": c.label,
                "kind": c.kind,
                "answers": c.n_answers,
                "annotators": c.n_annotators,
                "items": c.n_items,
                "Kendall's W": c.kendall_w,
                "mean per-item W": c.kendall_w_items_mean,
                "Krippendorff's α (ordinal)": c.alpha,
                "Friedman χ²": c.ranks.friedman_stat if c.ranks else None,
                "Friedman p": c.ranks.friedman_p if c.ranks else None,
            }
        )
    st.dataframe(pd.DataFrame(rows).round(4), hide_index=True, key="admin_stats_criteria")


if __name__ == "__main__":
    render()

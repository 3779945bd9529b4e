"""Study page (annotators): enter with an invite link ``?token=...``, judge anonymised storyboards, resume later.

Blinding: the page asks the store only for annotator-facing objects (labels A, B, ...); the one server-side bridge,
`StudyStore.panels`, is used to load images, which are sent as downscaled JPEG bytes (content-hash URLs), with
captions and alt texts that name only the label. No method name, path or file name is written into the page.
"""

from __future__ import annotations

import html
import logging

import streamlit as st

from dashboard import common, images, runs, scripttext

LOG = logging.getLogger(__name__)
GSB_OPTIONS = {"G": "A is better", "S": "About the same", "B": "B is better"}
STUDY_THUMB = 256

EXAMPLE = """
**How to answer — a worked example.**

*Ranking.* Suppose three storyboards A, B and C tell the same story. In B the heroine's hair changes colour
from shot to shot, C follows the plot but its images are blurry, and A is consistent and follows the plot.
For *Character consistency* you would click **A, C, B** (best first). Each criterion is judged on its own.

*A vs B.* When two storyboards are shown, answer **A is better**, **About the same** or **B is better** for
each question. If you cannot judge an item (e.g. images do not load), press **Skip** — you can come back to
skipped items at the end.
"""


def _enter_token() -> None:
    st.title("User study")
    st.write("Open the invite link you received, or paste your invite token here.")
    with st.form("study_enter"):
        token = st.text_input("Invite token", type="password", key="study_token_input")
        if st.form_submit_button("Start") and token.strip():
            st.query_params["token"] = token.strip()
            st.rerun()


def render() -> None:
    s = common.settings()
    token = st.query_params.get("token")
    if not token:
        _enter_token()
        return
    store = common.get_store(s.db_url)
    me = store.resolve_token(token)
    if me is None:
        st.title("User study")
        st.error("This invite link is not valid. Please check the link you received.")
        return
    brief = store.study_brief(token)
    progress = store.my_progress(token)
    st.title(brief.name)
    notice = st.session_state.pop("study_notice", None)
    if notice:
        st.info(notice)
    st.caption(f"Signed in as {html.escape(me.name)}")
    with st.expander("Instructions", expanded=progress.answers == 0):
        if brief.instructions:
            st.markdown(brief.instructions)
        st.markdown(EXAMPLE)
        st.markdown("**Questions:** " + "; ".join(f"*{c.label}* — {c.question}" for c in brief.criteria))

    review = st.session_state.get("study_review_skipped", False)
    item = store.next_assignment(token, include_skipped=review)
    done = progress.completed + (0 if review else progress.skipped)
    st.progress(
        min(1.0, done / max(1, progress.total)),
        text=f"{progress.completed} of {progress.total} done"
        + (f" · {progress.skipped} skipped" if progress.skipped else ""),
    )
    if item is None:
        st.success("All done — thank you! Your answers are saved; you can close this page.")
        if progress.skipped and not review:
            st.button("Review skipped items", key="study_review", on_click=_set_review)
        return
    try:
        _show_item(s, store, token, item)
    except Exception:  # a traceback could name a method or a path: log it here, show the annotator a plain message
        LOG.exception("study item %s could not be shown", item.assignment_id)
        st.error("This item could not be shown. Please skip it; the study team has been notified in the server log.")
        if st.button("Skip this item", key=f"study_skip_broken_{item.assignment_id}"):
            store.skip(token, item.assignment_id)
            st.rerun()


def _set_review() -> None:
    st.session_state["study_review_skipped"] = True


def _show_item(s, store, token: str, item) -> None:
    st.subheader(f"Item {item.position + 1} of {item.total}")
    panels = store.panels(token, item.assignment_id)  # server-side only
    catalog = runs.cached_catalog(s.runs) if s.runs else None
    views = [_load_panel(s.runs, catalog, p) for p in panels]
    prompt = next((v["prompt"] for v in views if v["prompt"]), "")
    if prompt:
        st.markdown(f"**Story prompt:** {html.escape(prompt)}")
    common.inject_css()
    cols = st.columns(len(panels))
    for col, label, view in zip(cols, item.labels, views):
        with col:
            st.markdown(f"#### Storyboard {label}")
            if not view["images"]:
                st.warning(f"Storyboard {label}: images unavailable")
                continue
            caps = [f"{label} · shot {i + 1}" for i in range(len(view["images"]))]
            st.image(view["images"], caption=caps, alt=caps, width="stretch")
            if view["script"]:
                with st.expander(f"Script of storyboard {label}"):
                    st.markdown(view["script"], unsafe_allow_html=True)
    _answer_form(store, token, item)


def _load_panel(roots: tuple[str, ...], catalog, panel) -> dict:
    """Images (bytes), script HTML and prompt of one panel; corrupted panels are scrambled and degraded."""
    out: dict = {"images": [], "script": "", "prompt": ""}
    if catalog is None:
        return out
    sb = runs.find_set(catalog, panel.source, panel.method, panel.story_id)
    if sb is None:
        return out
    shot_list = runs.cached_shots(sb, panel.story_id)
    view = common.cached_script(sb.base, panel.story_id)
    order = list(range(len(shot_list)))
    if panel.corruption_seed is not None:
        from study import corrupted_shot_order

        order = corrupted_shot_order(len(shot_list), panel.corruption_seed)
    for pos in order:
        sh = shot_list[pos]
        try:
            data = images.thumbnail(roots, sh.image, STUDY_THUMB) if sh.image else images.placeholder(STUDY_THUMB)
        except images.ImageAccessError:
            data = images.placeholder(STUDY_THUMB, "unreadable")
        if panel.corruption_seed is not None:
            data = images.degrade(data, panel.corruption_seed + pos)
        out["images"].append(data)
    if view is not None:
        parts = []
        for n, pos in enumerate(order, start=1):
            text = scripttext.shot_html(view, shot_list[pos].index)
            if text:
                parts.append(f"<p><b>Shot {n}</b><br/>{text}</p>")
        out["script"] = "".join(parts)
        out["prompt"] = view.user_prompt
    return out


def _answer_form(store, token: str, item) -> None:
    aid = item.assignment_id
    with st.form(f"study_form_{aid}"):
        answers: dict[str, object] = {}
        for c in item.criteria:
            prev = item.answered.get(c.key)
            key = f"study_q::{aid}::{c.key}"
            if c.kind == "rank":
                default = list(prev) if isinstance(prev, (tuple, list)) else None
                answers[c.key] = st.multiselect(
                    f"**{c.label}** — {c.question} Click the storyboards from best to worst.",
                    list(item.labels),
                    default=default,
                    key=key,
                    placeholder="best first…",
                )
            else:
                options = list(GSB_OPTIONS)
                answers[c.key] = st.radio(
                    f"**{c.label}** — {c.question}",
                    options,
                    index=options.index(prev) if isinstance(prev, str) and prev in options else None,
                    format_func=GSB_OPTIONS.__getitem__,
                    horizontal=True,
                    key=key,
                )
        left, right = st.columns([1, 1])
        submitted = left.form_submit_button("Save and next", type="primary")
        skipped = right.form_submit_button("Skip this item")
    if skipped:
        store.skip(token, aid)
        st.rerun()
    if not submitted:
        return
    missing = [c.label for c in item.criteria if not _complete(c.kind, answers[c.key], len(item.labels))]
    if missing:
        st.error("Please answer every question (rank all storyboards): " + ", ".join(missing))
        return
    results = store.record_item(token, aid, answers)
    if any(r.conflict for r in results.values()):
        st.session_state["study_notice"] = "An earlier answer to this item was already saved and was kept."
    st.rerun()


def _complete(kind: str, value, k: int) -> bool:
    if kind == "rank":
        return isinstance(value, list) and len(value) == k and len(set(value)) == k
    return value in GSB_OPTIONS


if __name__ == "__main__":
    render()

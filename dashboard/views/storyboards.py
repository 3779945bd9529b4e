"""Storyboards page: one story from several methods or arms side by side, shot by shot.

Why paginate: 30 shots × 8 methods is 240 images per rerun; showing a page of shots (thumbnails cached as JPEG
bytes) keeps every interaction fast, while "jump to shot" and story buttons move around without scrolling.
Deep links: ``/?group=<sweep>&story=<id>&shot=<n>`` (Storyboards is the default page) open a story at a shot.
"""

from __future__ import annotations

import html
import math

import streamlit as st

from dashboard import common, images, runs, scripttext

PER_PAGE_OPTIONS = (1, 3, 5, 10, 30)
MAX_COLUMNS = 8


def _story_key(group: str, lang: str) -> str:
    return f"sb_story::{group}::{lang}"


def _move_story(key: str, stories: list[str], step: int) -> None:
    cur = st.session_state.get(key, stories[0])
    i = stories.index(cur) if cur in stories else 0
    st.session_state[key] = stories[(i + step) % len(stories)]
    st.session_state["sb_page"] = 0


def _move_page(step: int, n_pages: int) -> None:
    st.session_state["sb_page"] = min(max(0, st.session_state.get("sb_page", 0) + step), n_pages - 1)


def _jump(per_page: int) -> None:
    shot = st.session_state.get("sb_jump")
    if shot is not None:
        st.session_state["sb_page"] = (int(shot) - 1) // per_page if shot > 0 else 0


def _init_from_query(groups: list[str]) -> None:
    """Apply a deep link (``?group=&story=&shot=``) once per distinct link; afterwards the widgets own the state."""
    qp = st.query_params
    link = (qp.get("group"), qp.get("story"), qp.get("shot"))
    if link == (None, None, None) or st.session_state.get("sb_linked") == link:
        return
    st.session_state["sb_linked"] = link
    if link[0] in groups:
        st.session_state["sb_group"] = link[0]
    st.session_state["sb_link_story"] = link[1]
    st.session_state["sb_link_shot"] = link[2]


def render() -> None:
    s = common.settings()
    st.title("Storyboards")
    if not s.runs:
        st.info("No run roots configured. Start the app with `unimage dashboard --runs DIR`.")
        return
    catalog = runs.cached_catalog(s.runs)
    for p in catalog.problems:
        st.warning(p)
    groups = catalog.groups()
    if not groups:
        st.info("No storyboards found under: " + ", ".join(s.runs))
        return
    _init_from_query(groups)

    group = str(st.sidebar.selectbox("Sweep / dataset", groups, key="sb_group"))
    langs = sorted({x.lang for x in catalog.in_group(group)})
    lang = str(st.sidebar.selectbox("Language", langs, key="sb_lang")) if len(langs) > 1 else langs[0]
    sets = catalog.in_group(group, lang)
    labels = [x.label for x in sets]
    chosen_labels = st.sidebar.multiselect(
        "Methods / arms",
        labels,
        default=labels[:MAX_COLUMNS],
        max_selections=MAX_COLUMNS,
        key=f"sb_cols::{group}::{lang}",
    )
    chosen = [x for x in sets if x.label in chosen_labels]
    if not chosen:
        st.info("Pick at least one method or arm in the sidebar.")
        return

    stories = sorted({sid for x in chosen for sid in x.stories}, key=lambda v: (len(v), v))
    skey = _story_key(group, lang)
    link_story = st.session_state.pop("sb_link_story", None)
    if link_story in stories:
        st.session_state[skey] = link_story
    if st.session_state.get(skey) not in stories:
        st.session_state[skey] = stories[0]
    nav = st.columns([1, 3, 1])
    nav[0].button("◀ Previous story", on_click=_move_story, args=(skey, stories, -1), key="sb_prev_story")
    story = str(nav[1].selectbox("Story", stories, key=skey, label_visibility="collapsed"))
    nav[2].button("Next story ▶", on_click=_move_story, args=(skey, stories, 1), key="sb_next_story")

    shot_lists = {x.key: (runs.cached_shots(x, story) if story in x.stories else []) for x in chosen}
    indices = sorted({sh.index for lst in shot_lists.values() for sh in lst})
    if not indices:
        st.warning(f"Story {story}: no shot images found.")
        return
    per_page = st.sidebar.select_slider("Shots per page", PER_PAGE_OPTIONS, value=5, key="sb_per_page")
    show_text = st.sidebar.toggle("Show script text", value=True, key="sb_text")
    n_pages = max(1, math.ceil(len(indices) / per_page))
    if st.session_state.get("sb_page_for") != (group, lang, story, per_page):
        st.session_state["sb_page_for"] = (group, lang, story, per_page)
        st.session_state["sb_page"] = 0
    link_shot = st.session_state.pop("sb_link_shot", None)
    if link_shot and str(link_shot).isdigit() and int(link_shot) in indices:
        st.session_state["sb_page"] = indices.index(int(link_shot)) // per_page
    page = min(st.session_state.get("sb_page", 0), n_pages - 1)

    st.caption(f"Story {story} · {len(indices)} shots · {len(chosen)} columns · page {page + 1} of {n_pages}")
    pager = st.columns([1, 2, 1])
    pager[0].button("◀ Previous shots", on_click=_move_page, args=(-1, n_pages), key="sb_prev_page", disabled=page == 0)
    pager[1].selectbox(
        "Jump to shot",
        indices,
        index=None,
        placeholder="Jump to shot…",
        key="sb_jump",
        on_change=_jump,
        args=(per_page,),
        label_visibility="collapsed",
    )
    pager[2].button(
        "Next shots ▶", on_click=_move_page, args=(1, n_pages), key="sb_next_page", disabled=page >= n_pages - 1
    )

    common.inject_css()
    scripts = {x.key: common.cached_script(x.base, story) if story in x.stories else None for x in chosen}
    _header(chosen, story, scripts)
    by_index = {x.key: {sh.index: sh for sh in shot_lists[x.key]} for x in chosen}
    visible = indices[page * per_page : (page + 1) * per_page]
    wanted = [sh.image for x in chosen for i in visible if (sh := by_index[x.key].get(i)) and sh.image]
    loaded = dict(zip(wanted, images.thumbnails(s.runs, wanted)))  # decoded in parallel on a first visit
    for idx in visible:
        st.markdown(f"##### Shot {idx}")
        cols = st.columns(len(chosen))
        for col, x in zip(cols, chosen):
            with col:
                sh = by_index[x.key].get(idx)
                _shot_cell(x, sh, idx, loaded)
                if show_text:
                    text = scripttext.shot_html(scripts[x.key], idx)
                    if text:
                        st.markdown(text, unsafe_allow_html=True)


def _header(chosen: list[runs.StoryboardSet], story: str, scripts: dict) -> None:
    cols = st.columns(len(chosen))
    for col, x in zip(cols, chosen):
        with col:
            st.markdown(f"**{x.label}**")
            if x.arm_dir:
                values = runs.cached_story_metrics(x.arm_dir).get(story)
                if values:
                    st.markdown(common.badges_markdown(runs.story_columns(values)))
                else:
                    st.caption("no per-story metrics")
            view = scripts.get(x.key)
            if view is not None and (view.characters or view.user_prompt):
                with st.expander("Script: prompt and characters"):
                    if view.user_prompt:
                        st.markdown(f"*{html.escape(view.user_prompt)}*", unsafe_allow_html=True)
                    for i in sorted(view.characters):
                        st.markdown(f"- **{view.display_name('Character', i)}**: {view.characters[i]}")
                    for i in sorted(view.environments):
                        st.markdown(f"- **{view.display_name('Environment', i)}**: {view.environments[i]}")
            elif view is None:
                st.caption("no script")


def _shot_cell(x: runs.StoryboardSet, sh: runs.Shot | None, idx: int, loaded: dict) -> None:
    alt = f"{x.label}, shot {idx}"
    if sh is None or sh.image is None:
        st.image(images.placeholder(text="no image"), caption=f"shot {idx}: missing", alt=alt)
        return
    data = loaded[sh.image]
    if isinstance(data, Exception):
        st.image(images.placeholder(text="unreadable"), caption=f"shot {idx}: unreadable", alt=alt)
        st.caption(str(data))
        return
    st.image(data, caption=f"shot {idx}", alt=alt, width="stretch")


if __name__ == "__main__":
    render()

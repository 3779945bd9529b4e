"""Entry point of the Streamlit app (``unimage dashboard`` runs ``streamlit run`` on this file).

Pages (``st.navigation``): Storyboards, Results, Study, Admin. An annotator who arrives with an invite link
(``/?token=...``) gets the Study page only, as the default page and with no navigation; ``--mode study`` hides the named pages for
everyone (use it for hosted studies, so that no annotator can browse storyboards with method names).
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from dashboard.common import settings

# Not named "views/": Streamlit would treat a "pages" folder beside the entry script as legacy v1 pages, listing
# and serving every page file (Storyboards included) to annotators before st.navigation takes over.
PAGES = Path(__file__).resolve().parent / "views"


def main() -> None:
    st.set_page_config(page_title="UniMAGE dashboard", page_icon=":material/movie:", layout="wide")
    s = settings()
    storyboards = st.Page(
        PAGES / "storyboards.py", title="Storyboards", icon=":material/view_column:", url_path="storyboards"
    )
    results = st.Page(PAGES / "results.py", title="Results", icon=":material/table_chart:", url_path="results")
    study = st.Page(PAGES / "study.py", title="Study", icon=":material/how_to_vote:", url_path="study")
    admin = st.Page(PAGES / "admin.py", title="Admin", icon=":material/admin_panel_settings:", url_path="admin")
    if st.query_params.get("token"):
        nav = st.navigation([study], position="hidden")
    elif s.mode == "study":
        nav = st.navigation([study, admin])
    else:
        nav = st.navigation([storyboards, results, study, admin])
    nav.run()


if __name__ == "__main__":
    main()

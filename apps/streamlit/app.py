"""Hydra's web app: the one entry file; ``hydra app`` starts Streamlit on it.

It sets the page up, checks the database, draws the sidebar (deployment name,
login, serve health) and runs the chosen page through ``st.navigation``.
Pages are scripts under ``views/`` (not ``pages/``, so Streamlit never runs
one on its own); only the files that exist are listed. Each page applies its
own viewing gate (``shell.page``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st
from streamlit.navigation.page import StreamlitPage

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # lets pages `import shell` however Streamlit was started
    sys.path.insert(0, str(HERE))

import shell  # noqa: E402

# (file, title, icon, section); Run is the default page.
PAGES = (
    ("run.py", "Run", ":material/videocam:", "Shift"),
    ("log.py", "Log", ":material/list_alt:", "Shift"),
    ("status.py", "Status", ":material/monitor_heart:", "Shift"),
    ("trends.py", "Trends", ":material/show_chart:", "Shift"),
    ("labeler.py", "Labeler", ":material/brush:", "Experts"),
    ("training_report.py", "Training report", ":material/fact_check:", "Experts"),
    ("library.py", "Library", ":material/model_training:", "Experts"),
    ("admin.py", "Admin", ":material/admin_panel_settings:", "Experts"),
)


def navigation() -> StreamlitPage:
    sections: dict[str, list] = {}
    for file, title, icon, section in PAGES:
        if not (HERE / "views" / file).is_file():
            continue
        page = st.Page(f"views/{file}", title=title, icon=icon, default=file == "run.py")
        sections.setdefault(section, []).append(page)
    return st.navigation(sections)


cfg = shell.config()
st.set_page_config(page_title=cfg.name, page_icon=":material/visibility:", layout="wide")
shell.check_database()
page = navigation()
shell.sidebar()
page.run()

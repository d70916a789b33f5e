"""pama-explorer: the Streamlit app. Declares the navigation and the shared sidebar; the pages live in views/.

(Not in pages/: Streamlit treats a pages/ folder as the old automatic multipage app until st.navigation has run once,
so a bookmarked deep link on a fresh server would show the pages without this file's sidebar.)
"""
import pama  # noqa: F401  (sets OMP_WAIT_POLICY before torch is imported anywhere)

import streamlit as st

from pama.app import reads, settings
from pama.store import StoreError, describe_url

st.set_page_config(page_title="pama-explorer", page_icon=":material/balance:", layout="wide")

PAGES = [
    st.Page("views/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("views/front.py", title="Pareto front", icon=":material/scatter_plot:"),
    st.Page("views/compare.py", title="Compare", icon=":material/compare:"),
    st.Page("views/vote.py", title="Blind vote", icon=":material/how_to_vote:"),
    st.Page("views/train.py", title="Train", icon=":material/model_training:"),
    st.Page("views/runs.py", title="Runs", icon=":material/table_rows:"),
    st.Page("views/queue.py", title="Queue", icon=":material/queue:"),
]
nav = st.navigation(PAGES)

with st.sidebar:
    st.markdown("### pama-explorer")
    st.caption("PAMA multi-objective RL on LoRA adapters: train, evaluate, explore trade-offs.")
    try:
        store = reads.store()
        counts = reads.counts()
    except StoreError as err:
        st.error(str(err))
        st.stop()
    st.caption(f"Store: `{describe_url(store.url)}`")
    c1, c2, c3 = st.columns(3)
    c1.metric("runs", counts["runs"])
    c2.metric("fronts", counts["sweeps"])
    c3.metric("points", counts["points"])
    st.text_input(
        "Generation model", key="app_model", value=settings.app_model_override() or "",
        placeholder="each point's own model",
        help="Model used by Compare and the mixture slider. Empty = the model each point was trained on. "
             "PAMA_APP_MODEL sets it for the whole app (tests use tiny-random).")
    if st.button("Refresh data", help="Re-read the store now (reads are cached for a few seconds)."):
        reads.clear()
        st.rerun()

nav.run()

"""Home: what the tool does, the store in use, counts, and the first step."""
import streamlit as st

from pama.app import reads, selection, settings
from pama.store import describe_url

store = reads.store()
st.title("pama-explorer")
st.markdown(
    "Train LoRA adapters of a small chat model with **PAMA** (multi-objective RL), one adapter per trade-off "
    "between objectives such as sentiment and conciseness. Then browse the **Pareto fronts** they form, mix "
    "adapters exactly, and compare their generations side by side.")

imported = None
if settings.demo_enabled() and not any(reads.counts().values()):
    imported = settings.import_demo(store)
    if imported:
        reads.clear()
counts = reads.counts()

st.caption(f"Store in use: `{describe_url(store.url)}` (set `PAMA_DB_URL` or `PAMA_HOME` to use another).")
c1, c2, c3 = st.columns(3)
c1.metric("Training runs", counts["runs"])
c2.metric("Fronts (sweeps)", counts["sweeps"])
c3.metric("Evaluated points", counts["points"])

if imported:
    st.success(f"The store was empty, so the shipped demo front was imported ({imported}). "
               "Open the Pareto front page to explore it.")

if counts["points"] == 0:
    st.info(
        "**The store is empty.** First step: open **Train**, keep the defaults and press *Start training* "
        "(a few minutes on CPU), or run a sweep from a terminal: `python -m pama sweep --points 3 --steps 20`. "
        "Evaluated adapters then appear on the Pareto front page.")
    st.page_link("views/train.py", label="Train an adapter", icon=":material/model_training:")
else:
    st.subheader("Where to go next")
st.page_link("views/front.py", label="Pareto front: choose objectives, click points to compare, mix two adapters",
             icon=":material/scatter_plot:")
st.page_link("views/compare.py", label="Compare: up to four models side by side on one prompt",
             icon=":material/compare:")
st.page_link("views/vote.py", label="Blind vote: pick the better of two unnamed responses; scores on the front",
             icon=":material/how_to_vote:")
st.page_link("views/train.py", label="Train: start a run or a sweep in the background and watch it",
             icon=":material/model_training:")
st.page_link("views/runs.py", label="Runs: every run's curves, config, evaluations; export or delete",
             icon=":material/table_rows:")

runs = reads.runs(limit=5)
if runs:
    st.subheader("Latest runs")
    st.dataframe(selection.runs_rows(runs), hide_index=True, column_order=["id", "name", "status", "method", "step",
                                                                    "created"])

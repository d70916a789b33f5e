"""Queue: every job of the store's queue (runs, sweeps' points and evaluations), where it stands, which worker runs
it on which device, cancel, and its log; the workers running jobs now. docs/deployment.md says how to add workers."""
import streamlit as st

from pama import jobs
from pama.app import queueview, reads
from pama.store import StoreError

store = reads.store()
st.title("Queue")
if not jobs.has_queue(store.url):
    st.info("This store has no job queue (an in-memory database): jobs start at once.")
    st.stop()
try:
    jobs.reap(store)   # dead processes failed, dead workers' jobs released, a worker started for waiting jobs
except StoreError as err:
    st.warning(f"Could not check for dead jobs: {err}")


@st.fragment(run_every=2)
def queue_table() -> None:
    rows = reads.jobs.fresh()
    if not rows:
        st.info("No jobs yet. Runs and sweeps started on the **Train** page (or `python -m pama worker` users' "
                "enqueued jobs) show up here.")
        return
    names = reads.names()
    positions = {j["id"]: p for j in rows if j["status"] == "queued"
                 and (p := jobs.queue_position(store, j["id"])) is not None}
    busy = queueview.workers(rows)
    c1, c2, c3 = st.columns(3)
    c1.metric("queued", sum(j["status"] in ("queued", "waiting") for j in rows))
    c2.metric("running", sum(j["status"] == "running" for j in rows))
    c3.metric("workers busy", len(busy))
    st.dataframe(queueview.job_rows(rows, names=names, positions=positions), hide_index=True,
                 column_config={"error": st.column_config.TextColumn("error", width="medium")})
    if busy:
        st.caption("Workers running jobs now")
        st.dataframe(busy, hide_index=True)


queue_table()

all_jobs = reads.jobs.fresh()
if all_jobs:
    by_id = {j["id"]: j for j in all_jobs}
    pick = st.selectbox("Job", list(by_id)[::-1], key="queue_pick",
                        format_func=lambda i: f"{i} · {queueview.KIND_LABEL.get(by_id[i]['kind'], by_id[i]['kind'])}"
                                              f" · {by_id[i]['status']}")
    job = reads.job.fresh(pick)
    if job is not None:
        if queueview.cancellable(job) and st.button("Cancel this job", key="queue_cancel", type="secondary"):
            if jobs.cancel_job(store, job["id"]):
                reads.clear()
                st.success(f"Cancelled job `{job['id']}`.")
            else:
                st.warning("That job had already ended.")
        if job.get("error"):
            st.error(job["error"])
        text = jobs.tail(job["log"] or "", lines=40) if job.get("log") else ""
        with st.expander("Log", expanded=job["status"] in ("running", "failed")):
            st.code(text or f"(no log on this machine: {job.get('log') or 'none'}; it is on the worker's host)")

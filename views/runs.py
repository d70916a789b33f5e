"""Runs: every training run with status and filters; one run's curves, config and evaluations; export; delete."""
import streamlit as st

from pama import jobs, plots
from pama.app import deletion, exports, reads, selection
from pama.app.settings import UIError
from pama.store import RUN_STATUSES, StoreError

store = reads.store()
st.title("Runs")
if st.session_state.get("runs_deleted"):
    st.success(st.session_state.pop("runs_deleted"))
try:
    if jobs.reap(store):
        reads.clear()
except StoreError as err:
    st.warning(f"Could not check for dead runs: {err}")

runs = reads.runs()
if not runs:
    st.info("No runs yet. Start one on the **Train** page or with `python -m pama train --steps 5`.")
    st.page_link("views/train.py", label="Go to Train", icon=":material/model_training:")
    st.stop()

f1, f2, f3 = st.columns([2, 2, 3])
statuses = f1.multiselect("Status", RUN_STATUSES, key="runs_status")
methods = f2.multiselect("Method", sorted({r.method for r in runs}), key="runs_method")
text = f3.text_input("Search id / name / model", key="runs_text")
shown = selection.filter_runs(runs, statuses=statuses or None, methods=methods or None, text=text)
st.dataframe(selection.runs_rows(shown), hide_index=True,
             column_config={"error": st.column_config.TextColumn("error", width="medium")})
if not shown:
    st.info("No run matches the filters.")
    st.stop()

by_id = {r.id: r for r in shown}
run_id = st.selectbox("Run", list(by_id), key="runs_pick",
                      format_func=lambda i: f"{by_id[i].name} · {by_id[i].status} · {i}")
# the chosen run's details are read now (its progress moves while the list above may be a few seconds old)
run = reads.run.fresh(run_id)
if run is None:
    st.warning("That run was just deleted.")
    reads.clear()
    st.stop()

metrics = reads.metrics.fresh(run_id)
prog = jobs.progress(run, [m for m in metrics if m["key"] == "time/step"],
                     position=jobs.queue_position(store, run.id) if run.status == "queued" else None)
st.markdown(f"### {run.name}")
st.caption(f"`{run.id}` · {run.method} · {run.model} · status **{run.status}**"
           + (f" ({prog['phase']})" if prog["position"] else "") + " · step "
           f"{run.step}/{run.total_steps}" + (f" · ETA {prog['eta']}" if prog["active"] else ""))
if run.status == "failed":
    st.error(f"Failed: {run.error or 'no message'}")
elif run.status == "cancelled":
    st.warning(f"Cancelled at step {run.step}. Resume with `python -m pama train --resume {run_id}`.")
if prog["active"]:
    st.progress(prog["fraction"])
if run.sweep_id:  # a sweep evaluates its runs after training them: its evaluation progress, while it runs
    sweep = next((s for s in reads.sweeps.fresh() if s.id == run.sweep_id), None)
    sprog = jobs.sweep_progress(sweep, reads.runs.fresh(sweep_id=sweep.id)) if sweep and sweep.active else None
    if sprog is not None and sprog.get("evaluation") is not None:
        st.progress(sprog["evaluation"]["fraction"], text=f"Sweep {sweep.name}: evaluating, "
                    + sprog["evaluation"]["text"])
    elif sprog is not None:
        st.caption(f"Sweep {sweep.name}: {sprog['phase']}")
    if st.button("Cancel this run", key="runs_cancel"):
        jobs.cancel(store, run_id)
        reads.clear()
        st.rerun()

tab_curves, tab_config, tab_evals, tab_export, tab_delete = st.tabs(
    ["Curves", "Config", "Evaluations", "Export", "Delete"])
obj_names = run.objective_names

with tab_curves:
    if not metrics:
        st.info("No metrics logged yet (the first step is still running, or the run failed before it).")
    else:
        if plots.live_table(metrics):  # the run evaluated itself every few steps (live_eval_every)
            st.plotly_chart(plots.live_front_figure(metrics, obj_names), key="runs_live")
            st.caption("Held-out means on a few fixed prompts every `live_eval_every` steps, coloured by step: a "
                       "conditioned run at both ends and the middle of the simplex, a plain run at its own "
                       "preference; the star is the base model.")
        c1, c2 = st.columns(2)
        c1.plotly_chart(plots.reward_curves_figure(metrics, obj_names), key="runs_rewards")
        c2.plotly_chart(plots.weights_figure(metrics, obj_names), key="runs_weights")
        c3, c4 = st.columns(2)
        c3.plotly_chart(plots.metric_figure(metrics, ["kl", "beta"], title="KL to the base model and β"),
                        key="runs_kl")
        c4.plotly_chart(plots.metric_figure(metrics, ["loss/policy", "loss/value"], title="Losses"),
                        key="runs_loss")
        c5, c6 = st.columns(2)
        c5.plotly_chart(plots.metric_figure(metrics, ["response_length"], title="Mean response length (tokens)"),
                        key="runs_length")
        c6.plotly_chart(plots.metric_figure(metrics, ["eos_fraction"], title="Share of responses ending on EOS",
                                            yaxis="share"), key="runs_eos")

with tab_config:
    st.json(run.config, expanded=True)
    st.caption("Objectives: " + ", ".join(f"{o.name} [{o.lower:g}, {o.upper:g}]" for o in run.objectives))
    st.caption(f"Adapter: `{run.adapter_path or 'not saved yet'}`")

with tab_evals:
    pts = reads.points.fresh(run_id=run_id)
    if not pts:
        st.info("This run's adapter has not been evaluated yet (sweeps evaluate every adapter they train).")
    else:
        rows = []
        # blind votes are scored within the sweep (the points they were compared with)
        vscore = reads.vote_scores(reads.votes(sweep_id=run.sweep_id)) if run.sweep_id else {}
        for p in pts:
            row = {"point": p.id, "kind": p.kind, "label": p.label}
            row.update({o: str(v) for o, v in p.values.items()})   # mean [95% interval]
            row["KL"] = p.kl
            vs = vscore.get(p.id) or {}
            row["votes"] = vs.get("votes", 0)
            row["win rate"] = None if vs.get("win_rate") is None else round(vs["win_rate"], 3)
            row["BT score"] = None if vs.get("score") is None else round(vs["score"], 3)
            rows.append(row)
        st.dataframe(rows, hide_index=True)
        pid = st.selectbox("Samples of point", [p.id for p in pts], key="runs_samples_point")
        gens = reads.generations.fresh(pid, limit=20)
        for g in gens:
            with st.container(border=True):
                st.caption(f"#{g['prompt_index']} · " + " · ".join(f"{k} {float(v):.3f}"
                                                                    for k, v in (g.get("scores") or {}).items()))
                st.text(g["prompt"])
                st.code(g["text"] or "(empty response)", language=None, wrap_lines=True)

with tab_export:
    st.download_button("Metrics (CSV)", exports.metrics_csv(metrics), file_name=f"{run_id}-metrics.csv",
                       mime="text/csv", key="runs_csv")
    st.download_button("Run, metrics and evaluations (JSON)", exports.run_json(store, run_id),
                       file_name=f"{run_id}.json", mime="application/json", key="runs_json")

with tab_delete:
    victims = deletion.deletable_paths(run)
    st.markdown("Deleting removes the run, its metrics, its evaluated points (and mixtures using it) from the "
                "store" + (", and these folders:" if victims else "; it has no files under the checkpoints root."))
    for v in victims:
        st.code(str(v), language=None)
    confirm = st.checkbox(f"Yes, delete run {run_id} permanently", key=f"runs_confirm_{run_id}")
    if st.button("Delete run", type="primary", disabled=not confirm, key="runs_delete"):
        try:
            removed = deletion.delete_run(store, run_id)
        except UIError as err:
            st.error(str(err))
        else:
            reads.clear()
            st.session_state.pop("runs_pick", None)
            st.session_state["runs_deleted"] = f"Deleted run {run_id}" + (
                f" and {len(removed)} folder(s)." if removed else ".")
            st.rerun()

"""Train: a form that starts a background training run (or a sweep) and live progress read from the store."""
import streamlit as st

from pama import jobs, objectives, plots
from pama.app import forms, reads
from pama.app.settings import UIError, default_model
from pama.config import (DEFAULT_OBJECTIVES, DEFAULT_PREFERENCE, METHODS, TRL_AGGREGATIONS, ConfigError, SweepConfig,
                         TrainConfig)
from pama.sampling import bf16_native
from pama.records import RunRecord, SweepRecord
from pama.store import StoreError

BF16_SLOW = ("This CPU has no bfloat16 instructions (AVX512-BF16 or AMX): bfloat16 base weights run on a slow "
             "fall-back here, slower than float32.")
store = reads.store()
st.title("Train")
DEFAULTS = TrainConfig()
SWEEP_DEFAULTS = SweepConfig()

with st.form("train_form"):
    st.markdown("**What to train**")
    c1, c2 = st.columns(2)
    model = c1.text_input("Model", value=default_model(), key="tf_model",
                          help="smollm2-135m (embedded, offline), tiny-random (seconds; for trying the app), "
                               "or a local model folder.")
    method = c2.selectbox("Method", METHODS, key="tf_method",
                          help="pama: closed-form combination of objectives; morlhf: linear scalarisation; "
                               "mgda: min-norm gradient weights; trl-grpo: TRL's GRPOTrainer with reward_weights = "
                               "the preference (fixed β, no conditioned adapter: docs/PAMA_SPEC.md).")
    chosen = st.multiselect("Objectives", objectives.available(), key="tf_objectives",
                            default=[o for o in DEFAULT_OBJECTIVES if o in objectives.available()])
    extra = st.text_area("More objectives (one spec per line, optional)", key="tf_extra", height=68,
                         placeholder="length:target=30,unit=words\nhf:<local reward model folder>",
                         help="Built-ins with parameters, or hf: reward models. py: objectives run code and are "
                              "accepted only from config files and the command line.")
    p1, p2 = st.columns(2)
    preset = p1.selectbox("Preset", forms.PRESET_CHOICES, key="tf_preset",
                          help="paper-exp1: the paper's first experiment (positive sentiment + length on review "
                               "prompts, λ = 1, β 0.2 → target KL 3, 4 PPO epochs); it replaces the fields it sets "
                               "(objectives, anchor, ...) but keeps the method and model picked (docs/PAMA_SPEC.md).")
    aggregation = p2.selectbox("Aggregation (trl-grpo)", TRL_AGGREGATIONS, key="tf_aggregation",
                               help="How TRL's GRPO combines the objectives: sum_then_normalize (weighted sum, then "
                                    "normalised per prompt group) or normalize_then_sum (each objective normalised "
                                    "first). Used by method trl-grpo only.")
    st.markdown("**Trade-off**")
    mode = st.radio("Train", forms.MODES, horizontal=True, key="tf_mode",
                    help="A sweep grid trains one adapter per preference. One conditioned adapter (pama or morlhf) "
                         "learns the whole front at once and is then evaluated along a preference grid; the Pareto "
                         "front page draws it as a curve with a live preference slider (docs/conditioned.md). With no "
                         "preset, its fields left at their defaults take the quick-front recipe (56 steps at 128 "
                         "tokens, λ 0.3, evaluation stopping once the ends are apart: docs/fronts.md).")
    c1, c2, c3, c4 = st.columns([3, 2, 2, 2])
    preference = c1.text_input("Preference (one weight per objective)", key="tf_preference",
                               value=", ".join(f"{p:g}" for p in DEFAULT_PREFERENCE),
                               placeholder="e.g. 0.7, 0.3 — empty = uniform",
                               help="Non-negative weights, one per objective in the order above; normalised to sum "
                                    "to 1. Used for 'one preference'.")
    points = c2.number_input("Grid points per edge (sweep)", value=3, step=1, key="tf_points",
                             help="A sweep trains one adapter per preference on a simplex grid, then evaluates "
                                  "each on held-out prompts.")
    eval_samples = c4.number_input("Held-out prompts per point (sweep)", value=SWEEP_DEFAULTS.eval_samples, step=8,
                                   key="tf_eval_samples",
                                   help="Each adapter of a sweep is evaluated on this many held-out prompts (95% "
                                        "bootstrap CIs); fewer is quicker on CPU.")
    anchor = c3.number_input("Anchor λ", value=float(DEFAULTS.anchor), step=0.1, format="%.2f", key="tf_anchor",
                             help="PAMA anchor in [0, 1]: 1 = the paper's PAMA (ignores the preference), 0 = linear "
                                  "scalarisation with the preference.")
    st.markdown("**Budget**")
    c1, c2, c3, c4, c5, c6 = st.columns(6)
    steps = c1.number_input("Steps", value=int(DEFAULTS.steps), step=1, key="tf_steps",
                            help="PPO steps; ~10-12 s each on 2 CPU cores with smollm2-135m at these defaults, so "
                                 "the default is about 10 minutes (docs/learnability.md).")
    batch = c2.number_input("Batch size", value=int(DEFAULTS.batch_size), step=1, key="tf_batch")
    new_tokens = c3.number_input("Max new tokens", value=int(DEFAULTS.max_new_tokens), step=8, key="tf_tokens")
    rank = c4.number_input("LoRA rank", value=int(DEFAULTS.lora_r), step=1, key="tf_rank")
    lr = c5.number_input("Learning rate", value=float(DEFAULTS.learning_rate), step=1e-5, format="%.1e",
                         key="tf_lr")
    dtype = c6.selectbox("Base weights", ["float32", "bfloat16"], key="tf_dtype",
                         help="bfloat16 halves the memory traffic of the frozen base model: ~1.25× faster steps "
                              "on CPUs with bf16 instructions (AVX512-BF16, AMX) and on GPUs. The adapter stays "
                              "float32.")
    bf16_slow = not bf16_native()
    if bf16_slow:
        st.caption(BF16_SLOW)
    st.markdown("**Reporting**")
    r1, r2 = st.columns([3, 2])
    report_to = r1.multiselect("Also report to", ["tensorboard", "mlflow"], default=list(DEFAULTS.report_to),
                               key="tf_report_to",
                               help="TensorBoard event files under $PAMA_HOME/tensorboard/<run>; MLflow at "
                                    "MLFLOW_TRACKING_URI (default sqlite:///$PAMA_HOME/mlflow.db). The run store "
                                    "always keeps the metrics.")
    live_every = r2.number_input("Live front every K steps (0 = off)", value=int(DEFAULTS.live_eval_every),
                                 min_value=0, step=1, key="tf_live_every",
                                 help="Evaluate the policy on a few fixed held-out prompts every K steps (a "
                                      "conditioned adapter at both ends and the middle) and draw the points moving "
                                      "below and on Runs (docs/performance.md gives the cost).")
    name = st.text_input("Run name (optional)", key="tf_name")
    submitted = st.form_submit_button("Start training", type="primary")

if submitted:
    sweep = forms.mode_is_sweep(mode)
    form = dict(name=name, model=model.strip(), objectives=forms.split_objectives(chosen, extra), method=method,
                preset=preset, aggregation=aggregation, preference=preference, anchor=float(anchor),
                steps=int(steps), batch_size=int(batch),
                max_new_tokens=int(new_tokens), lora_r=int(rank), lora_alpha=2 * int(rank),
                learning_rate=float(lr), dtype=dtype, report_to=list(report_to), live_eval_every=int(live_every))
    if sweep:
        form.update(points=int(points), eval_samples=int(eval_samples))
    if forms.mode_is_conditioned(mode):
        form.update(conditioned=True)
        form.pop("points")   # a conditioned sweep evaluates along pareto.conditioned_grid (11 points for two)
    try:
        cfg = forms.build_train_config(form, sweep=sweep)
    except (ConfigError, UIError, ValueError) as err:
        st.error(f"Nothing was started. {err}\n\nFix the fields above and submit again.")
    else:
        if sweep and not jobs.sweep_available():
            st.error("Sweeps are not available in this installation (pama.sweep is missing). Train one preference "
                     "at a time instead.")
        else:
            try:
                with st.spinner("Starting the background process…"):
                    job = (jobs.start_sweep if sweep else jobs.start_train)(cfg, store=store)
            except jobs.JobError as err:
                st.error(str(err))
            else:
                st.session_state.setdefault("sweep_watch" if sweep else "train_watch", []).append(job.id)
                reads.clear()
                where = (f"pid {job.pid}" if job.pid else jobs.queue_phase(store, job.id) or "queued")
                st.success(f"Started {'sweep' if sweep else 'run'} `{job.id}` in the background ({where}, log "
                           f"`{job.log}`). It keeps running if you close this tab; progress is below and on Runs.")
                if dtype == "bfloat16" and bf16_slow:
                    st.warning(BF16_SLOW)


def draw_run(run: RunRecord) -> None:
    metrics = reads.metrics.fresh(run.id) if run.step else []
    prog = jobs.progress(run, [m for m in metrics if m["key"] == "time/step"],
                         position=jobs.queue_position(store, run.id) if run.status == "queued" else None)
    with st.container(border=True):
        h1, h2 = st.columns([4, 1])
        where = jobs.where_running(run.id) if run.status == "running" else None
        h1.markdown(f"**Run: {run.name}**  \n`{run.id}` · {run.method} · {run.model} · *{prog['phase']}*"
                    + (f" · {where}" if where else ""))
        if prog["active"]:
            h2.button("Cancel", key=f"cancel_{run.id}", on_click=jobs.cancel, args=(store, run.id))
        st.progress(prog["fraction"], text=f"step {prog['step']}/{prog['total']}"
                    + (f" · ETA {prog['eta']}" if prog["active"] else "")
                    + (f" · {prog['seconds_per_step']:.1f} s/step" if prog["seconds_per_step"] else ""))
        if run.status == "failed":
            st.error(f"Failed: {run.error or 'no message'}")
        elif run.status == "cancelled":
            st.warning(f"Cancelled. Resume it from a terminal with `python -m pama train --resume {run.id}`.")
        elif run.status == "finished":
            st.success("Finished. Its adapter is saved; evaluate it in a sweep or compare it on Compare.")
        if run.step:
            g1, g2 = st.columns(2)
            objs = run.config.get("objectives")
            g1.plotly_chart(plots.reward_curves_figure(metrics, objs, height=280), key=f"rw_{run.id}")
            g2.plotly_chart(plots.weights_figure(metrics, objs, height=280), key=f"wt_{run.id}")
            if plots.live_table(metrics):  # live_eval_every: the front forming, step by step
                st.plotly_chart(plots.live_front_figure(metrics, objs, height=360), key=f"live_{run.id}")


def draw_sweep(sweep: SweepRecord, runs: list[RunRecord]) -> None:
    prog = jobs.sweep_progress(sweep, runs,
                               position=jobs.queue_position(store, sweep.id) if sweep.status == "queued" else None)
    with st.container(border=True):
        h1, h2 = st.columns([4, 1])
        h1.markdown(f"**Sweep: {sweep.name}**  \n`{sweep.id}` · {sweep.method} · {sweep.model} · *{prog['phase']}*")
        if prog["active"]:
            h2.button("Cancel sweep", key=f"cancel_sweep_{sweep.id}", on_click=jobs.cancel_sweep,
                      args=(store, sweep.id))
        st.progress(prog["fraction"], text=f"{prog['done']}/{prog['total']} adapters trained")
        ev = prog.get("evaluation")
        if ev is not None:  # evaluating: points, prompts of the current point(s), elapsed, ETA (sweep.EvalProgress)
            st.progress(ev["fraction"], text="evaluation: " + ev["text"])
        if sweep.status == "failed":
            st.error("Failed. " + str(sweep.summary.get("error") or "See the sweep's runs on Runs."))
        elif sweep.status == "cancelled":
            st.warning(f"Cancelled. Resume it with `python -m pama sweep --resume {sweep.id}`.")
        elif sweep.status == "finished":
            st.success("Finished: every adapter is trained and evaluated. See it on the Pareto front page.")
        if prog["current"] is not None:
            draw_run(prog["current"])


def progress_panel() -> None:
    try:
        jobs.reap(store)
    except StoreError:
        pass
    # the live view reads the store now (not through the few-seconds cache)
    sweeps = {s.id: s for s in reads.sweeps.fresh() if s.active or s.id in st.session_state.get("sweep_watch", [])}
    active = reads.runs.fresh(status="running") + reads.runs.fresh(status="queued")
    watched = [r for r in (reads.run.fresh(i) for i in st.session_state.get("train_watch", [])) if r]
    runs = {r.id: r for r in active + watched if r.sweep_id not in sweeps}
    if not runs and not sweeps:
        st.caption("No training is running. Runs started here (or from a terminal) appear below while they run.")
        return
    for sw in sorted(sweeps.values(), key=lambda s: s.created_at, reverse=True):
        draw_sweep(sw, reads.runs.fresh(sweep_id=sw.id))
    for run in sorted(runs.values(), key=lambda r: r.created_at, reverse=True):
        draw_run(run)
    still = any(r.active for r in runs.values()) or any(s.active for s in sweeps.values())
    if not still and st.session_state.get("train_polling"):
        st.session_state["train_polling"] = False
        st.rerun()  # everything ended: stop polling


st.subheader("Progress")
polling = bool(reads.runs.fresh(status="running") or reads.runs.fresh(status="queued")
               or any(s.active for s in reads.sweeps.fresh()))
st.session_state["train_polling"] = polling
st.fragment(run_every=2.0 if polling else None)(progress_panel)()

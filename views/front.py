"""Pareto front: choose sweeps, methods and objectives; click points to compare; mix two adapters exactly."""
import streamlit as st

from pama import plots, report
from pama import votes as V
from pama.app import exports, hosting, lengths, reads, selection, steering, tradeoff
from pama.app.settings import GENERATION_MAX_NEW_TOKENS, MAX_COMPARE, QUICK_PROMPTS, UIError
from pama.prompts import PromptError, load_prompts
from pama.store import StoreError

store = reads.store()
st.title("Pareto front")

points_all = reads.points()
sweeps = reads.sweeps()
if not points_all:
    st.info("No fronts yet: no evaluated point is in the store. Train adapters on the **Train** page (choose "
            "*sweep grid* to get a whole front), or run `python -m pama sweep` in a terminal.")
    st.page_link("views/train.py", label="Go to Train", icon=":material/model_training:")
    st.stop()

sweep_by_id = {s.id: s for s in sweeps}
NO_SWEEP = "(points outside a sweep)"
sweep_options = [s.id for s in sweeps] + ([NO_SWEEP] if any(p.sweep_id is None for p in points_all) else [])
default_sweeps = [sweeps[-1].id] if sweeps else sweep_options[:1]

c1, c2, c3 = st.columns([2, 1.4, 2])
chosen_sweeps = c1.multiselect(
    "Sweeps (fronts)", sweep_options, default=default_sweeps, key="front_sweeps",
    format_func=lambda s: s if s == NO_SWEEP else f"{sweep_by_id[s].name} · {sweep_by_id[s].method} "
                                                  f"({sweep_by_id[s].status})")
in_sweeps = [p for p in points_all
             if (p.sweep_id in chosen_sweeps) or (p.sweep_id is None and NO_SWEEP in chosen_sweeps)]
methods = selection.methods_of(in_sweeps)
chosen_methods = c2.multiselect("Methods", methods, default=methods, key="front_methods")
objectives = selection.objectives_of(in_sweeps, [o for s in chosen_sweeps if s in sweep_by_id
                                                  for o in sweep_by_id[s].objectives])
# blind votes between these points (the Blind vote page): a Bradley–Terry score per point, usable as an axis
votes = reads.votes(point_ids=tuple(sorted(p.id for p in in_sweeps)))
score = reads.vote_scores(votes)
if any(s.get("score") is not None for s in score.values()):
    objectives = objectives + [V.SCORE_NAME]
chosen_objs = c3.multiselect("Objectives (2 or 3)", objectives, default=objectives[:2], max_selections=3,
                             key="front_objectives")
o1, o2, o3, o4, o5 = st.columns(5)
show_base = o1.checkbox("Base model", value=True, key="front_base")
show_mix = o2.checkbox("Mixtures", value=True, key="front_mix")
error_bars = o3.checkbox("95% CI error bars", value=True, key="front_ci")
view3d = "pairwise panels"
if len(chosen_objs) == 3:
    view3d = o4.radio("3 objectives as", ["pairwise panels", "3-D"], horizontal=True, key="front_view")
colour_votes = o5.checkbox("Colour by vote score", key="front_colour_votes", disabled=not votes,
                           help="Bradley–Terry score of the blind votes cast on the Blind vote page (grey: no votes "
                                "yet). The score can also be chosen as an objective (axis) above.")

length_on = st.toggle("Control for answer length", key="front_length",
                      help="Plot each score with the part that answer length explains removed (pooled regression on "
                           "log length, at the base model's length; docs/fronts.md). An objective that is length "
                           "itself stays raw and says so.")
shown = selection.filter_points(in_sweeps, methods=chosen_methods, include_base=show_base, include_mixtures=show_mix)
lv = lengths.view(shown, chosen_objs, [sweep_by_id[s] for s in chosen_sweeps if s in sweep_by_id])
lkw = dict(is_length=lv.is_length, **(dict(controlled=lv.controlled, axis_titles=lv.titles) if length_on else {}))
for text in lv.warnings:
    st.warning(text, icon=":material/straighten:")
if lv.shares:
    st.caption("Answer length across the front: " + " | ".join(lv.shares))
shown = V.as_objective(shown, score)
by_id = {p.id: p for p in shown}
if len(chosen_sweeps) > 1:
    def group(p):
        name = sweep_by_id[p.sweep_id].name if p.sweep_id in sweep_by_id else "no sweep"
        return f"{name}: {plots.group_of(p)}" if p.kind != "base" else "base model"
else:
    group = plots.group_of

# the objectives' bounds as the sweeps' runs stored them (each run record carries its objectives)
bounds = selection.objective_bounds(chosen_objs, [r for s in chosen_sweeps if s in sweep_by_id
                                                  for r in reads.runs(sweep_id=s)])
selected_now = st.session_state.get("front_pick", [])

if len(chosen_objs) < 2:
    st.warning("Choose at least two objectives to draw a front.")
    fig = None
elif len(chosen_objs) == 3 and view3d == "3-D":
    fig = plots.front_figure_3d(shown, chosen_objs, bounds=bounds, selected=selected_now, group=group, **lkw)
else:
    fig = plots.front_figure(shown, chosen_objs, bounds=bounds, selected=selected_now, group=group,
                             error_bars=error_bars, colour_title=V.SCORE_NAME,
                             colour_by={i: s["score"] for i, s in score.items()} if colour_votes else None,
                             **lkw)

# ------------------------------------------------------------------------------------------ the preference slider
# a conditioned run's points are one curve (plots.group_of / front_data); its adapter generates at any preference
chart_slot = st.container()   # the plot goes here, drawn below (with the slider's × once its text is there)
live = None


@st.cache_resource(show_spinner=False)
def _generation_pool():
    """One background thread for the slider's generations (the host's lock serialises them anyway)."""
    from concurrent.futures import ThreadPoolExecutor  # only when a conditioned run is shown

    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="pama-slider")


def _start_generation(key, host, prompt, p, seed, max_new) -> None:
    """Queue the slider's generation for ``key`` (once); a queued one for another key, not started yet, is dropped.

    Called at the end of the page: by then this run has imported what it needs, and the modules the generation needs
    (torch, transformers, peft) are imported here first, in the script's thread. transformers' lazy imports are not
    thread-safe: a first import in the background thread while the page imported ``pama.report`` failed once with
    "cannot import name 'AutoModel' from 'transformers'"."""
    pending = st.session_state.setdefault("cond_pending", {})
    if key in pending or key in st.session_state.get("cond_results", {}):   # running, or done in the meantime
        return
    import peft  # noqa: F401  heavy: torch, transformers; imported here, not first in the background thread
    from pama import conditioning  # noqa: F401  heavy: torch
    for other, fut in list(pending.items()):
        if fut.cancel():
            pending.pop(other)
    pending[key] = _generation_pool().submit(host.generate_at, store, prompt, p, seed=seed, max_new_tokens=max_new)


def _generation_status(key, label: str) -> None:
    """The generation's placeholder, polled: 'Generating…' until the background call ends, then its result (or error)
    goes into ``cond_results`` and the whole page reruns, which draws the text and the × on the plot."""
    fut = st.session_state.get("cond_pending", {}).get(key)
    if fut is None and (st.session_state.get("cond_queued") or (None,))[0] != key:
        return
    if fut is None or not fut.done():   # queued at the end of this page's run, or running
        st.caption(f":material/hourglass_top: Generating at {label}… (the plot and the rest of the page work "
                   "meanwhile)")
        return
    st.session_state["cond_pending"].pop(key, None)
    if key == (st.session_state.get("cond_queued") or [0])[0]:   # queued again by the run this fragment is part of
        st.session_state.pop("cond_queued")
    try:
        st.session_state.setdefault("cond_results", {})[key] = fut.result()
    except (UIError, ValueError, StoreError, ImportError, OSError, RuntimeError) as err:
        st.session_state.setdefault("cond_results", {})[key] = {"error": str(err) or type(err).__name__}
    st.rerun()


cond_runs = steering.conditioned_runs(in_sweeps)
if cond_runs:
    with st.container(border=True):
        st.markdown("**Preference slider**: one conditioned adapter, any trade-off, generated now (× on the plot)")
        s1, s2 = st.columns([2, 3])
        run_id = s1.selectbox("Conditioned adapter", list(cond_runs), key="cond_run",
                              format_func=lambda r: f"{cond_runs[r]['label']} [{r}]")
        info = cond_runs[run_id]
        run_rec = reads.run(run_id)
        objs = list((run_rec.config if run_rec else {}).get("objectives") or info["objectives"])
        p = None
        if len(objs) == 2:
            w = s2.slider(f"Weight of {objs[0]} (the rest goes to {objs[1]})", 0.0, 1.0, 0.5, 0.05, key="cond_p")
            p = steering.two_objective_preference(w)
        else:   # linked weights: moving one rescales the others (steering.rebalance), so what is shown is used
            keys = [f"cond_w_{k}" for k in range(len(objs))]
            shown_w = steering.linked_weights([st.session_state.get(k) for k in keys], len(objs))
            for k, v in zip(keys, shown_w):
                if st.session_state.get(k) != v:
                    st.session_state[k] = v

            def _linked(moved: int) -> None:
                for k, v in zip(keys, steering.rebalance([st.session_state[k] for k in keys], moved)):
                    st.session_state[k] = v

            for k, (c, o) in enumerate(zip(s2.columns(len(objs)), objs)):
                c.slider(o, 0.0, 1.0, step=steering.LINKED_STEP, key=keys[k], on_change=_linked, args=(k,),
                         help="The weights are linked: they always sum to 1. Moving one keeps the value you set and "
                              "shares the rest among the others in proportion to their weights.")
            p = [float(st.session_state[k]) for k in keys]
        s2.caption("Preference: " + (steering.preference_text(objs, p) if p else "none"))
        source = s1.radio("Prompt", ["held-out set", "my own"], horizontal=True, key="cond_source")
        try:
            heldout = load_prompts("builtin:heldout")
        except PromptError:
            heldout = []
        if source == "held-out set" and heldout:
            prompt = s1.selectbox("Held-out prompt", heldout, key="cond_prompt_pick")
        else:
            prompt = s1.text_area("Your prompt", key="cond_prompt_text", max_chars=2000,
                                  placeholder="Write a short review of a café.")
        g1, g2 = s2.columns(2)
        seed = g1.number_input("Seed", 0, 2**31 - 1, 0, key="cond_seed")
        max_new = g2.number_input("Max new tokens", 1, 256, GENERATION_MAX_NEW_TOKENS, key="cond_max_new")
        app_model = st.session_state.get("app_model") or ""
        results = st.session_state.setdefault("cond_results", {})
        key = (run_id, tuple(round(x, 4) for x in p or ()), prompt, int(seed), int(max_new), app_model)
        if p and (prompt or "").strip() and key not in results:
            # generated in the background (model load included), started at the end of the page: the plot, the
            # table and the controls are drawn at once; the fragment below shows the text when it is done and reruns
            # the page to mark the ×
            host = hosting.conditioned_host(run_id, hosting.model_for(info, app_model))
            st.session_state["cond_queued"] = (key, host, prompt, p, int(seed), int(max_new))
        res = results.get(key)
        if res and res.get("error"):
            st.error(f"Could not generate with this adapter: {res['error']}")
        elif key in st.session_state.get("cond_pending", {}) or key == (st.session_state.get("cond_queued") or [0])[0]:
            st.fragment(run_every=0.5)(_generation_status)(key, steering.preference_text(objs, p))
        elif res:
            st.code(res["text"] or "(empty response)", language=None, wrap_lines=True)
            st.caption("Scores: " + (" · ".join(f"{o} {v:.3f}" for o, v in res["scores"].items()) or "none"))
            for problem in res.get("problems", []):
                st.warning(problem)
            live = steering.live_point(run_id, p, res["scores"],
                                       label=f"{info['label']} @ ({steering.preference_text(objs, p)}), live")
        elif not (prompt or "").strip():
            st.caption("Type a prompt to generate.")

if fig is not None and live is not None and len(chosen_objs) == 2:
    if not plots.add_live_point(fig, live, chosen_objs, name="live generation (×)"):
        st.caption("The live generation has no score on both plotted objectives, so it is not on the plot.")

# your trade-off, fitted from the blind votes (pama/app/tradeoff.py): a ★ on the plot, the slider button
tradeoff.front_panel(fig, shown, votes, chosen_objs, sweep_by_id, cond_runs)

clicked: list[str] = []
if fig is not None:
    with chart_slot:
        if len(chosen_objs) == 3 and view3d == "3-D":
            st.plotly_chart(fig, key="front_chart_3d")
            st.caption("3-D view: drag to rotate; pick points for comparison below.")
        else:
            event = st.plotly_chart(fig, key="front_chart", on_select="rerun", selection_mode="points")
            clicked = selection.selected_point_ids(event)
            st.caption("Click a point (shift-click for several) to select it for comparison; hover for its "
                       "configuration. Faded points are dominated; lines join each method's front (a "
                       "conditioned adapter's points in preference order).")

# the plot's selection drives the picker (the picker also works alone: keyboard, tests)
if clicked and clicked != st.session_state.get("front_last_click"):
    st.session_state["front_last_click"] = clicked
    st.session_state["front_pick"] = selection.merge_selection(selected_now, clicked, valid=by_id)
elif "front_pick" in st.session_state:
    st.session_state["front_pick"] = [i for i in st.session_state["front_pick"] if i in by_id]

picked = st.multiselect("Selected points (up to four)", list(by_id), key="front_pick",
                        max_selections=MAX_COMPARE,
                        format_func=lambda i: selection.point_label(by_id[i], sweeps=sweep_by_id))
b1, b2 = st.columns([1, 3])
if b1.button("Compare selected", type="primary", disabled=not picked, key="front_compare"):
    st.session_state["compare_ids"] = list(picked)
    st.switch_page("views/compare.py")

# ------------------------------------------------------------------------------------------ exact mixtures
adapters_picked = [by_id[i] for i in picked if by_id[i].kind == "adapter" and by_id[i].run_id]
with st.expander("Mix two selected adapters", expanded=len(adapters_picked) == 2):
    if len(adapters_picked) != 2:
        st.info("Select exactly two trained adapters (circles) on the plot to mix them: the mixture "
                "(1 − t)·ΔW_A + t·ΔW_B is exact, and is evaluated on a few held-out prompts so that it appears "
                "on the plot as a diamond.")
    else:
        a, b = adapters_picked
        st.markdown(f"**A** = `{a.label}` · **B** = `{b.label}`")
        t = st.slider("t: weight of B (0 = A alone, 1 = B alone)", 0.0, 1.0, 0.5, 0.05, key="mix_t")
        n_prompts = st.number_input("Held-out prompts per mixture", 2, 64, QUICK_PROMPTS, key="mix_n",
                                    help="Few prompts keep it quick on CPU; the CI error bars show the uncertainty.")
        m1, m2 = st.columns(2)
        queue = st.session_state.setdefault("mix_queue", [])
        if m1.button(f"Evaluate the mixture at t = {t:.2f}", key="mix_one"):
            queue.append((a["id"], b["id"], float(t)))
        if m2.button("Evaluate the path t = 0.25, 0.5, 0.75", key="mix_path"):
            queue.extend((a["id"], b["id"], x) for x in (0.25, 0.5, 0.75))
        if queue:
            aid, bid, tt = queue[0]
            bar = st.progress(0.0, text=f"Evaluating t = {tt:.2f} ({len(queue)} left)…")
            try:
                pa, pb = by_id.get(aid) or reads.point.fresh(aid), by_id.get(bid) or reads.point.fresh(bid)
                host = hosting.host_for(pa, st.session_state.get("app_model"))
                with st.spinner(f"Generating and scoring {int(n_prompts)} responses for t = {tt:.2f}…"):
                    hosting.evaluate_mixture(store, host, pa, pb, tt, n_prompts=int(n_prompts))
                queue.pop(0)
                bar.progress(1.0)
                reads.clear()
                st.rerun()  # redraw the plot with the new point, then evaluate the next one
            except (UIError, ValueError, StoreError, ImportError) as err:
                queue.clear()
                st.error(f"Could not evaluate the mixture: {err}")

# ------------------------------------------------------------------------------------------ the table
with st.expander(f"Points ({len(shown)})"):
    rows = []
    for p in shown:
        sw = sweep_by_id.get(p.sweep_id or "")
        row = {"id": p.id, "label": p.label, "kind": p.kind, "method": p.method or "", "sweep": sw.name if sw else ""}
        for o in chosen_objs:
            v = p.values.get(o)
            row[o] = round(v.mean, 4) if v else None
        row.update(lengths.table_cells(p, chosen_objs, lv))
        row["KL"] = p.kl
        s = score.get(p.id) or {}
        row["votes"] = s.get("votes", 0)
        row["win rate"] = None if s.get("win_rate") is None else round(s["win_rate"], 3)
        row["BT score [95%]"] = ("" if s.get("score") is None
                                 else f"{s['score']:+.2f} [{s['low']:+.2f}, {s['high']:+.2f}]")
        rows.append(row)
    if votes:   # the vote columns next to the labels, where they are seen without scrolling
        lead = ["id", "label", "votes", "win rate", "BT score [95%]"]
        rows = [{**{k: r[k] for k in lead}, **{k: v for k, v in r.items() if k not in lead}} for r in rows]
    st.dataframe(rows, hide_index=True)
    real_sweeps = [s for s in chosen_sweeps if s in sweep_by_id]
    if len(real_sweeps) == 1:
        sid = real_sweeps[0]
        sweep_votes = reads.votes(sweep_id=sid)
        d1, d2, d3 = st.columns(3)
        try:
            d1.download_button("Front with vote scores (CSV)",
                               exports.front_csv(store, sid, reads.vote_scores(sweep_votes)),
                               file_name=f"front-{sid}.csv", mime="text/csv", key="front_dl_csv")
        except (StoreError, ValueError) as err:
            d1.caption(f"Front export unavailable: {err}")
        d2.download_button("Votes (CSV)", report.votes_csv(sweep_votes),
                           file_name=f"votes-{sid}.csv", mime="text/csv", key="front_dl_votes_csv")
        d3.download_button("Votes and scores (JSON)", exports.votes_json(store, sid), file_name=f"votes-{sid}.json",
                           mime="application/json", key="front_dl_votes_json")

# ------------------------------------------------------------------------------------------ the slider's generation
# last, once the whole page is drawn (views/front.py's slider box queued it): see _start_generation
if st.session_state.get("cond_queued"):
    _start_generation(*st.session_state.pop("cond_queued"))

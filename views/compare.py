"""Compare: up to four points side by side on one prompt (trained adapters, the base model, exact mixtures)."""
import streamlit as st

from pama import votefit
from pama import votes as V
from pama.app import ballots, hosting, reads, selection, steering, tradeoff
from pama.app.settings import (BASE_ID, GENERATION_MAX_NEW_TOKENS, GENERATION_TEMPERATURE, MAX_COMPARE,
                               UIError)
from pama.prompts import PromptError, load_prompts
from pama.store import StoreError, VoteRefused

store = reads.store()
st.title("Compare generations")

mode = st.segmented_control("Mode", ["Side by side", "Blind vote"], default="Side by side", required=True,
                            key="cmp_mode", help="Blind vote: two unnamed responses, you pick the better one, then "
                                                 "see which points wrote them. Votes become scores on the front.")
if mode == "Blind vote":
    all_points = reads.points()
    sweep_list = reads.sweeps()
    sweep_by = {s.id: s for s in sweep_list}
    ANY = "(points of any sweep)"
    b1, b2 = st.columns([2, 1])
    scope = b1.selectbox("Sweep", [s.id for s in reversed(sweep_list)] + [ANY], key="blind_sweep",
                         format_func=lambda i: i if i == ANY else f"{sweep_by[i].name} [{i}]")
    pool = ballots.blind_scope(all_points, None if scope == ANY else scope)
    pool_by = {p.id: p for p in pool}
    picked = b1.multiselect("Points in the draw (empty = all of them)", list(pool_by), key="blind_points",
                            format_func=lambda i: selection.point_label(pool_by[i], sweeps=sweep_by))
    b2.text_input("Your name (optional)", key="blind_voter", max_chars=200)
    seed = b2.number_input("Seed", 0, 2**31 - 1, 0, key="blind_seed",
                           help="Pairs, prompts and the A/B order are drawn from this seed: the same seed and votes "
                                "give the same sequence.")
    rule = b2.radio("Drawing rule", ballots.RULES, key="blind_rule",
                    help="Today's rule asks front neighbours first, then pairs whose scores are still unclear. The "
                         "other asks the stored pair and prompt whose vote says most about your trade-off (your "
                         "weights over the objectives, fitted from your votes; docs/votes.md).")
    scope_pts = ballots.blind_scope(pool, None, picked or None)
    by_id = {p.id: p for p in scope_pts}
    if len(scope_pts) < 2:
        st.info("Blind votes need at least two evaluated points: choose a sweep with a front (the demo front has "
                "six), or train one on the **Train** page.")
        st.stop()
    votes = reads.votes(point_ids=tuple(sorted(by_id)))
    score = reads.vote_scores(votes)
    draws = st.session_state.setdefault("blind_draws", 0)
    ballot = st.session_state.get("blind_ballot")
    if ballot is None or {ballot["point_a"], ballot["point_b"]} - set(by_id):
        order = list(sweep_by[scope].objectives) if scope in sweep_by else []
        first = (selection.objectives_of(scope_pts, order) or [None])[0]
        gens = {pid: reads.generations(pid) for pid in by_id}
        try:
            heldout = load_prompts("builtin:heldout")
        except PromptError:
            heldout = []
        ballot = None
        if rule == ballots.RULES[1]:   # the active rule: where the voter's fitted weights are most uncertain
            fobjs = tradeoff.fit_objectives(scope_pts, sweep_by)
            sids = tuple(sorted({p.sweep_id for p in scope_pts if p.sweep_id}))
            fit_now = tradeoff.analysis(votes, tuple(fobjs), sids, st.session_state.get("blind_voter") or None)
            ballot = ballots.active_ballot(scope_pts, votes, gens, fobjs, tradeoff.specs_for(fobjs, sids), fit_now,
                                           seed=int(seed), draw=draws)
            if ballot is None:
                st.caption("No two of these points share a scored stored response: today's rule drew this pair.")
        try:
            ballot = ballot or V.ballot(scope_pts, votes, gens, heldout=heldout, objective=first, score=score,
                                        seed=int(seed), draw=draws)
        except ValueError as err:   # no stored prompt in common and no held-out set to draw from
            st.error(f"Cannot draw a ballot: {err}")
            st.stop()
        st.session_state["blind_ballot"] = ballot

    def next_pair():
        st.session_state["blind_draws"] = st.session_state.get("blind_draws", 0) + 1
        st.session_state.pop("blind_ballot", None)

    if ballot["text_a"] is None or ballot["text_b"] is None:
        try:
            with st.spinner("No stored responses to this prompt: generating both…"):
                ballot = ballots.fill_ballot(store, ballot, by_id, app_model=st.session_state.get("app_model"),
                                        seed=int(seed) + draws)
            st.session_state["blind_ballot"] = ballot
        except (UIError, ValueError, StoreError, ImportError, OSError) as err:
            st.error(f"One of the two points cannot generate: {err}")
            st.button("Draw another pair", key="blind_skip_err", on_click=next_pair)
            st.stop()

    done = st.session_state.get("blind_done")
    done = done if done and done.get("token") == ballot["token"] else None
    if st.session_state.get("blind_notice"):
        st.error(st.session_state.pop("blind_notice"))
    st.caption(f"Prompt (held-out #{ballot['prompt_index']}, "
               f"{'stored responses' if ballot['source'] == 'stored' else 'generated now'}):")
    st.text(ballot["prompt"])
    cols = st.columns(2, border=True)
    for col, side in zip(cols, ("a", "b")):
        with col:
            st.subheader(side.upper(), anchor=False)
            st.code(ballot[f"text_{side}"] or "(empty response)", language=None, wrap_lines=True)
            if done:
                who = selection.point_label(by_id[ballot[f"point_{side}"]], sweeps=sweep_by if scope == ANY else None)
                st.markdown(f"**{side.upper()} was** `{who}`")
    def cast(choice: str, shown: dict) -> None:
        """Runs before the rerun, with the ballot that was on screen when the button was pressed."""
        try:
            res = ballots.submit_vote(store, shown, choice, st.session_state.get("blind_voter"))
            st.session_state["blind_done"] = dict(token=shown["token"], choice=choice, **res)
        except VoteRefused as err:
            st.session_state["blind_notice"] = str(err)
            next_pair()
        reads.clear()

    vcols = st.columns(len(ballots.VOTE_BUTTONS) + 1)
    for col, (choice, text, key) in zip(vcols, ballots.VOTE_BUTTONS):
        col.button(text, key=f"blind_vote_{choice}", shortcut=key, disabled=done is not None, on_click=cast,
                   args=(choice, ballot), use_container_width=True)
    vcols[-1].button("Next pair" if done else "Skip", key="blind_next", shortcut="N", on_click=next_pair,
                     type="primary" if done else "secondary", use_container_width=True)
    if done:
        said = dict((c, t) for c, t, _ in ballots.VOTE_BUTTONS)[done["choice"]]
        st.success(f"Vote recorded: {said}." + (" (This ballot had already been counted; it counts once.)"
                                                if done.get("duplicate") else ""))
    else:
        st.caption("Which response is better? Keys: A, B, T (tie), X (both bad), N (skip / next). The points are "
                   "revealed after your vote.")
    with st.expander(f"Scores so far ({len(votes)} votes on these points)", expanded=done is not None):
        st.dataframe(ballots.vote_table(scope_pts, score, sweeps=sweep_by if scope == ANY else None), hide_index=True)
        st.caption("Bradley–Terry log-strength (mean 0) with a 95% bootstrap interval; a tie is half a win each, "
                   "*both bad* is counted but not fitted. The Pareto front page can colour the points by it or plot "
                   "it as an axis. Pairs are drawn where they say most: neighbours on the front first, then pairs "
                   "with overlapping intervals and few votes (docs/votes.md).")
    you = (st.session_state.get("blind_voter") or "").strip() or None
    with st.expander("Your trade-off, learned from " + (f"{you}'s votes" if you else "everyone's votes"),
                     expanded=done is not None):
        fobjs = tradeoff.fit_objectives(scope_pts, sweep_by)
        sids = tuple(sorted({p.sweep_id for p in scope_pts if p.sweep_id}))
        with st.spinner("Fitting your trade-off…"):
            mine = tradeoff.analysis(votes, tuple(fobjs), sids, you)
        if mine.fit is None:
            st.caption(f"Needs at least {votefit.MIN_VOTES} votes with stored scores "
                       f"({len(mine.rows)} so far; {mine.rows.unscored} on generated responses). Type your name "
                       "above to fit your own votes only.")
        else:
            f = mine.fit
            st.markdown("**Weights** " + votefit.weights_text(f))
            st.dataframe(tradeoff.weights_rows(f), hide_index=True, key="tradeoff_weights")
            st.caption(tradeoff.summary_text(f))
            acc_rows = tradeoff.accuracy_rows(mine.accuracy, with_length=f.gamma is not None)
            if acc_rows:
                st.markdown(f"**Held-out accuracy** ({mine.accuracy['folds']}-fold cross-validation over "
                            f"{mine.accuracy['n']} decisive votes; chance is 50%)")
                st.dataframe(acc_rows, hide_index=True, key="tradeoff_accuracy")
            else:
                st.caption(f"Held-out accuracy needs at least {2 * votefit.FOLDS} decisive votes.")
            if mine.disagreements:
                st.markdown("**Where the objective scores and the votes disagree most** (the scores favoured one "
                            "response, the vote went to the other):")
            for k, d in enumerate(mine.disagreements):
                with st.container(border=True, key=f"tradeoff_disagree_{k}"):
                    st.caption(f"Chose {d['chosen'].upper()}; the scores gave it {d['p_scores']:.0%}. "
                               f"Prompt: {d['prompt']}")
                    dc = st.columns(2)
                    for col, side in zip(dc, ("a", "b")):
                        col.caption(f"{side.upper()} · " + ", ".join(f"{o} {v:.3f}" for o, v in
                                                                     d[f"scores_{side}"].items())
                                    + f" · {d[f'words_{side}']} words")
                        col.text(d[f"text_{side}"] or "(empty response)")  # plain text: only the ballot uses st.code
            gen_runs = steering.conditioned_runs(all_points)
            if gen_runs and f.kappa > 0:
                g1, g2 = st.columns([2, 1])
                grun = g1.selectbox("Conditioned adapter", list(gen_runs), key="tradeoff_run",
                                    format_func=lambda r: f"{gen_runs[r]['label']} [{r}]")
                grec = reads.run(grun)
                gobjs = list((grec.config if grec else {}).get("objectives") or gen_runs[grun]["objectives"])
                gpref = tradeoff.preference_for(f, gobjs)
                if g2.button("Generate at my trade-off", key="tradeoff_generate", disabled=gpref is None,
                             help="This prompt, written by the conditioned adapter at your weights."):
                    item = steering.preference_item(grun, gen_runs[grun], gpref)
                    try:
                        with st.spinner(f"Generating at {steering.preference_text(gobjs, gpref)}…"):
                            st.session_state["tradeoff_result"] = dict(item=item["label"], **hosting.generate_item(
                                store, item, ballot["prompt"], override=st.session_state.get("app_model"),
                                seed=int(seed), temperature=GENERATION_TEMPERATURE,
                                max_new_tokens=GENERATION_MAX_NEW_TOKENS))
                    except (UIError, ValueError, StoreError, ImportError, OSError) as err:
                        st.error(f"Could not generate with this adapter: {err}")
                if gpref is None:
                    st.caption("This adapter takes other objectives than your votes were fitted on.")
                res = st.session_state.get("tradeoff_result")
                if res:
                    st.caption(f"{res['item']}:")
                    st.code(res["text"] or "(empty response)", language=None, wrap_lines=True)
                    st.caption("Scores: " + (" · ".join(f"{o} {v:.3f}" for o, v in res["scores"].items()) or "none"))
    st.stop()

points = reads.points()
sweeps = {s.id: s for s in reads.sweeps()}
by_id = {p.id: p for p in points}
base_item = dict(id=BASE_ID, kind="base", label="base model (no adapter)", values={}, model=None, method=None)
options = [BASE_ID] + [p.id for p in points]
mixtures = st.session_state.setdefault("compare_mixtures", {})


def label(i: str) -> str:
    if i == BASE_ID:
        return "base model (no adapter)"
    if i in mixtures:
        return mixtures[i]["label"]
    return selection.point_label(by_id[i], sweeps=sweeps)


if "compare_ids" in st.session_state:  # handed over by the Pareto front page
    st.session_state["compare_pick"] = [i for i in st.session_state.pop("compare_ids") if i in by_id][:MAX_COMPARE]
elif "compare_pick" in st.session_state:
    st.session_state["compare_pick"] = [i for i in st.session_state["compare_pick"]
                                        if i in by_id or i in mixtures or i == BASE_ID]
if not points:
    st.info("No evaluated points yet, so only the base model can be compared. Train adapters on the **Train** "
            "page, or import the demo front (`python -m pama setup`).")

picked = st.multiselect("Points to compare (up to four)", options + list(mixtures), key="compare_pick",
                        max_selections=MAX_COMPARE, format_func=label,
                        help="Tip: select points by clicking them on the Pareto front page.")

adapter_pts = [p for p in points if p.kind == "adapter" and p.run_id]
with st.expander("Add an exact mixture of two adapters"):
    if len(adapter_pts) < 2:
        st.caption("Needs at least two trained adapters in the store.")
    else:
        m1, m2 = st.columns(2)
        a = m1.selectbox("Adapter A", [p.id for p in adapter_pts], key="cmp_mix_a",
                         format_func=lambda i: selection.point_label(by_id[i], sweeps=sweeps))
        b = m2.selectbox("Adapter B", [p.id for p in adapter_pts], index=1, key="cmp_mix_b",
                         format_func=lambda i: selection.point_label(by_id[i], sweeps=sweeps))
        t = st.slider("t: weight of B", 0.0, 1.0, 0.5, 0.05, key="cmp_mix_t")

        def add_mixture():
            current = st.session_state.get("compare_pick", [])
            a, b = st.session_state["cmp_mix_a"], st.session_state["cmp_mix_b"]
            if a == b:
                st.session_state["cmp_mix_error"] = "Choose two different adapters."
            elif len(current) >= MAX_COMPARE:
                st.session_state["cmp_mix_error"] = f"At most {MAX_COMPARE} columns: remove a point first."
            else:
                item = hosting.mixture_item(by_id[a], by_id[b], st.session_state["cmp_mix_t"])
                mixtures[item["id"]] = item
                st.session_state["compare_pick"] = current + [item["id"]]

        st.button("Add this mixture", key="cmp_mix_add", on_click=add_mixture)
        if st.session_state.get("cmp_mix_error"):
            st.error(st.session_state.pop("cmp_mix_error"))


cond_runs = steering.conditioned_runs(points)
with st.expander("Add preferences of one conditioned adapter", expanded=bool(cond_runs) and not picked):
    if not cond_runs:
        st.caption("Needs a conditioned adapter evaluated in the store (Train: *one conditioned adapter*).")
    else:
        run_id = st.selectbox("Conditioned adapter", list(cond_runs), key="cmp_cond_run",
                              format_func=lambda r: f"{cond_runs[r]['label']} [{r}]")
        run_rec = reads.run(run_id)
        cobjs = list((run_rec.config if run_rec else {}).get("objectives") or cond_runs[run_id]["objectives"])
        st.text_area(f"Preferences, one per line ({', '.join(cobjs)}; 2-4 lines; same seed for all)",
                     key="cmp_cond_prefs", height=110,
                     value="\n".join(", ".join(f"{w:g}" for w in row) for row in
                                     ([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]] if len(cobjs) == 2
                                      else [[1.0 if k == j else 0.0 for k in range(len(cobjs))]
                                            for j in range(min(len(cobjs), MAX_COMPARE))])))

        def add_preferences():
            try:
                prefs = steering.parse_preferences(st.session_state.get("cmp_cond_prefs", ""), len(cobjs))
            except UIError as err:
                st.session_state["cmp_cond_error"] = str(err)
                return
            if not prefs:
                st.session_state["cmp_cond_error"] = "Type at least one preference."
                return
            new = [steering.preference_item(run_id, cond_runs[run_id], p) for p in prefs]
            current = [i for i in st.session_state.get("compare_pick", []) if i not in {it["id"] for it in new}]
            if len(current) + len(new) > MAX_COMPARE:
                current = []   # the preferences replace the picked columns rather than being cut short
            if len(new) > MAX_COMPARE:
                st.session_state["cmp_cond_error"] = f"At most {MAX_COMPARE} columns: the first {MAX_COMPARE} shown."
            for it in new[:MAX_COMPARE]:
                mixtures[it["id"]] = it
            st.session_state["compare_pick"] = current + [it["id"] for it in new[:MAX_COMPARE]]

        st.button("Compare these preferences", key="cmp_cond_add", on_click=add_preferences)
        if st.session_state.get("cmp_cond_error"):
            st.error(st.session_state.pop("cmp_cond_error"))


def item_of(i: str) -> dict:
    if i == BASE_ID:
        return base_item
    return mixtures.get(i) or by_id[i]


base_item["model"] = next((by_id[i].model for i in picked if i in by_id), None)
items = [item_of(i) for i in picked]
objectives = selection.objectives_of([p for p in items if p.get("values")]) or selection.objectives_of(points)

tab_gen, tab_stored = st.tabs(["Generate on a prompt", "Stored evaluation samples"])

with tab_gen:
    c1, c2 = st.columns([3, 2])
    source = c1.radio("Prompt", ["held-out set", "my own"], horizontal=True, key="cmp_source")
    try:
        heldout = load_prompts("builtin:heldout")
    except PromptError as err:
        heldout = []
        c1.warning(str(err))
    if source == "held-out set" and heldout:
        prompt = c1.selectbox("Held-out prompt", heldout, key="cmp_prompt_pick")
    else:
        prompt = c1.text_area("Your prompt", key="cmp_prompt_text", placeholder="Write a short review of a café.",
                              max_chars=2000)
    seed = c2.number_input("Seed", 0, 2**31 - 1, 0, key="cmp_seed")
    temperature = c2.slider("Temperature (0 = greedy)", 0.0, 1.5, GENERATION_TEMPERATURE, 0.05, key="cmp_temp",
                            help="0.7 is what fronts are evaluated with by default; the adapters were trained at "
                                 "1.0, where they stop sooner (docs/learnability.md).")
    max_new = c2.number_input("Max new tokens", 1, 256, GENERATION_MAX_NEW_TOKENS, key="cmp_max_new")
    go = st.button("Generate", type="primary", disabled=not items or not (prompt or "").strip(), key="cmp_generate")
    results = st.session_state.setdefault("compare_results", {})
    settings = (prompt, int(seed), float(temperature), int(max_new), st.session_state.get("app_model") or "")
    if go:
        bar = st.progress(0.0, text="Loading the model…")
        for k, item in enumerate(items):
            bar.progress(k / len(items), text=f"Generating with {item['label']} ({k + 1}/{len(items)})…")
            try:
                res = hosting.generate_item(store, item, prompt, objectives=objectives,
                                            override=st.session_state.get("app_model"), seed=int(seed),
                                            temperature=float(temperature), max_new_tokens=int(max_new))
            except (UIError, ValueError, StoreError, ImportError, OSError) as err:
                res = dict(error=str(err))
            results[(item["id"], settings)] = res
        bar.empty()

    if not items:
        st.info("Choose up to four points above (or click them on the Pareto front page).")
    else:
        cols = st.columns(len(items), border=True)
        for col, item in zip(cols, items):
            with col:
                st.subheader(item["label"], anchor=False)
                st.caption(f"{item['kind']} · {item.get('method') or 'no method'} · model "
                           f"{hosting.model_for(item, st.session_state.get('app_model'))}")
                vals = item.get("values") or {}
                if vals:
                    st.caption("Stored evaluation: " + " · ".join(
                        f"{o} {v['mean']:.3f} [{v['ci_low']:.3f}, {v['ci_high']:.3f}]" for o, v in vals.items()))
                res = results.get((item["id"], settings))
                if res is None:
                    st.caption("Press *Generate* to sample a response.")
                elif "error" in res:
                    st.error(res["error"])
                else:
                    st.code(res["text"] or "(empty response)", language=None, wrap_lines=True)
                    if res["scores"]:
                        st.dataframe([{"objective": o, "score": round(s, 4)} for o, s in res["scores"].items()],
                                     hide_index=True)
                    for problem in res.get("problems", []):
                        st.warning(problem)

with tab_stored:
    stored = [p for p in items if p["id"] in by_id]
    unstored = [p["label"] for p in items if p["id"] not in by_id]
    if unstored:
        st.caption("Not stored points (no samples to browse; generate with them on the first tab): "
                   + ", ".join(unstored) + ". A sweep's evaluated base model is listed among the points.")
    if not stored:
        st.info("Choose stored points above to browse the responses generated when they were evaluated.")
    else:
        gens = {p.id: reads.generations(p.id) for p in stored}
        prompts_seen: dict[int, str] = {}
        for rows in gens.values():
            for g in rows:
                prompts_seen.setdefault(g["prompt_index"], g["prompt"])
        if not prompts_seen:
            st.info("These points were stored without their generations.")
        else:
            idx = st.selectbox("Held-out prompt", sorted(prompts_seen), key="cmp_stored_idx",
                               format_func=lambda i: f"#{i}: {prompts_seen[i][:100]}")
            st.text(prompts_seen[idx])
            cols = st.columns(len(stored), border=True)
            for col, p in zip(cols, stored):
                with col:
                    st.subheader(p["label"], anchor=False)
                    row = next((g for g in gens[p["id"]] if g["prompt_index"] == idx), None)
                    if row is None:
                        st.caption("No stored response for this prompt.")
                        continue
                    st.code(row["text"] or "(empty response)", language=None, wrap_lines=True)
                    if row.get("scores"):
                        st.dataframe([{"objective": o, "score": round(float(s), 4)}
                                      for o, s in row["scores"].items()], hide_index=True)

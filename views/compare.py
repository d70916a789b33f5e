"""Compare: up to four points side by side on one prompt (trained adapters, the base model, exact mixtures, a
conditioned adapter at typed preferences). Blind votes between points are their own page (views/vote.py)."""
import streamlit as st

from pama.app import hosting, reads, selection, steering
from pama.app.settings import BASE_ID, GENERATION_MAX_NEW_TOKENS, GENERATION_TEMPERATURE, MAX_COMPARE, UIError
from pama.prompts import PromptError, load_prompts
from pama.store import StoreError

store = reads.store()
st.title("Compare generations")

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

"""Blind vote: two unnamed responses to one prompt, you pick the better one, then see which points wrote them; the
votes become scores on the front and your trade-off (docs/votes.md). Helpers: pama.app.ballots, pama.app.tradeoff."""
import streamlit as st

from pama.app import ballots, reads, selection, tradeoff
from pama.app.settings import UIError
from pama.store import StoreError, VoteRefused

store = reads.store()
st.title("Blind vote")
st.caption("Two responses from two points, named only A and B: vote for the better one, then see who wrote them. "
           "The votes become Bradley–Terry scores on the Pareto front and a fit of your trade-off (docs/votes.md).")

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
voter = (st.session_state.get("blind_voter") or "").strip() or None
draws = st.session_state.setdefault("blind_draws", 0)
ballot = st.session_state.get("blind_ballot")
if ballot is None or {ballot["point_a"], ballot["point_b"]} - set(by_id):
    try:
        ballot, note = ballots.draw_ballot(scope_pts, votes, score, sweep_by, None if scope == ANY else scope,
                                           rule=rule, voter=st.session_state.get("blind_voter") or None,
                                           seed=int(seed), draw=draws)
    except ValueError as err:   # no stored prompt in common and no held-out set to draw from
        st.error(f"Cannot draw a ballot: {err}")
        st.stop()
    if note:
        st.caption(note)
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
tradeoff.vote_panel(scope_pts, votes, sweep_by, voter, all_points=all_points, prompt=ballot["prompt"], seed=int(seed),
                    expanded=done is not None)

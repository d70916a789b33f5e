"""The Pareto front page's "control for answer length" switch, pure (no Streamlit): which objectives the plot draws
with their length-controlled scores, the axis titles, the plain-words warnings and shares of the shown sweeps, and the
points table's controlled cells. The scores come from the store (``pama.controlled``; docs/fronts.md)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

from ..controlled import SUMMARY_KEY, is_length
from ..plots import controlled_value

CONTROLLED = "length-controlled"
IS_LENGTH = "is length"
NOT_CONTROLLED = "raw: no length-controlled score"


@dataclass(frozen=True)
class LengthView:
    """What the switch changes for the chosen objectives and sweeps."""
    controlled: tuple[str, ...] = ()          # plotted with their length-controlled scores when the switch is on
    is_length: tuple[str, ...] = ()           # length itself: plotted raw, "(is length)"
    titles: dict[str, str] = field(default_factory=dict)    # axis titles when the switch is on
    warnings: tuple[str, ...] = ()            # per shown sweep that mostly varies answer length
    shares: tuple[str, ...] = ()              # per shown sweep: how much of each objective's spread length explains


def _summary(sweep) -> dict:
    return ((sweep.get("summary") if hasattr(sweep, "get") else None) or {}).get(SUMMARY_KEY) or {}


def length_flags(objectives: Sequence[str], sweeps: Sequence = ()) -> dict[str, bool]:
    """Per objective: whether it is length itself, as the sweeps' stored figures say, else as its scorer says."""
    stored: dict[str, bool] = {}
    for s in sweeps:
        stored.update((_summary(s).get("is_length") or {}))
    unknown = [o for o in objectives if o not in stored]
    return {**{o: bool(stored[o]) for o in objectives if o in stored}, **is_length(unknown)}


def share_text(sweep, objectives: Sequence[str] | None = None) -> str | None:
    """'informativeness: length explains 99% of its spread (ρ +0.95) · conciseness: is length', or None when the
    sweep's length control is not computed."""
    lc = _summary(sweep)
    if not lc:
        return None
    parts = []
    for o in objectives or lc.get("objectives") or []:
        if o not in (lc.get("share") or {}):
            continue
        share, rho = lc["share"].get(o), (lc.get("rho") or {}).get(o)
        if (lc.get("is_length") or {}).get(o):
            parts.append(f"{o}: {IS_LENGTH}")
            continue
        text = f"{o}: " + ("no spread across points" if share is None else f"length explains {share:.0%} of its "
                                                                               "spread across points")
        parts.append(text + ("" if rho is None else f" (ρ with length {rho:+.2f})"))
    return " · ".join(parts) or None


def view(points: Sequence[Mapping], objectives: Sequence[str], sweeps: Sequence = ()) -> LengthView:
    """The switch's effect for ``objectives`` over the shown ``points`` of the chosen ``sweeps`` (records or dicts).

    An objective is plotted controlled when it is not length itself and some shown point has a controlled score of
    it; length itself stays raw, titled "(is length)"; an objective with no controlled score anywhere (a blind-vote
    score, a sweep not computed yet) stays raw and its title says so."""
    flags = length_flags([o for o in objectives], sweeps)
    controlled, length_itself, titles = [], [], {}
    for o in objectives:
        if flags.get(o):
            length_itself.append(o)
            titles[o] = f"{o} ({IS_LENGTH})"
        elif any(controlled_value((p.get("values") or {}).get(o)) is not None for p in points):
            controlled.append(o)
            titles[o] = f"{o} ({CONTROLLED})"
        else:
            titles[o] = f"{o} ({NOT_CONTROLLED})"
    warnings, shares = [], []
    for s in sweeps:
        lc = _summary(s)
        name = s.get("name") or s.get("id")
        if lc.get("warning"):
            warnings.append(f"{name}: {lc['warning']}" if len(sweeps) > 1 else lc["warning"])
        text = share_text(s, objectives)
        if text:
            shares.append(f"{name}: {text}" if len(sweeps) > 1 else text)
    return LengthView(tuple(controlled), tuple(length_itself), titles, tuple(warnings), tuple(shares))


def table_cells(point: Mapping, objectives: Sequence[str], lv: LengthView) -> dict[str, str]:
    """The points table's controlled columns: '<o> (length-controlled)' → '0.728 [0.702, 0.755]', "is length" or
    '' (not computed)."""
    out = {}
    for o in objectives:
        lc = controlled_value((point.get("values") or {}).get(o))
        out[f"{o} ({CONTROLLED})"] = (IS_LENGTH if o in lv.is_length else "") if lc is None else \
            f"{lc[0]:.4f} [{lc[1]:.4f}, {lc[2]:.4f}]"
    return out

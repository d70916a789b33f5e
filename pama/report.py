"""Export a sweep's front: CSV (one row per point), JSON (sweep, summary, points, runs) or a self-contained HTML
report (the plotly front figure of :func:`pama.plots.front_figure` with plotly.js inlined, plus the table).

The blind votes of the sweep travel with it: CSV and JSON rows carry each point's votes, win rate and Bradley–Terry
score with its interval, the JSON holds the votes themselves; ``votes_csv`` / ``votes_json`` export the votes alone."""
from __future__ import annotations

import csv
import datetime as dt
import html
import io
from pathlib import Path

import plotly.io as pio

from . import jsonio
from . import objectives as objmod
from . import plots
from . import votes as V
from .controlled import SUMMARY_KEY as LENGTH_CONTROL
from .fronts import front_table, summarise

FORMATS = ("csv", "json", "html")
VOTE_COLUMNS = ("votes", "wins", "losses", "ties", "both_bad", "win_rate", "bt_score", "bt_low", "bt_high")
VOTE_FIELDS = ("id", "created_at", "voter", "sweep_id", "point_a", "point_b", "vote", "prompt_index", "prompt",
               "text_a", "text_b", "source", "token")
RUN_FIELDS = ("id", "name", "method", "model", "status", "step", "total_steps", "config", "adapter_path")
VOTE_METHOD = ("Bradley-Terry (choix ILSR; a tie = half a win each, both_bad left out), 95% percentile bootstrap "
               "intervals over votes; see docs/votes.md")


def _load(store, sweep_id, rows, summary):
    if rows is None or summary is None:
        rows, summary = front_table(store, sweep_id)
    return rows, summary


def votes_rows(store, sweep_id: str) -> list[dict]:
    """The sweep's votes (kept when a point is deleted later), oldest first."""
    return store.votes(sweep_id=sweep_id)


def vote_scores(votes: list[dict], *, seed: int = 0) -> dict[str, dict]:
    """Per point id: tally, win rate and Bradley–Terry score with its bootstrap interval (pama.votes.scores)."""

    return V.scores(votes, seed=seed)


def add_vote_columns(rows: list[dict], scores: dict[str, dict]) -> list[dict]:
    """The front rows with each point's vote columns (0 votes / None where nobody voted)."""

    by_id = {r["point_id"]: r for r in V.score_rows([dict(id=r["point_id"]) for r in rows], scores)}
    return [dict(r, **{k: by_id[r["point_id"]][k] for k in VOTE_COLUMNS}) for r in rows]


def votes_csv(votes: list[dict]) -> str:
    """One row per vote, texts included (CSV-quoted)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(VOTE_FIELDS), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for v in votes:
        w.writerow({k: (v[k].isoformat() if isinstance(v.get(k), dt.datetime) else v.get(k)) for k in VOTE_FIELDS})
    return buf.getvalue()


def vote_score_rows(store, sweep_id: str, votes: list[dict] | None = None) -> list[dict]:
    """One row per point of the sweep, and per deleted point that still has votes: tally, win rate, BT score."""

    votes = votes_rows(store, sweep_id) if votes is None else votes
    scores = vote_scores(votes)
    points = {p.id: p for p in store.point_records(sweep_id=sweep_id)}
    ids = list(dict.fromkeys([*points, *scores]))
    return V.score_rows([points.get(i) or dict(id=i, label="(deleted point)") for i in ids], scores)


def votes_json(store, sweep_id: str) -> str:
    """The sweep's votes and the per-point scores they give."""
    votes = votes_rows(store, sweep_id)
    return jsonio.dumps(dict(sweep_id=sweep_id, n_votes=len(votes), method=VOTE_METHOD,
                             scores=vote_score_rows(store, sweep_id, votes), votes=votes))



LC_NOTE_IS_LENGTH = "is length"            # the objective is a function of answer length: no controlled score
LC_NOTE_MISSING = "not computed"          # `python -m pama front SWEEP_ID --length-control` computes it


def length_control(summary: dict) -> dict:
    """The front's length-control figures (``summary["length_control"]``, pama.controlled), {} when not computed."""
    return summary.get(LENGTH_CONTROL) or {}


def with_length_notes(rows: list[dict], summary: dict) -> list[dict]:
    """The front rows with, per objective, ``<o>/lc_note`` (why the controlled score is empty: "is length" or "not
    computed") and ``<o>/length_share`` (the front's share of that objective's spread that length explains)."""
    lc = length_control(summary)
    out = []
    for r in rows:
        r = dict(r)
        for o in summary["objectives"]:
            note = ""
            if r.get(f"{o}/lc_mean") is None:
                note = LC_NOTE_IS_LENGTH if (lc.get("is_length") or {}).get(o) else LC_NOTE_MISSING
            r[f"{o}/lc_note"] = note
            r[f"{o}/length_share"] = (lc.get("share") or {}).get(o)
        out.append(r)
    return out


def to_csv(rows: list[dict], summary: dict) -> str:
    """One row per point: each objective's raw score with its interval, its length-controlled score with its
    interval (empty with ``lc_note`` "is length" for an objective that is length itself) and the front's length
    share for it (the same on every row)."""
    objectives = summary["objectives"]
    rows = with_length_notes(rows, summary)
    cols = ["point_id", "kind", "label", "run_id", "preference", "mixture", "on_front"]
    for o in objectives:
        cols += [f"{o}/mean", f"{o}/ci_low", f"{o}/ci_high", f"{o}/normalised"]
    for o in objectives:
        cols += [f"{o}/lc_mean", f"{o}/lc_low", f"{o}/lc_high", f"{o}/lc_note", f"{o}/length_share"]
    cols += ["kl", "mean_length", "distinct_1", "distinct_2", "eos_fraction", "config"]
    if rows and "bt_score" in rows[0]:
        cols += list(VOTE_COLUMNS)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        out = dict(r)
        for k in ("preference", "mixture", "config"):
            out[k] = "" if r.get(k) in (None, {}, []) else jsonio.dumps(r[k], indent=None)
        w.writerow(out)
    return buf.getvalue()


def to_json(store, sweep_id: str, rows: list[dict], summary: dict) -> str:
    data = dict(sweep=store.sweep_record(sweep_id), summary=summary, points=with_length_notes(rows, summary),
                length_control=length_control(summary) or None,
                runs=[{k: getattr(r, k) for k in RUN_FIELDS} for r in store.run_records(sweep_id=sweep_id)])
    votes = votes_rows(store, sweep_id)
    data.update(votes=votes, vote_method=VOTE_METHOD, vote_scores=vote_score_rows(store, sweep_id, votes))
    return jsonio.dumps(data)


def figure(store, sweep_id: str, summary: dict | None = None):
    """The plotly front figure of the sweep (via pama.plots.front_figure), hypervolume and reference in the title."""

    summary = summary or summarise(store, sweep_id)
    objectives = summary["objectives"]
    bounds = {}
    for o, lo, hi in zip(objectives, summary["lower"], summary["upper"]):
        try:
            direction = objmod.get(o).direction
        except ValueError:
            direction = "maximize"
        bounds[o] = dict(lower=lo, upper=hi, direction=direction)
    points = store.point_records(sweep_id=sweep_id)
    sweep = store.sweep_record(sweep_id)
    title = (f"{html.escape(sweep.name)}: hypervolume {summary['hypervolume']:.4f} "
             f"(trained adapters {summary['hypervolume_adapters']:.4f}, base alone {summary['hypervolume_base']:.4f})"
             f"<br><sup>objectives normalised by their bounds; reference = lower bounds ("
             + ", ".join(f"{html.escape(o)} {lo:g}" for o, lo in zip(objectives, summary["lower"])) + ")</sup>")
    return plots.front_figure(points, objectives, bounds=bounds, title=title)


def to_html(store, sweep_id: str, rows: list[dict], summary: dict) -> str:
    fig = figure(store, sweep_id, summary)
    sweep = store.sweep_record(sweep_id)
    objectives = summary["objectives"]
    head = "".join(f"<th>{html.escape(h)}</th>" for h in
                   ["point", "kind", "label", "preference / mixture"] + [f"{o} (95% CI)" for o in objectives]
                   + [f"{o} length-controlled (95% CI)" for o in objectives]
                   + ["KL", "length", "distinct-2", "ended on EOS", "front"])
    body = []
    for r in with_length_notes(rows, summary):
        pm = r["mixture"] or r["preference"] or ""
        pm = jsonio.dumps(pm, indent=None) if pm else ""
        cells = [r["point_id"], r["kind"], r["label"], pm]
        cells += [f"{r[f'{o}/mean']:.4f} [{r[f'{o}/ci_low']:.4f}, {r[f'{o}/ci_high']:.4f}]" for o in objectives]
        cells += [r[f"{o}/lc_note"] if r.get(f"{o}/lc_mean") is None else
                  f"{r[f'{o}/lc_mean']:.4f} [{r[f'{o}/lc_low']:.4f}, {r[f'{o}/lc_high']:.4f}]" for o in objectives]
        cells += [f"{r['kl'] or 0:.3f}", f"{r['mean_length'] or 0:.1f}", f"{r['distinct_2'] or 0:.3f}",
                  "" if r.get("eos_fraction") is None else f"{r['eos_fraction']:.0%}",
                  "✔" if r["on_front"] else ""]
        style = "" if r["on_front"] else " style='opacity:0.55'"
        body.append(f"<tr{style}>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    cfg = jsonio.dumps(sweep.config)
    plot = pio.to_html(fig, include_plotlyjs=True, full_html=False)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Pareto front {html.escape(sweep_id)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}}table{{border-collapse:collapse;
font-size:13px}}td,th{{border:1px solid #ddd;padding:4px 8px;text-align:left}}th{{background:#f4f4f4}}
pre{{background:#f8f8f8;padding:1em;font-size:12px}}</style></head><body>
<h1>{html.escape(sweep.name)} <small>({html.escape(sweep_id)})</small></h1>
<p>Model <code>{html.escape(sweep.model)}</code>, method <code>{html.escape(sweep.method)}</code>,
objectives {', '.join(f'<code>{html.escape(o)}</code>' for o in objectives)}.
Hypervolume (objectives normalised by their bounds, reference = lower bounds): all points
<b>{summary['hypervolume']:.4f}</b>, trained adapters {summary['hypervolume_adapters']:.4f},
base model alone {summary['hypervolume_base']:.4f}.</p>
{_length_html(summary)}
{plot}
<h2>Points</h2><table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>
<h2>Sweep configuration</h2><pre>{html.escape(cfg)}</pre>
</body></html>
"""


def _length_html(summary: dict) -> str:
    """The front's length-control paragraph: each objective's share of spread explained by length, the warning."""
    lc = length_control(summary)
    if not lc:
        return ("<p>Length-controlled scores: not computed (<code>python -m pama front SWEEP_ID --length-control"
                "</code>).</p>")
    parts = []
    for o in summary["objectives"]:
        share, rho = (lc.get("share") or {}).get(o), (lc.get("rho") or {}).get(o)
        what = LC_NOTE_IS_LENGTH if (lc.get("is_length") or {}).get(o) else (
            "no spread" if share is None else f"{share:.0%} of its spread across points")
        parts.append(f"<code>{html.escape(o)}</code>: {html.escape(what)}"
                     + ("" if rho is None else f" (Spearman ρ with length {rho:+.2f})"))
    warn = (f"<p style='background:#fff3bf;padding:.6em;border-left:4px solid #f59f00'><b>Warning:</b> "
            f"{html.escape(lc['warning'])}</p>" if lc.get("warning") else "")
    return (f"{warn}<p>Answer length explains: {'; '.join(parts)}. Length-controlled scores (table) remove the part "
            f"of each score that answer length explains (pooled regression on log(1 + words), at the base model's "
            f"length; docs/fronts.md).</p>")


def export(store, sweep_id: str, fmt: str, out: str | Path, *, rows=None, summary=None) -> Path:
    """Write the front of ``sweep_id`` as csv, json or html to ``out``; returns the path."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    rows, summary = _load(store, sweep_id, rows, summary)
    rows = add_vote_columns(rows, vote_scores(votes_rows(store, sweep_id)))
    text = {"csv": lambda: to_csv(rows, summary), "json": lambda: to_json(store, sweep_id, rows, summary),
            "html": lambda: to_html(store, sweep_id, rows, summary)}[fmt]()
    out = Path(out).expanduser()
    if out.is_dir():
        out = out / f"front-{sweep_id}.{fmt}"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    return out

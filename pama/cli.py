"""`python -m pama <subcommand>`: every job the app does, scriptable. A subcommand exists only when it works."""
from __future__ import annotations

import argparse
import json
import sys
import warnings

from . import __version__


def _store(args):
    from .store import Store

    return Store(getattr(args, "db", None))


def cmd_setup(args) -> int:
    from . import models
    from .store import Store, describe_url

    models.main_build_cache()
    store = Store(args.db)
    print(f"store ready: {describe_url(store.url)} (schema {store.schema_version()})")
    if not args.no_demo:
        try:
            from . import demo
        except ImportError:  # the demo front arrives with the fronts issue
            demo = None
        imported = demo.import_if_empty(store) if demo else None
        if imported:
            print(f"imported the demo front ({imported})")
    return 0


def cmd_runs(args) -> int:
    store = _store(args)
    store.mark_stale_failed()
    runs = store.list_runs(status=args.status, method=args.method, limit=args.limit)
    if args.json:
        print(json.dumps(runs, default=str, indent=2))
        return 0
    if not runs:
        print("no runs yet: start one with `python -m pama train --steps 5` or from the app's Train page")
        return 0
    header = f"{'id':<13} {'status':<9} {'method':<7} {'step':>9}  {'created':<19}  name"
    print(header)
    print("-" * len(header))
    for r in runs:
        print(f"{r['id']:<13} {r['status']:<9} {r['method']:<7} {r['step']:>4}/{r['total_steps']:<4}  "
              f"{r['created_at']:%Y-%m-%d %H:%M:%S}  {r['name']}")
    return 0


def cmd_db(args) -> int:
    from .store import SCHEMA_HEAD, Store, StoreError, describe_url
    from . import paths

    url = args.db or paths.default_db_url()
    if args.action == "upgrade":
        Store.upgrade(url)
        print(f"{describe_url(url)} upgraded to schema {SCHEMA_HEAD}")
    elif args.action == "init":
        store = Store(url)
        print(f"{describe_url(url)} ready (schema {store.schema_version()})")
    else:
        try:
            store = Store(url, create=False)
            print(f"{describe_url(url)}: schema {store.schema_version()} (current {SCHEMA_HEAD})")
        except StoreError as err:
            print(err)
            return 1
    return 0


def cmd_objectives(args) -> int:
    from . import objectives

    for name in objectives.available():
        o = objectives.get(name)
        print(f"{name:<12} [{o.lower:g}, {o.upper:g}]  {o.description}")
    print("\nAlso: hf:<model id or path>[:label] (a sequence-classification reward model) and "
          "py:<module>:<function> (config files and CLI only).")
    return 0


def cmd_generate(args) -> int:
    """The base model, a run's adapter (its latest checkpoint), an adapter folder, or an exact mixture of runs'
    adapters (Σ w_i ΔW_i, pama.adapters, as on the app's Compare and Pareto front pages)."""
    from . import adapters as adp
    from . import models

    weights: dict[str, float] = {}
    folders: dict[str, str] = {}
    spec = args.model
    if args.run or args.mix:
        store = _store(args)
        weights = {args.run: 1.0} if args.run else adp.parse_mix(args.mix)
        folders = adp.run_adapters(store, weights)
        if spec is None:
            spec = store.get_run(next(iter(weights)))["model"]
    elif args.adapter:
        weights, folders = {"adapter": 1.0}, {"adapter": args.adapter}
    for name, folder in folders.items():  # refused before the (slow) model load
        adp.check_adapter_path(folder, name=name)
    model, tok = models.load(spec or models.DEFAULT_MODEL)
    if folders:
        model = adp.mix(adp.load_adapters(model, folders), weights)
    for prompt, text in zip(args.prompt, models.generate(model, tok, args.prompt, max_new_tokens=args.max_new_tokens,
                                                          temperature=args.temperature, seed=args.seed)):
        print(f"### {prompt}\n{text}\n")
    return 0


def format_votes(rows: list[dict], n_votes: int) -> str:
    """The scores table printed by `votes SWEEP_ID`: best first, points without votes last."""
    counted = sum(r["wins"] + r["losses"] + r["ties"] for r in rows) // 2
    lines = [f"{n_votes} votes ({counted} counted; both_bad is left out of the fit). Bradley-Terry score = "
             "log-strength, mean 0; 95% bootstrap interval.",
             f"{'point':<13} {'label':<34} {'votes':>5} {'W-L-T':>9} {'bad':>4} {'win rate':>8}  score [95% interval]"]
    lines.append("-" * len(lines[-1]))
    for r in sorted(rows, key=lambda r: (r["bt_score"] is None, -(r["bt_score"] or 0))):
        wr = "" if r["win_rate"] is None else f"{r['win_rate']:.0%}"
        sc = "" if r["bt_score"] is None else f"{r['bt_score']:+.2f} [{r['bt_low']:+.2f}, {r['bt_high']:+.2f}]"
        lines.append(f"{r['point_id']:<13} {str(r['label'])[:34]:<34} {r['votes']:>5} "
                     f"{r['wins']:>3}-{r['losses']}-{r['ties']:<3} {r['both_bad']:>4} {wr:>8}  {sc}")
    return "\n".join(lines)


def cmd_votes(args) -> int:
    from pathlib import Path

    from . import report

    store = _store(args)
    if not args.sweep_id:
        sweeps = store.list_sweeps()
        if not sweeps:
            print("no sweeps yet, so no votes: import the demo front with `python -m pama setup`")
        for s in sweeps:
            print(f"{s['id']:<13} {len(store.votes(sweep_id=s['id'])):>5} votes  {s['name']}")
        return 0
    if store.get_sweep(args.sweep_id) is None:
        raise ValueError(f"no sweep {args.sweep_id!r}; `python -m pama votes` lists them")
    votes = report.votes_rows(store, args.sweep_id)
    print(f"sweep {args.sweep_id}: " + format_votes(report.vote_score_rows(store, args.sweep_id, votes), len(votes)))
    if args.export:
        out = Path(args.out or f"votes-{args.sweep_id}.{args.export}")
        out.write_text(report.votes_csv(votes) if args.export == "csv" else report.votes_json(store, args.sweep_id),
                       encoding="utf-8")
        print(f"\nwrote {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pama", description=__doc__)
    parser.add_argument("--version", action="version", version=f"pama-explorer {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name, fn, help_text):
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--db", default=None, help="SQLAlchemy database URL (default: $PAMA_DB_URL or "
                                                  "sqlite under checkpoints/)")
        p.set_defaults(func=fn)
        return p

    p = add("setup", cmd_setup, "Build the embedded model cache and initialise the store (what `make run` does).")
    p.add_argument("--no-demo", action="store_true", help="do not import the demo front into an empty store")
    p = add("runs", cmd_runs, "List the store's runs.")
    p.add_argument("--status", default=None)
    p.add_argument("--method", default=None)
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--json", action="store_true")
    p = add("db", cmd_db, "Database schema: init, upgrade (Alembic) or show the version.")
    p.add_argument("action", choices=["init", "upgrade", "version"])
    add("objectives", cmd_objectives, "List the built-in objectives.")
    p = add("generate", cmd_generate, "Generate with the base model, a run's adapter, an adapter folder or an exact "
                                      "mixture of runs' adapters.")
    p.add_argument("prompt", nargs="+")
    p.add_argument("--model", default=None, help="base model (default: the run's model with --run/--mix, else "
                                                 "smollm2-135m)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--run", default=None, metavar="RUN_ID", help="the run's adapter (its latest checkpoint)")
    which.add_argument("--adapter", default=None, metavar="PATH",
                       help="a PEFT LoRA adapter folder (under the checkpoints root or the demo folder)")
    which.add_argument("--mix", default=None, metavar="RUN_A=w,RUN_B=w",
                       help="exact mixture Σ w_i ΔW_i of two or more runs' adapters")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--seed", type=int, default=0)
    p = add("votes", cmd_votes, "Blind votes of a sweep: per point votes, win rate and Bradley-Terry score with its "
                                "interval; export the votes (cast them on the app's Compare page, blind mode).")
    p.add_argument("sweep_id", nargs="?", default=None, help="the sweep (omit to list sweeps with their vote counts)")
    p.add_argument("--export", choices=["csv", "json"], default=None,
                   help="write the votes (csv: one row per vote; json: votes and scores)")
    p.add_argument("--out", default=None, help="export path (default: votes-<sweep id>.<format>)")
    for register in _extensions():
        register(sub, add)
    return parser


def _extensions():
    """Subcommands defined next to the code they drive (training, sweeps, fronts)."""
    out = []
    for modname in ("trainer", "sweep"):
        try:
            mod = __import__(f"pama.{modname}", fromlist=["register_cli"])
        except ImportError:
            continue
        if hasattr(mod, "register_cli"):
            out.append(mod.register_cli)
    return out


def one_line(err: BaseException) -> str:
    """An error message on one line: a bulleted list of problems becomes 'a; b'; OSErrors name the file."""
    if isinstance(err, OSError) and not isinstance(err, (ValueError,)) and err.filename is not None:
        text = f"{err.strerror or type(err).__name__}: {err.filename}"
    else:
        text = str(err) or type(err).__name__
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if len(lines) <= 1:
        return lines[0] if lines else type(err).__name__
    head, rest = lines[0], [ln.removeprefix("- ").strip() for ln in lines[1:]]
    return f"{head} {'; '.join(rest)}" if head.endswith(":") else "; ".join([head, *rest])


def main(argv: list[str] | None = None) -> int:
    from .config import ConfigError
    from .models import ModelNotFoundError
    from .store import StoreError

    parser = build_parser()
    args = parser.parse_args(argv)
    warnings.simplefilter("default", UserWarning)
    try:
        return int(args.func(args) or 0)
    except (ConfigError, ModelNotFoundError, StoreError, ValueError, OSError) as err:
        print(f"error: {one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130

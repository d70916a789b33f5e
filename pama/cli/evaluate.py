"""`evaluate`: evaluate one point (a run's adapter, a conditioned run at a preference, or the base model) on held-out
prompts and store it."""
from __future__ import annotations

from .. import adapters as adp
from .. import conditioning as cond
from .. import models
from .. import objectives as objmod
from ..config import DEFAULT_OBJECTIVES, ConfigError
from ..evaluate import EVAL_BATCH, evaluate_at, evaluate_point, store_point
from ..prompts import load_prompts
from ..store import Store


def register(sub, add) -> None:
    p = add("evaluate", run, "Evaluate one point (a run's adapter, or the base model) on held-out prompts "
                             "and store it.")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--run", default=None, metavar="RUN_ID", help="evaluate this run's adapter")
    g.add_argument("--base", action="store_true", help="evaluate the base model")
    p.add_argument("--model", default=None, help="base model spec (default: the run's, else smollm2-135m)")
    p.add_argument("--objectives", default=None, help="comma-separated (default: the run's, else the defaults)")
    p.add_argument("--prompts", default="builtin:heldout")
    p.add_argument("--samples", type=int, default=64)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--preference", default=None, metavar="P1,P2,...",
                   help="for a conditioned run: the preference to evaluate it at (default: the run's preference, "
                        "else uniform); stored as a point of kind 'conditioned'")
    p.add_argument("--quiet", action="store_true")


def run(args) -> int:
    store = Store(args.db)
    run = store.require_run(args.run) if args.run else None
    model_spec = args.model or (run["model"] if run else models.DEFAULT_MODEL)
    if args.objectives:
        objectives = [o.strip() for o in args.objectives.split(",") if o.strip()]
    elif run:
        objectives = list(run["config"].get("objectives") or [o["name"] for o in run["objectives"]])
    else:
        objectives = list(DEFAULT_OBJECTIVES)
    objs = [objmod.get(o) for o in objectives]
    conditioned = bool(run and run["config"].get("conditioned"))
    if args.preference is not None and not conditioned:
        raise ConfigError(f"--preference applies to conditioned runs only (trained with --conditioned); "
                          f"{'run ' + run['id'] + ' is a plain adapter' if run else 'the base model takes none'}: "
                          "drop --preference")
    pref = None
    if conditioned:  # one weight per objective the adapter was trained for; refused before the model load
        pref = cond.resolve_preference(args.preference, run["config"], run["config"]["objectives"])
    prompts = load_prompts(args.prompts)[:max(1, args.samples)]
    model, tok = models.load(model_spec)
    if run:
        if run["status"] != "finished" and not run["adapter_path"]:
            raise ConfigError(f"run {run['id']} has no checkpoint yet (status {run['status']})")
        model = adp.load_adapters(model, {run["id"]: run["adapter_path"]})
        cond.load_gates(model, run["adapter_path"], adapter=run["id"])
    kw = dict(seed=args.seed, max_new_tokens=args.max_new_tokens, batch_size=EVAL_BATCH, progress=not args.quiet)
    if pref is not None:
        res = evaluate_at(model, tok, objs, prompts, pref, adapter=run["id"], **kw)
    else:
        res = evaluate_point(model, tok, objs, prompts, **kw)
    label = "base model" if not run else f"{run['name']} @ {pref.label()}" if pref else run["name"]
    pid = store_point(store, res, kind="conditioned" if pref else "adapter" if run else "base", label=label,
                      model=model_spec, run_id=run["id"] if run else None, method=run["method"] if run else None,
                      preference=pref.as_list() if pref else (run["config"].get("preference") if run else None))
    for o, (m, lo, hi) in res.values.items():
        print(f"{o:<24} {m:8.4f}  95% CI [{lo:.4f}, {hi:.4f}]")
    print(f"{'KL to the base':<24} {res.kl:8.4f}\n{'mean length (tokens)':<24} {res.mean_length:8.2f}\n"
          f"{'distinct-1 / distinct-2':<24} {res.distinct_1:.3f} / {res.distinct_2:.3f}\n"
          f"{'ended on EOS':<24} {res.eos_fraction:8.1%}\n"
          f"point id: {pid} ({res.seconds:.1f} s, {len(prompts)} prompts)")
    return 0

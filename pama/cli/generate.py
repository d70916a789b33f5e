"""`generate`: text from the base model, a run's adapter, an adapter folder or an exact mixture."""
from __future__ import annotations

from .. import adapters as adp
from .. import conditioning as cond
from .. import models
from ..config import ConfigError
from ..store import Store


def register(sub, add) -> None:
    p = add("generate", run, "Generate with the base model, a run's adapter, an adapter folder or an exact "
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
    p.add_argument("--preference", default=None, metavar="P1,P2,...",
                   help="for a conditioned adapter: the preference to generate at (default: the run's, else uniform)")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--seed", type=int, default=0)


def run(args) -> int:
    """The base model, a run's adapter (its latest checkpoint), an adapter folder, or an exact mixture of runs'
    adapters (Σ w_i ΔW_i, pama.adapters, as on the app's Compare and Pareto front pages)."""
    weights: dict[str, float] = {}
    folders: dict[str, str] = {}
    spec = args.model
    config = None
    if args.run or args.mix:
        store = Store(args.db)
        weights = {args.run: 1.0} if args.run else adp.parse_mix(args.mix)
        folders = adp.run_adapters(store, weights)
        first = store.get_run(next(iter(weights)))
        spec, config = spec or first["model"], first["config"]
    elif args.adapter:
        weights, folders = {"adapter": 1.0}, {"adapter": args.adapter}
    conditioned = {}
    for name, folder in folders.items():  # refused before the (slow) model load
        adp.check_adapter_path(folder, name=name)
        data = cond.read_conditioning(folder)
        if data is not None:
            conditioned[name] = data
    pref = None
    if conditioned:
        objectives = next(iter(conditioned.values()))["objectives"]
        pref = cond.resolve_preference(args.preference, config, objectives)
        print(f"preference: {pref.label(objectives)}\n")
    elif args.preference is not None:
        raise ConfigError("--preference applies to conditioned adapters only (trained with --conditioned); this "
                          "one is plain: drop --preference")
    model, tok = models.load(spec or (next(iter(conditioned.values())).get("model") if conditioned else None)
                             or models.DEFAULT_MODEL)
    if folders:
        model = adp.mix(adp.load_adapters(model, folders), weights)
        for name in conditioned:
            cond.load_gates(model, folders[name], adapter=name)
    kw = dict(max_new_tokens=args.max_new_tokens, temperature=args.temperature, seed=args.seed)
    texts = (cond.generate_at(model, tok, args.prompt, pref, **kw) if pref is not None
             else models.generate(model, tok, args.prompt, **kw))
    for prompt, text in zip(args.prompt, texts):
        print(f"### {prompt}\n{text}\n")
    return 0

"""``py:<module or file.py>:<function>[:k=v,...]``: a user callable as an objective (config files and CLI only)."""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
from pathlib import Path
from typing import Any, Callable


from .spec import Objective, ObjectiveError, _bounds, _check_unknown




def _load_callable(spec: str, module_name: str, func_name: str) -> Callable:
    try:
        if module_name.endswith(".py") or os.sep in module_name or "/" in module_name:
            path = Path(module_name).expanduser().resolve()
            if not path.is_file():
                raise ObjectiveError(f"objective {spec!r}: file {str(path)!r} not found")
            mod_key = f"_pama_user_objective_{abs(hash(str(path)))}"
            module = sys.modules.get(mod_key)
            if module is None:
                s = importlib.util.spec_from_file_location(mod_key, path)
                module = importlib.util.module_from_spec(s)
                s.loader.exec_module(module)
                sys.modules[mod_key] = module
        else:
            module = importlib.import_module(module_name)
    except ObjectiveError:
        raise
    except Exception as e:
        raise ObjectiveError(f"objective {spec!r}: cannot import {module_name!r}: {type(e).__name__}: {e}") from e
    fn = getattr(module, func_name, None)
    if fn is None or not callable(fn):
        raise ObjectiveError(f"objective {spec!r}: {module_name!r} has no callable {func_name!r}")
    return fn


def _make_py(spec: str, parts: list[str], params: dict[str, Any]) -> Objective:
    if len(parts) < 2 or not parts[0] or not parts[-1]:
        raise ObjectiveError(f"objective {spec!r}: expected py:<module or file.py>:<function>[:lower=..,upper=..]")
    module_name, func_name = ":".join(parts[:-1]), parts[-1]
    _check_unknown(params, [], spec)
    fn = _load_callable(spec, module_name, func_name)
    lo, hi = _bounds(
        params, float(getattr(fn, "lower", 0.0)), float(getattr(fn, "upper", 1.0)), spec
    )
    doc = (getattr(fn, "description", None) or (fn.__doc__ or "").strip().split("\n")[0]
           or f"user function {module_name}:{func_name}")

    call = _keyword_caller(fn, spec)

    def score(prompts: list[str], responses: list[str]) -> list[float]:
        return list(call(list(prompts), list(responses)))

    return Objective(spec, str(doc), lo, hi, score, params={"module": module_name, "function": func_name})


def _keyword_caller(fn: Callable, spec: str) -> Callable[[list[str], list[str]], Any]:
    """Call ``fn`` by keyword, as TRL calls reward functions: ``fn(prompts=..., completions=..., **kwargs)``, so a
    function written for TRL (``def f(completions, **kwargs)``) works unchanged. A function without ``**kwargs``
    gets the names it declares; ``responses`` is accepted as this project's older name for ``completions``."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # a C callable without a signature: TRL's call
        return lambda prompts, responses: fn(prompts=prompts, completions=responses)
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return lambda prompts, responses: fn(prompts=prompts, completions=responses)
    names = {n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    known = {"prompts", "completions", "responses"}
    missing = [n for n, p in params.items() if n not in known and p.default is p.empty
               and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if not names & {"completions", "responses"} or missing:
        raise ObjectiveError(
            f"objective {spec!r}: the function is called by keyword as TRL calls reward functions, "
            f"f(prompts=..., completions=..., **kwargs); its signature {inspect.signature(fn)} "
            + ("has no `completions`" if not names & {"completions", "responses"}
               else f"requires {', '.join(missing)}, which are not passed")
            + ". Write it as e.g. def f(prompts, completions, **kwargs)")

    def call(prompts: list[str], responses: list[str]):
        given = {"prompts": prompts, "completions": responses, "responses": responses}
        return fn(**{k: v for k, v in given.items() if k in names})
    return call



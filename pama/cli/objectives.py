"""`objectives`: list the built-in objectives."""
from __future__ import annotations

from .. import objectives


def register(sub, add) -> None:
    add("objectives", run, "List the built-in objectives.")


def run(args) -> int:
    for name in objectives.available():
        o = objectives.get(name)
        print(f"{name:<12} [{o.lower:g}, {o.upper:g}]  {o.description}")
    print("\nAlso: hf:<model id or path>[:label] (a sequence-classification reward model) and "
          "py:<module>:<function> (config files and CLI only).")
    return 0

"""`python -m pama <subcommand>`: every job the app does, scriptable. A subcommand exists only when it works."""
from __future__ import annotations

import argparse
import sys
import warnings

from .. import __version__
from ..config import ConfigError
from ..models import ModelNotFoundError
from ..store import StoreError
from . import db, evaluate, front, generate, objectives, runs, setup, sweep, train, votes, worker
from .votes import format_votes  # noqa: F401  (pama.cli.format_votes)

# one module per subcommand, in the order `--help` lists them; a broken module raises here, it never disappears
SUBCOMMANDS = (setup, runs, db, objectives, generate, votes, train, sweep, front, evaluate, worker)


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

    for module in SUBCOMMANDS:
        module.register(sub, add)
    return parser


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

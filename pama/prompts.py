"""Prompt sets: the built-in train / held-out sets, loading prompts from files or datasets, deterministic batching.

Sources accepted by :func:`load_prompts`:

* ``builtin:train`` / ``builtin:heldout`` (and ``builtin:premise-train`` / ``builtin:premise-heldout``, prompts with
  a negative premise; ``builtin:premise-brief-train`` / ``-heldout``, the same asking for two or three sentences) -
  the sets shipped in ``pama/data/`` (see ``pama/data/README.md``);
  ``builtin:train:review`` keeps one task of a set (the ``task`` field);
* a path to a ``.jsonl`` file (one JSON object per line, field ``prompt``, else ``text``, or ``column=``;
  a line may also be a bare JSON string);
* a ``.json`` file holding a list of strings or of objects (same field rules);
* a ``.csv`` / ``.tsv`` file with a header (column ``prompt``, else ``text``, or ``column=``);
* a ``.txt`` file, one prompt per line;
* ``hf:<dataset name or local folder>[:split[:column]]`` - through ``datasets``; a folder written by
  ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk`` is read with ``load_from_disk``, anything else with
  ``load_dataset`` (which needs the network for Hub names).

Every loader strips whitespace and skips empty entries; problems raise :class:`PromptError` (a ``ValueError``)
saying what was wrong and what to do about it.
"""
from __future__ import annotations

import csv
import hashlib
import json
import operator
import random
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Sequence

__all__ = [
    "BRIEF",
    "BUILTIN",
    "DATA_DIR",
    "DERIVED",
    "PromptError",
    "PromptSampler",
    "builtin_records",
    "load_prompts",
    "prompt_sets",
]

DATA_DIR = Path(__file__).resolve().parent / "data"

#: Built-in prompt sets: name -> JSONL file (fields ``prompt`` and ``task``). Use them as ``builtin:<name>``.
BUILTIN: dict[str, Path] = {
    "train": DATA_DIR / "prompts_train.jsonl",
    "heldout": DATA_DIR / "prompts_heldout.jsonl",
    "premise-train": DATA_DIR / "prompts_premise_train.jsonl",
    "premise-heldout": DATA_DIR / "prompts_premise_heldout.jsonl",
}

#: Sets derived from a shipped one: name -> (set, instruction appended to every prompt). The brief premise sets ask
#: for a finished answer: the base model ends 86% of its answers to them within 256 tokens (42% without), so a front
#: on them needs no end-of-answer term (docs/learnability.md §14).
BRIEF = " Answer in two or three sentences."
DERIVED: dict[str, tuple[str, str]] = {
    "premise-brief-train": ("premise-train", BRIEF),
    "premise-brief-heldout": ("premise-heldout", BRIEF),
}

_DESCRIPTIONS = {
    "train": "Built-in training prompts: reviews, descriptions, advice, explanations, stories, poems, "
    "opinions, everyday questions, short messages, summaries.",
    "heldout": "Built-in held-out prompts: the same task mix on different subjects, never used for training.",
    "premise-train": "Training prompts with a negative premise (a bad experience, a complaint, something broken): "
    "an answer that stays on topic has to deal with it, so positive sentiment and relevance pull apart.",
    "premise-heldout": "Held-out prompts with a negative premise: the same task mix on other situations.",
    "premise-brief-train": "The negative-premise training prompts, each asking for an answer of two or three sentences.",
    "premise-brief-heldout": "The negative-premise held-out prompts, each asking for an answer of two or three sentences.",
}

_DEFAULT_FIELDS = ("prompt", "text")
_EXTENSIONS = (".jsonl", ".json", ".csv", ".tsv", ".txt")


class PromptError(ValueError):
    """A prompt source could not be read; the message says what was wrong and what to do."""


# --------------------------------------------------------------------------------------------------- loading


def load_prompts(source: str, *, limit: int | None = None, column: str | None = None) -> list[str]:
    """Read prompts from ``source`` (see the module docstring); returns at most ``limit`` non-empty strings.

    ``column`` names the field / column holding the prompt when it is neither ``prompt`` nor ``text``.
    """
    if not isinstance(source, (str, Path)) or not str(source).strip():
        raise PromptError(
            "empty prompt source: pass builtin:train, builtin:heldout, a .jsonl/.json/.csv/.txt path or hf:<dataset>"
        )
    if limit is not None:
        limit = _as_int(limit, "limit", minimum=1, extra=" or None")
    source = str(source).strip()

    if source.startswith("builtin:"):
        # builtin:<set>[:<task>]: one task of a set (builtin:train:review, the paper-exp1 preset's review prompts)
        name, _, task = source[len("builtin:"):].partition(":")
        records = builtin_records(name)
        if task:
            tasks = sorted({r["task"] for r in records})
            if task not in tasks:
                raise PromptError(f"builtin:{name} has no task {task!r}; its tasks: {', '.join(tasks)}")
            records = [r for r in records if r["task"] == task]
        prompts = [r["prompt"] for r in records]
    elif source.startswith("hf:"):
        prompts = _load_hf(source, column)
    else:
        prompts = _load_file(Path(source).expanduser(), column)

    if not prompts:
        raise PromptError(
            f"no prompts found in {source!r}: every entry was empty; check the file / column, "
            f"or use builtin:train"
        )
    return prompts[:limit] if limit is not None else prompts


def builtin_records(name: str) -> list[dict[str, str]]:
    """The records (``{"prompt", "task"}``) of a built-in set, in file order."""
    if name in DERIVED:
        parent, instruction = DERIVED[name]
        return [dict(r, prompt=r["prompt"] + instruction) for r in builtin_records(parent)]
    if name not in BUILTIN:
        raise PromptError(
            f"unknown built-in prompt set {name!r}; available: "
            + ", ".join(f"builtin:{n}" for n in (*BUILTIN, *DERIVED))
        )
    path = BUILTIN[name]
    if not path.is_file():
        raise PromptError(f"built-in prompt file {path} is missing; reinstall pama or restore pama/data/")
    records = []
    for lineno, obj in _iter_jsonl(path):
        if not isinstance(obj, dict) or not isinstance(obj.get("prompt"), str):
            raise PromptError(f"{path}: line {lineno} is not an object with a string 'prompt'")
        prompt = obj["prompt"].strip()
        if prompt:
            records.append({"prompt": prompt, "task": str(obj.get("task", "")).strip()})
    return records


def prompt_sets() -> list[dict[str, Any]]:
    """The built-in sets for listings (web app, CLI): name, source string, path, count, counts per task."""
    out = []
    for name in (*BUILTIN, *DERIVED):
        path = BUILTIN[DERIVED[name][0] if name in DERIVED else name]
        records = builtin_records(name)
        out.append(
            {
                "name": name,
                "source": f"builtin:{name}",
                "path": str(path),
                "count": len(records),
                "tasks": dict(sorted(Counter(r["task"] for r in records).items())),
                "description": _DESCRIPTIONS.get(name, ""),
            }
        )
    return out


# --------------------------------------------------------------------------------------------------- files


def _load_file(path: Path, column: str | None) -> list[str]:
    ext = path.suffix.lower()
    if not path.exists():
        hint = ""
        if str(path) in (*BUILTIN, *DERIVED):
            hint = f" (did you mean builtin:{path}?)"
        raise PromptError(
            f"prompt file not found: {path}{hint}. Give an existing .jsonl/.json/.csv/.txt file, "
            f"builtin:train / builtin:heldout, or hf:<dataset>"
        )
    if path.is_dir():
        raise PromptError(
            f"{path} is a folder, not a prompt file; for a folder saved with datasets' save_to_disk use hf:{path}"
        )
    if ext not in _EXTENSIONS:
        raise PromptError(
            f"unknown prompt file extension {ext or '(none)'!r} for {path}; supported: "
            + ", ".join(_EXTENSIONS)
            + " (or hf:<dataset>). Rename the file or convert it."
        )
    if ext == ".txt":
        return [line.strip() for line in _read_text(path).splitlines() if line.strip()]
    if ext == ".jsonl":
        return _from_jsonl(path, column)
    if ext == ".json":
        return _from_json(path, column)
    return _from_csv(path, column, delimiter="\t" if ext == ".tsv" else ",")


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise PromptError(f"{path} is not UTF-8 text ({e}); re-save it as UTF-8") from None


def _iter_jsonl(path: Path) -> Iterable[tuple[int, Any]]:
    for lineno, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield lineno, json.loads(line)
        except json.JSONDecodeError as e:
            raise PromptError(
                f"{path}: malformed JSON on line {lineno} ({e.msg}, column {e.colno}); "
                f"each line must be one JSON object such as {{\"prompt\": \"...\"}}"
            ) from None


def _pick_field(keys: Sequence[str], column: str | None, where: str) -> str:
    if column is not None:
        if column in keys:
            return column
        raise PromptError(
            f"{where}: column {column!r} not found; columns found: {_fmt_keys(keys)}. "
            f"Pass one of them as column="
        )
    for name in _DEFAULT_FIELDS:
        if name in keys:
            return name
    raise PromptError(
        f"{where}: no 'prompt' or 'text' column; columns found: {_fmt_keys(keys)}. "
        f"Rename the column or pass column=<name>"
    )


def _fmt_keys(keys: Sequence[str]) -> str:
    return ", ".join(repr(k) for k in keys) if keys else "(none)"


def _as_text(value: Any, where: str) -> str | None:
    """A prompt value as a stripped string, None for missing / empty; anything else is an error."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise PromptError(f"{where}: expected text, got {type(value).__name__} {str(value)[:60]!r}")
    value = value.strip()
    return value or None


def _from_records(records: Iterable[tuple[str, Any]], column: str | None) -> list[str]:
    out = []
    for where, obj in records:
        if isinstance(obj, str):
            text = _as_text(obj, where)
        elif isinstance(obj, dict):
            text = _as_text(obj[_pick_field(list(obj), column, where)], where)
        else:
            raise PromptError(f"{where}: expected a string or an object, got {type(obj).__name__}")
        if text:
            out.append(text)
    return out


def _from_jsonl(path: Path, column: str | None) -> list[str]:
    return _from_records(((f"{path}: line {n}", obj) for n, obj in _iter_jsonl(path)), column)


def _from_json(path: Path, column: str | None) -> list[str]:
    try:
        data = json.loads(_read_text(path))
    except json.JSONDecodeError as e:
        raise PromptError(
            f"{path}: malformed JSON at line {e.lineno}, column {e.colno} ({e.msg}); "
            f"the file must hold a list of strings or of objects"
        ) from None
    if isinstance(data, dict) and isinstance(data.get("prompts"), list):
        data = data["prompts"]
    if not isinstance(data, list):
        raise PromptError(
            f"{path}: expected a JSON list of strings or objects, got {type(data).__name__}; "
            f"for one object per line use a .jsonl file"
        )
    return _from_records(((f"{path}: item {i}", obj) for i, obj in enumerate(data)), column)


def _from_csv(path: Path, column: str | None, delimiter: str) -> list[str]:
    reader = csv.DictReader(_read_text(path).splitlines(), delimiter=delimiter)
    keys = [k for k in (reader.fieldnames or []) if k is not None]
    if not keys:
        raise PromptError(f"{path}: empty file or no header row; the first line must name the columns")
    field = _pick_field(keys, column, str(path))
    return [t for row in reader if (t := _as_text(row.get(field), f"{path}: column {field!r}"))]


# --------------------------------------------------------------------------------------------------- datasets


def _parse_hf(source: str) -> tuple[str, str | None, str | None]:
    parts = source[len("hf:"):].split(":")
    if not parts[0].strip() or len(parts) > 3:
        raise PromptError(
            f"bad dataset source {source!r}; the form is hf:<dataset name or local folder>[:split[:column]], "
            f"e.g. hf:my/dataset:train:prompt"
        )
    name, split, column = (parts + [None, None])[:3]
    return name.strip(), (split or "").strip() or None, (column or "").strip() or None


def _looks_local(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~", ".\\", "..\\")) or Path(name).expanduser().exists()


def _load_hf(source: str, column: str | None) -> list[str]:
    name, split, spec_column = _parse_hf(source)
    column = column or spec_column
    try:
        import datasets  # heavy and optional: only for hf: prompt sources
    except ImportError:
        raise PromptError(
            f"{source!r} needs the 'datasets' package (pip install datasets), or export the prompts to a .jsonl file"
        ) from None

    local = Path(name).expanduser()
    if _looks_local(name) and not local.exists():
        raise PromptError(
            f"dataset folder not found: {local}; give a folder written by Dataset.save_to_disk, "
            f"or a .jsonl/.csv/.txt file path"
        )
    try:
        if local.is_dir() and any(
            (local / f).is_file() for f in ("dataset_dict.json", "state.json", "dataset_info.json")
        ):
            ds = datasets.load_from_disk(str(local))
        elif split is not None:
            ds = datasets.load_dataset(str(local) if local.exists() else name, split=split)
        else:
            ds = datasets.load_dataset(str(local) if local.exists() else name)
    except PromptError:
        raise
    except Exception as e:  # noqa: BLE001 - datasets raises many types (connection, not found, offline ...)
        raise PromptError(
            f"could not load dataset {name!r} ({type(e).__name__}: {str(e)[:300]}). "
            f"If you are offline or the name is wrong, export the prompts to a local .jsonl/.csv/.txt file, "
            f"or save the dataset with Dataset.save_to_disk(<folder>) and use hf:<folder>"
        ) from None

    if isinstance(ds, datasets.DatasetDict):
        splits = list(ds.keys())
        if split is None:
            if "train" in ds:
                split = "train"
            elif len(splits) == 1:
                split = splits[0]
            else:
                raise PromptError(
                    f"dataset {name!r} has several splits ({', '.join(splits)}); choose one as hf:{name}:<split>"
                )
        if split not in ds:
            raise PromptError(
                f"dataset {name!r} has no split {split!r}; splits found: {', '.join(splits)}"
            )
        ds = ds[split]
    elif isinstance(ds, datasets.IterableDataset) or not hasattr(ds, "column_names"):
        raise PromptError(f"dataset {name!r} is not a regular (map-style) dataset; save it to disk first")

    where = f"dataset {name!r}" + (f" split {split!r}" if split else "")
    field = _pick_field(list(ds.column_names), column, where)
    return [t for v in ds[field] if (t := _as_text(v, f"{where}: column {field!r}"))]


# --------------------------------------------------------------------------------------------------- batching


class PromptSampler:
    """Deterministic batches: ``batch(step)`` depends only on (prompts, batch_size, seed, step).

    The prompts form an endless stream made of one seeded permutation per epoch; batch ``step`` is the slice
    ``[step * batch_size, (step + 1) * batch_size)`` of that stream. Every epoch therefore shows each prompt
    exactly once, and a run resumed at step k sees the same batches as one that never stopped.
    """

    _CACHE = 4  # permutations kept (a batch spans at most a few epochs)

    def __init__(self, prompts: Sequence[str], batch_size: int, seed: int = 0):
        prompts = list(prompts)
        if not prompts:
            raise PromptError("PromptSampler needs at least one prompt")
        self.prompts = prompts
        self.batch_size = _as_int(batch_size, "batch_size", minimum=1)
        self.seed = _as_int(seed, "seed")
        self._perms: dict[int, list[int]] = {}

    def __len__(self) -> int:
        return len(self.prompts)

    @property
    def steps_per_epoch(self) -> float:
        """Batches per pass over the prompts (fractional when the sizes do not divide)."""
        return len(self.prompts) / self.batch_size

    def epoch(self, step: int) -> int:
        """The epoch in which batch ``step`` starts."""
        return (self._check_step(step) * self.batch_size) // len(self.prompts)

    def permutation(self, epoch: int) -> list[int]:
        """The order of prompt indices in ``epoch`` (seeded by (seed, epoch) only)."""
        perm = self._perms.get(epoch)
        if perm is None:
            digest = hashlib.sha256(f"pama.prompts:{self.seed}:{epoch}".encode()).digest()
            perm = list(range(len(self.prompts)))
            random.Random(int.from_bytes(digest[:8], "big")).shuffle(perm)
            if len(self._perms) >= self._CACHE:
                self._perms.pop(next(iter(self._perms)))
            self._perms[epoch] = perm
        return perm

    def indices(self, step: int) -> list[int]:
        """Indices into ``prompts`` of batch ``step``."""
        n, start = len(self.prompts), self._check_step(step) * self.batch_size
        return [self.permutation(p // n)[p % n] for p in range(start, start + self.batch_size)]

    def batch(self, step: int) -> list[str]:
        """The prompts of batch ``step`` (``batch_size`` of them)."""
        return [self.prompts[i] for i in self.indices(step)]

    @staticmethod
    def _check_step(step: int) -> int:
        return _as_int(step, "step", minimum=0)


def _as_int(value: Any, what: str, *, minimum: int | None = None, extra: str = "") -> int:
    """``value`` as a plain int (numpy / torch integers accepted), else a PromptError."""
    try:
        if isinstance(value, bool):
            raise TypeError
        out = operator.index(value)
    except TypeError:
        out = None
    if out is None or (minimum is not None and out < minimum):
        kind = {None: "an integer", 0: "a non-negative integer", 1: "a positive integer"}.get(
            minimum, f"an integer >= {minimum}"
        )
        raise PromptError(f"{what} must be {kind}{extra}, got {value!r}")
    return out

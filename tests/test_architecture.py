"""The layers of docs/ARCHITECTURE.md hold: `lint-imports` (import-linter, contracts in pyproject.toml) passes, and
the CLI's subcommands are plain imports (a broken module raises instead of its subcommand silently vanishing)."""
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_lint_imports_keeps_the_layers_and_finds_no_cycle():
    exe = Path(sys.executable).with_name("lint-imports")
    proc = subprocess.run([str(exe), "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout


def test_a_broken_subcommand_module_raises_instead_of_disappearing():
    code = ("import sys; sys.modules['pama.trainer'] = None\n"  # any import of pama.trainer now raises ImportError
            "from pama.cli import main\nmain(['train', '--help'])")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "import of pama.trainer halted" in proc.stderr, proc.stderr[-2000:]


def test_the_trainer_loop_names_no_method():
    """Methods are classes behind pama.methods.base.Method; the trainer calls the interface only."""
    import re

    text = (REPO / "pama" / "trainer.py").read_text()
    assert not re.search(r"method\s*(==|!=|in\b)|[\"'](pama|morlhf|mgda)[\"']", text)


def test_front_exports_load_without_the_trainer():
    """A front's exports read the stored front (pama.fronts): importing them loads neither the sweep workflow nor the
    trainer, nor torch (the import-linter contract checks the imports; this checks what a process really loads)."""
    code = ("import sys\nimport pama.report, pama.app.exports, pama.fronts\n"
            "print(sorted(m for m in ('pama.sweep', 'pama.trainer', 'torch', 'peft', 'accelerate') "
            "if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]", proc.stdout


def test_every_subcommand_renders_its_help():
    """`python -m pama COMMAND --help` for each subcommand (a % in a field's help text once broke train and sweep)."""
    import argparse

    from pama import cli

    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert list(sub.choices) == ["setup", "runs", "db", "objectives", "generate", "votes", "train", "sweep", "front",
                                 "evaluate", "worker"]
    for name, p in sub.choices.items():
        assert p.format_help().startswith(f"usage: python -m pama {name}"), name


# what a page may hand the store to: the app helpers (writes, exports, the model host) and the jobs, and a model
# host object of pama.app.hosting (named `host` in the pages)
STORE_TAKERS = {"ballots", "deletion", "exports", "forms", "hosting", "jobs", "reads", "selection", "settings",
                "steering", "host"}


def store_handoffs(source: str) -> list[str]:
    """Calls in a page's source that touch the store other than through STORE_TAKERS: ``store.method(...)``, or
    the store passed to any other function (``front_table(store, ...)``), directly, as a button callback's
    ``args=(store, ...)`` or to an executor's ``submit(fn, store, ...)``. Reading ``store.url`` is fine."""
    import ast

    tree = ast.parse(source)
    names = {"store"} | {t.id for node in ast.walk(tree) if isinstance(node, ast.Assign)
                         and "reads.store" in ast.unparse(node.value) for t in node.targets if isinstance(t, ast.Name)}

    def is_store(node) -> bool:
        return isinstance(node, ast.Name) and node.id in names

    def allowed(callee) -> bool:
        """``module.fn`` with module in STORE_TAKERS (each branch of ``a.f if c else b.g``)."""
        if isinstance(callee, ast.IfExp):
            return allowed(callee.body) and allowed(callee.orelse)
        return isinstance(callee, ast.Attribute) and isinstance(callee.value, ast.Name) \
            and callee.value.id in STORE_TAKERS

    bad = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        if isinstance(node.func, ast.Attribute) and is_store(node.func.value):
            bad.append((node.lineno, f"line {node.lineno}: store.{node.func.attr}(...)"))
            continue
        kw = {k.arg: k.value for k in node.keywords}
        func, args = node.func, [*node.args, *kw.values()]
        if isinstance(func, ast.Attribute) and func.attr == "submit" and node.args:  # executor: submit(fn, *args)
            func, args = node.args[0], args[1:]
        if any(is_store(a) for a in args) and not allowed(func):
            bad.append((node.lineno, f"line {node.lineno}: {ast.unparse(func)}(store, ...)"))
        callback_args = kw.get("args")
        if isinstance(callback_args, ast.Tuple) and any(is_store(a) for a in callback_args.elts):
            callback = kw.get("on_click") or kw.get("on_change")
            if callback is None or not allowed(callback):
                bad.append((node.lineno, f"line {node.lineno}: callback "
                                         f"{ast.unparse(callback) if callback else '?'}(store, ...)"))
    return [text for _, text in sorted(bad)]


def test_store_handoffs_are_found():
    """The check can fail: a raw store method, the store handed to a workflow function, and as a callback's args."""
    src = ("store = reads.store()\nrows = store.points()\nf_rows, s = front_table(store, sid)\n"
           "st.button('x', on_click=sweep.run, args=(store, 1))\npool.submit(report.votes_json, store, 1)\n"
           "jobs.cancel(store, 1)\nst.button('y', on_click=jobs.cancel, args=(store, 1))\n"
           "(jobs.start_sweep if a else jobs.start_train)(cfg, store=store)\nst.caption(store.url)\n"
           "pool.submit(host.generate_at, store, 'hi')\n")
    assert store_handoffs(src) == ["line 2: store.points(...)", "line 3: front_table(store, ...)",
                                   "line 4: callback sweep.run(store, ...)", "line 5: report.votes_json(store, ...)"]


def test_pages_read_the_store_only_through_the_typed_reads():
    """Pages stay thin: every read goes through pama.app.reads (cached, or .fresh() for live views), never a raw
    store method next to a cached read; writes and exports go through the app helpers and pama.jobs, which take
    the store."""
    for page in [REPO / "app.py", *sorted((REPO / "views").glob("*.py"))]:
        bad = store_handoffs(page.read_text())
        assert not bad, (f"{page.name} reads the store around pama.app.reads: {bad}; add a typed read to "
                         "pama/app/reads.py or a helper to pama/app/")


# a comment that says why an import sits inside a function; a bare `# noqa` or `# type: ignore` says nothing
IMPORT_REASON = r"\b(heavy|optional|only|lazy|lazily|cycle|circular|slow)\b"


def unexplained_function_imports(source: str) -> list[int]:
    """Line numbers of imports inside functions with no comment saying why (heavy, optional, only when ...,
    lazy): on the import's line, on the line above, or on another line of the same run of consecutive imports."""
    import ast
    import re

    lines = source.splitlines()
    bad = []
    for fn in ast.walk(ast.parse(source)):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        runs: list[list[int]] = []
        for node in ast.walk(fn):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                if runs and node.lineno - runs[-1][-1] <= 1:
                    runs[-1].append(node.end_lineno or node.lineno)
                else:
                    runs.append([node.lineno, node.end_lineno or node.lineno])
        for run in runs:
            span = lines[max(run[0] - 2, 0):run[-1]]
            comments = " ".join(line.split("#", 1)[1] for line in span if "#" in line)
            if not re.search(IMPORT_REASON, comments, re.IGNORECASE):
                bad.append(run[0])
    return sorted(set(bad))


def test_unexplained_function_imports_are_found():
    src = ("def f():\n    import json\n    return json\n\n"
           "def g():\n    import torch  # heavy\n    from peft import LoraConfig\n    return torch, LoraConfig\n\n"
           "def h():\n    # optional: only with the hf extra\n    import datasets\n    return datasets\n\n"
           "def k():\n    import yaml  # noqa: PLC0415\n    return yaml\n\n"
           "def m():\n    # ---- helpers ----\n    import csv\n    return csv\n")
    assert unexplained_function_imports(src) == [2, 16, 21]


def test_imports_inside_functions_say_why():
    """The issue's rule: no import inside a function unless the module is heavy or optional, and a comment says so
    (a stray one, like `import shutil` once in conditioning.py, belongs at the top of the module)."""
    files = [REPO / "app.py", *sorted((REPO / "pama").rglob("*.py")), *sorted((REPO / "views").glob("*.py"))]
    found = {str(p.relative_to(REPO)): bad for p in files if (bad := unexplained_function_imports(p.read_text()))}
    assert not found, f"imports inside functions without a comment saying why (heavy / optional): {found}"


def test_make_test_fast_leaves_out_the_slow_tests_and_make_test_runs_them_all():
    """Issue 26: `make test-fast` (unit tests, `-m "not slow"`) beside `make test` (everything, what .ci/run calls);
    both print the 15 slowest tests. The slow marker is registered and given by tests/conftest.py."""
    import re
    import tomllib

    make = (REPO / "Makefile").read_text()
    fast = re.search(r"^test-fast:.*\n((?:\t.*\n)+)", make, re.M)
    full = re.search(r"^test:.*\n((?:\t.*\n)+)", make, re.M)
    assert fast and '-m "not slow"' in fast.group(1)
    assert full and "-m" not in full.group(1).split("pytest", 1)[1]
    assert "make test" in (REPO / ".ci" / "run").read_text()
    ini = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert "--durations=15" in ini["addopts"] and any(m.startswith("slow:") for m in ini["markers"])
    import types

    from conftest import pytest_collection_modifyitems  # tests/conftest.py: the hook that gives the marker

    class Item:
        def __init__(self, module: str, *markers: str):
            self.module, self.markers = types.SimpleNamespace(__name__=module), set(markers)
            self.name = "test_something"

        def get_closest_marker(self, name):
            return name if name in self.markers else None

        def add_marker(self, marker):
            self.markers.add(marker.name)

    items = [Item("test_integration"), Item("test_models", "integration"), Item("test_browser", "browser"),
             Item("test_sweep"), Item("test_jobs"), Item("test_preference"), Item("test_models"),
             Item("test_algorithm")]
    items[4].name = "test_cancel_stops_a_running_job"
    pytest_collection_modifyitems(None, items)
    assert ["slow" in i.markers for i in items] == [True, True, True, True, True, False, False, False]

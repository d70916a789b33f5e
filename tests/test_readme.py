"""The README stays a newcomer's page (issue 26): under 10 KB, every docs page it names exists, its docs index lists
every page in docs/, and every `python -m pama ...` command it shows is one the CLI accepts. Detail belongs in docs/."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MAX_BYTES = 10 * 1024


def readme() -> str:
    return README.read_text(encoding="utf-8")


def test_readme_is_under_10_kb():
    size = len(README.read_bytes())
    assert size < MAX_BYTES, f"README.md is {size} bytes (limit {MAX_BYTES}): move detail to docs/"


def test_every_docs_page_the_readme_names_exists():
    named = set(re.findall(r"docs/[\w./-]+?\.md", readme()))
    assert named, "the README names no docs page"
    missing = sorted(p for p in named if not (ROOT / p).is_file())
    assert not missing, f"README names docs pages that do not exist: {missing}"


def test_the_docs_index_lists_every_page_in_docs():
    text = readme()
    index = text[text.index("\n## Docs\n"):]
    index = index[:index.find("\n## ", 1)]
    listed = set(re.findall(r"\(docs/([\w.-]+\.md)\)", index))
    pages = {p.name for p in (ROOT / "docs").glob("*.md")}
    assert pages - listed == set(), f"docs pages missing from the README's docs index: {sorted(pages - listed)}"
    assert listed - pages == set(), f"the README's docs index lists pages not in docs/: {sorted(listed - pages)}"


def test_the_readme_says_what_the_demos_do_not_show():
    """The honest statement stays on the first page: demo/front's trade-off is not answer length (its ends' intervals
    apart raw and length-controlled, docs/learnability.md section 15) and what it does not show; demo/conditioned's
    sentiment follows the preference at equal length, its relevance ends are not apart (section 22), and the switch
    that controls for length is named."""
    text = " ".join(readme().split())
    demos = text.split("## The shipped demos", 1)[1].split("## Objectives", 1)[0]
    front, conditioned = demos.split("**demo/conditioned**", 1)
    assert "not answer length" in front and "length-controlled" in front and "What it does not show" in front
    assert "length-controlled" in conditioned and "at equal length" in conditioned
    assert "What it does not show" in conditioned and "not apart" in conditioned
    assert "--length-control" in text and "Control for answer length" in text
    for objective in ("informativeness", "density"):
        assert f"`{objective}`" in text.split("## Objectives", 1)[1], objective


def readme_commands() -> list[list[str]]:
    """The argument lists of every `python -m pama ...` the README shows (in code spans and code blocks), with
    optional parts' brackets dropped and comments cut."""
    commands = []
    for match in re.finditer(r"python -m pama\b([^`#\n]*)", readme()):
        argv = shlex.split(match.group(1).replace("[", " ").replace("]", " "))
        if argv:
            commands.append(argv)
    return commands


def test_the_readme_shows_commands_of_each_step():
    subcommands = {argv[0] for argv in readme_commands()}
    assert {"train", "sweep", "front", "generate", "evaluate", "votes"} <= subcommands, subcommands


@pytest.mark.parametrize("argv", readme_commands(), ids=lambda argv: " ".join(argv))
def test_every_readme_command_parses(argv, capsys):
    """argparse accepts it: the subcommand exists and so does every flag and choice (placeholders such as RUN_ID
    parse as the values they stand for)."""
    from pama import cli

    parser = cli.build_parser()
    try:
        parser.parse_args(argv)
    except SystemExit as exit_:
        assert exit_.code == 0 and "--help" in argv, f"`python -m pama {' '.join(argv)}`: {capsys.readouterr().err}"

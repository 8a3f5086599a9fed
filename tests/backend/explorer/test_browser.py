"""The explorer in a real browser: Debian's chromium driven by Playwright, against the showcase chain.

Every page loads without a console error at 390 px (a phone) and 1440 px (a desktop), with no sideways scroll
on the phone; the figures shown are the chain's and the report's; charts are drawn; countdowns tick; a new block
refreshes the page by itself; axe-core (from npm, run in the page) finds no WCAG 2 A/AA violation; the keyboard
reaches the content and opens "why did I get this". Screenshots go to runs/explorer/ (not committed).
"""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest
import uvicorn

from backend.api import ApiSettings, create_app
from backend.api.explorer.words import ether
from backend.chain.anvil import free_port

pytestmark = [pytest.mark.chain, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[3]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
SHOTS = ROOT / "runs" / "explorer"
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip
WIDTHS = {"phone": 390, "desktop": 1440}


@pytest.fixture(scope="module")
def browser():
    # Module scope: Playwright's sync API keeps an event loop running in this thread while it is open, and every
    # later test that calls asyncio.run() would fail.
    if CHROMIUM is None:
        pytest.skip(
            "no chromium on this machine: `make install` installs Debian's chromium where apt is available"
        )
    playwright = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (make install)"
    )
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def server(showcase_settings):
    app = create_app(showcase_settings, ApiSettings())
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the explorer's server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", app
    server.should_exit = True
    thread.join(timeout=30)


def _pages(showcase, market):
    demo, running = showcase.demo_project, showcase.running_project
    trainer = showcase.demo_report["trainers"][0]["address"]
    update = market.submissions(demo, 1)[0].trainer
    return {
        "projects": "/",
        "project": f"/projects/{demo}",
        "project-running": f"/projects/{running}",
        "round": f"/projects/{demo}/rounds/1",
        "round-open": f"/projects/{running}/rounds/1",
        "trainer": f"/trainers/{trainer}",
        "update": f"/projects/{demo}/rounds/1/updates/{update}",
        "sources": "/sources",
        "source": f"/sources/{showcase.source_ids[0]}",
        "not-found": "/projects/99",
    }


def _open(browser, base, path, width, errors):
    page = browser.new_page(viewport={"width": width, "height": 900})
    page.on("console", lambda m: errors.append(f"{path}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"{path}: {e}"))
    response = page.goto(base + path, wait_until="load")
    return page, response


def _axe(page) -> list[str]:
    page.add_script_tag(path=str(AXE))
    found = page.evaluate(
        "async () => (await axe.run(document, {runOnly: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}))"
        ".violations.map(v => v.id + ': ' + v.nodes.map(n => n.target.join(' ')).slice(0, 3).join(', '))"
    )
    return list(found)


def test_every_page_loads_clean_on_a_phone_and_a_desktop(browser, server, showcase, market):
    base, _app = server
    SHOTS.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    violations: dict[str, list[str]] = {}
    for name, path in _pages(showcase, market).items():
        for device, width in WIDTHS.items():
            page, response = _open(browser, base, path, width, errors)
            assert response.status == (404 if name == "not-found" else 200), path
            if device == "phone":
                overflow = page.evaluate("document.documentElement.scrollWidth")
                assert overflow <= width + 1, f"{path} scrolls sideways on a phone ({overflow} px)"
            if page.locator("div.plot").count():
                page.wait_for_selector("div.plot canvas")
            page.screenshot(path=str(SHOTS / f"{name}-{device}.png"), full_page=True)
            if AXE.is_file():
                found = _axe(page)
                if found:
                    violations[f"{name}-{device}"] = found
            page.close()
    # The 404 page's own status is the one resource error expected.
    errors = [e for e in errors if not (e.startswith("/projects/99:") and "404 (Not Found)" in e)]
    assert not errors, errors
    assert not violations, violations


def test_the_figures_shown_are_the_chains(browser, server, showcase, market):
    base, _app = server
    errors: list[str] = []
    pid = showcase.demo_project
    page, _ = _open(browser, base, f"/projects/{pid}", 1440, errors)
    info = market.project(pid)
    assert page.inner_text("#pool") == ether(info.pool)
    assert page.inner_text("#escrow") == ether(info.escrow)
    page.close()
    page, _ = _open(browser, base, f"/projects/{pid}/rounds/1", 1440, errors)
    for row in page.locator("tr[data-trainer]").all():
        address = row.get_attribute("data-trainer")
        share = market.submission_entry(pid, 1, address).share
        assert row.locator("td[data-label=Share]").inner_text() == ether(share)
    page.close()
    assert not errors, errors


def test_a_new_block_refreshes_the_page_and_countdowns_tick(browser, server, showcase, market):
    base, _app = server
    errors: list[str] = []
    page, _ = _open(browser, base, f"/projects/{showcase.running_project}", 1440, errors)
    shown = int(page.inner_text("#block-number"))
    # The challenge window's countdown shows seconds (it ends within the hour): it must move by itself.
    soonest = """() => [...document.querySelectorAll('time.countdown')]
        .filter(t => +t.dataset.remaining > 0).sort((a, b) => a.dataset.remaining - b.dataset.remaining)[0]"""
    first = page.evaluate(f"({soonest})().textContent")
    page.wait_for_function(f"t => ({soonest})().textContent !== t", arg=first)
    market.client.w3.provider.make_request("evm_mine", [])
    page.wait_for_function(
        "n => parseInt(document.getElementById('block-number').textContent, 10) > n",
        arg=shown,
        timeout=20_000,
    )
    assert page.locator("div.plot canvas").count() >= 2  # the charts were drawn again after the swap
    page.close()
    assert not errors, errors


def test_the_keyboard_reaches_the_content_and_opens_why(browser, server, showcase):
    base, _app = server
    errors: list[str] = []
    page, _ = _open(browser, base, f"/projects/{showcase.demo_project}/rounds/0", 1440, errors)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip"
    page.keyboard.press("Enter")
    assert page.evaluate("location.hash") == "#main"
    summary = page.locator("details.why summary").first
    summary.focus()
    page.keyboard.press("Enter")
    assert page.locator("details.why").first.evaluate("d => d.open")
    assert "The round's pool is" in page.locator("details.why").first.inner_text()
    page.close()
    assert not errors, errors

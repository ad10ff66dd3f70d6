"""The run page in a real browser (Debian's headless Chromium through chromedriver, with
scripts disabled: the page needs none) against a real daemon on loopback and a real
incident: the lab's API leaking memory in its container.

The alert goes to the daemon as Alertmanager sends it; the daemon diagnoses with the real
backends; the page shows the finding and the memory chart (a screenshot is saved in the
test's tmp dir); an approver who is not allowed by the policy, a forged cookie and a
cross-site form cannot approve; the allowed approver signs in, approves the restart from
the page, and the page updates by itself until the remedy has run. The page of a
PostgreSQL run (its inventory holds a DSN with a password, by env var) shows no password,
and the page fits a phone's 375 px without horizontal scrolling.
"""

from __future__ import annotations

import os
import shutil
import textwrap
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from tests.daemonkit import RunningDaemon, daemon_in_thread
from tests.lab.api import ApiService, fault
from tests.lab.faults import PASSWORDS
from tests.scenarios.servicelab import ServiceLab
from tests.support.polling import wait_for

pytestmark = pytest.mark.lab

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
ROOT = Path(__file__).resolve().parents[2]
INTAKE, ALICE, MALLORY = "rp-intake-3f9a1c", "rp-alice-7d2e4b", "rp-mallory-0c5a8e"
AM_URL = "http://127.0.0.1:9093"
GENERATOR = "http://127.0.0.1:9090/graph?g0.expr=container_memory_usage_bytes"

CONFIG = """
auth: {{mode: bearer, token_env: RP_INTAKE_TOKEN}}
approvers:
  alice: {{token_env: RP_ALICE_TOKEN}}
  mallory: {{token_env: RP_MALLORY_TOKEN}}
routes:
  - name: memory
    match: ['alertname="ApiMemoryLeak"']
    playbook: memory-leak
    targets: {{api: test-api}}
    params: {{window: 8s, watch_for: 3s}}
  - name: db
    match: ['alertname="DbPoolExhausted"']
    playbook: db-pool-exhausted
    targets: {{db: test-db}}
playbooks: [{playbooks}]
inventory: [{inventory}]
"""
DB_INVENTORY = """
targets:
  test-db:
    kind: postgres
    dsn_env: RUNBOOK_LAB_DSN
    action_dsn_env: RUNBOOK_LAB_OPS_DSN
"""
# Beside the inventory: mallory holds an approver's token, but not for this playbook.
POLICY = """
approvers:
  "*": [alice]
"""


def alert(name: str) -> dict[str, Any]:
    """A version 4 webhook body, as Alertmanager posts it."""
    return {"version": "4", "groupKey": f'{{}}:{{alertname="{name}"}}', "status": "firing",
            "receiver": "runbook", "groupLabels": {"alertname": name}, "commonLabels": {},
            "commonAnnotations": {}, "externalURL": AM_URL, "truncatedAlerts": 0,
            "alerts": [{"status": "firing", "labels": {"alertname": name, "env": "lab"},
                        "annotations": {"summary": f"{name} in the lab"},
                        "startsAt": "2026-12-02T03:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
                        "generatorURL": GENERATOR, "fingerprint": ""}]}


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    """Headless Chromium, scripts off; Selenium Manager is never asked to download."""
    for path in (CHROMIUM, CHROMEDRIVER):
        assert os.access(path, os.X_OK), (f"{path} is missing: apt-get install chromium "
                                          "chromium-driver (scripts/setup installs them)")
    os.environ["SE_OFFLINE"] = "true"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1100,1500"):
        options.add_argument(argument)
    options.add_experimental_option(
        "prefs", {"profile.managed_default_content_settings.javascript": 2})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def daemon(services: ServiceLab, tmp_path: Path,
           monkeypatch: pytest.MonkeyPatch, runbook_home: Path) -> Iterator[RunningDaemon]:
    from runner.registry import default_registry

    for name, value in {"RP_INTAKE_TOKEN": INTAKE, "RP_ALICE_TOKEN": ALICE,
                        "RP_MALLORY_TOKEN": MALLORY}.items():
        monkeypatch.setenv(name, value)
    (services.inventory.parent / "policy.yaml").write_text(POLICY)
    config = tmp_path / "daemon.yaml"
    config.write_text(textwrap.dedent(CONFIG).format(playbooks=ROOT / "playbooks",
                                                     inventory=services.inventory))
    if not services.inventory.exists():  # no API started: the database alone
        services.inventory.write_text(DB_INVENTORY)
    with daemon_in_thread(config, runbook_home, INTAKE, default_registry()) as running:
        yield running


def start_incident(daemon: RunningDaemon, name: str, status: str) -> str:
    assert daemon.post("/v1/alerts/alertmanager", alert(name)).status_code == 202
    runs = daemon.wait_run(lambda runs: any(r["status"] == status for r in runs), timeout=120)
    return str(next(r["run_id"] for r in runs if r["status"] == status))


def sign_in(driver: WebDriver, daemon: RunningDaemon, run_id: str, token: str) -> None:
    driver.get(f"{daemon.url}/runs/{run_id}")
    driver.find_element(By.LINK_TEXT, "sign in as an approver").click()
    driver.find_element(By.NAME, "token").send_keys(token)
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait(driver).until(lambda d: d.current_url == f"{daemon.url}/runs/{run_id}"
                       and d.find_elements(By.XPATH, "//button[text()='sign out']"))


def wait(driver: WebDriver, timeout: float = 30) -> WebDriverWait[WebDriver]:
    """Until a condition holds: the page may be loading (a form was posted) or reloading
    itself (a run in progress), so an element may be missing or go stale meanwhile."""
    return WebDriverWait(driver, timeout, poll_frequency=0.2, ignored_exceptions=(
        StaleElementReferenceException, NoSuchElementException))


def notice(driver: WebDriver) -> str:
    """The page's message to the reader (a refusal), once the posted form's answer shows."""
    return str(wait(driver).until(
        lambda d: d.find_element(By.CSS_SELECTOR, "[role=alert]").text))


def sign_out(driver: WebDriver) -> None:
    driver.find_element(By.XPATH, "//button[text()='sign out']").click()
    wait(driver).until(lambda d: d.current_url.endswith("/runs"))


def remedy_status(driver: WebDriver, remedy: str) -> str:
    return str(driver.find_element(By.CSS_SELECTOR, f"#remedy-{remedy} .badge").text)


@dataclass
class Site:
    url: str
    pages: dict[str, bytes]


@pytest.fixture
def attacker() -> Iterator[Site]:
    """Another site (localhost, not 127.0.0.1) serving what a test puts in `pages`."""
    pages: dict[str, bytes] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = pages.get(self.path, b"")
            self.send_response(200 if body else 404)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield Site(f"http://localhost:{server.server_port}", pages)
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def leaking_api(services: ServiceLab) -> ApiService:
    """The lab's API in a 256 MiB container, leaking 6 MiB a second."""
    api = services.start(mem_limit="256m")
    fault(api.url, leak_mb_per_s=6)
    return api


def test_a_memory_leak_on_its_run_page(leaking_api: ApiService, daemon: RunningDaemon,
                                       browser: WebDriver, tmp_path: Path,
                                       attacker: Site) -> None:
    run_id = start_incident(daemon, "ApiMemoryLeak", "awaiting_approval")
    journal = daemon.daemon.journal

    # Anyone with the link: the finding and the chart, read-only, links back to the alert.
    browser.get(f"{daemon.url}/runs/{run_id}")
    finding = browser.find_element(By.XPATH, "//div[contains(@class,'finding')]"
                                             "[contains(., 'memory-growing')]")
    assert finding.is_displayed() and "MiB/min" in finding.text
    chart = browser.find_element(By.CSS_SELECTOR, "#chart-memory svg")
    assert chart.is_displayed() and chart.size["width"] > 300
    assert browser.find_elements(By.CSS_SELECTOR, "#chart-memory line.limit")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#chart-memory circle.sample")) >= 5
    assert browser.find_elements(By.CSS_SELECTOR, f"a[href='{GENERATOR}']")
    assert not browser.find_elements(By.CSS_SELECTOR, "form.decide")
    assert not browser.find_elements(By.TAG_NAME, "script")
    shot = tmp_path / "runpage.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")
    if os.environ.get("RUNBOOK_SCREENSHOT_TO"):  # to refresh docs/img/runpage.png
        shutil.copy(shot, os.environ["RUNBOOK_SCREENSHOT_TO"])

    # Dark theme: the page and the chart's text follow it (currentColor in the SVG).
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {
        "features": [{"name": "prefers-color-scheme", "value": "dark"}]})
    background, label = browser.execute_script(
        "return [getComputedStyle(document.body).backgroundColor, getComputedStyle("
        "document.querySelector('#chart-memory svg text')).fill]")
    assert (background, label) == ("rgb(18, 22, 27)", "rgb(228, 231, 235)")
    browser.save_screenshot(str(tmp_path / "runpage-dark.png"))
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})

    # The run directory has the chart as a file, and report.md shows it.
    run_dir = daemon.daemon.journal.run_dir(run_id)
    svg = ET.parse(run_dir / "evidence" / "memory.svg").getroot()
    assert svg.find("{http://www.w3.org/2000/svg}line[@class='limit']") is not None
    assert "](evidence/memory.svg)" in (run_dir / "report.md").read_text()

    # A forged session cookie is no session: still read-only, and a POST with it is refused.
    browser.add_cookie({"name": "runbook_session", "value": "forged-" + "x" * 40})
    browser.refresh()
    assert browser.find_elements(By.LINK_TEXT, "sign in as an approver")
    forged = httpx.post(f"{daemon.url}/runs/{run_id}/decide",
                        cookies={"runbook_session": "forged-" + "x" * 40},
                        data={"csrf": "x", "remedy": "rolling-restart", "decision": "approve"})
    assert forged.status_code == 401

    # Mallory has an approver's token, but the policy does not let her approve this.
    sign_in(browser, daemon, run_id, MALLORY)
    browser.find_element(By.CSS_SELECTOR, "#remedy-rolling-restart button.approve").click()
    assert "mallory may not approve memory-leak/rolling-restart" in notice(browser)
    sign_out(browser)
    assert journal.approvals(run_id, "rolling-restart") == []

    # Signed in as alice, a form on another site posts without the CSRF token: refused.
    sign_in(browser, daemon, run_id, ALICE)
    attacker.pages["/attack.html"] = f"""<!doctype html><form method="post"
        action="{daemon.url}/runs/{run_id}/decide"><input type="hidden" name="remedy"
        value="rolling-restart"><button name="decision" value="approve" id="go">Win a
        prize</button></form>""".encode()
    browser.get(f"{attacker.url}/attack.html")
    browser.find_element(By.ID, "go").click()
    # SameSite=Strict: the browser does not even send the session; and there is no token
    assert "nothing was recorded" in notice(browser)
    assert journal.approvals(run_id, "rolling-restart") == []

    # Alice approves from the page; the page reloads itself until the restart has run.
    browser.get(f"{daemon.url}/runs/{run_id}")
    assert remedy_status(browser, "rolling-restart") == "proposed"
    browser.find_element(By.CSS_SELECTOR, "#remedy-rolling-restart button.approve").click()
    wait(browser, 180).until(lambda d: remedy_status(d, "rolling-restart") == "succeeded"
                          and "approved by alice" in d.find_element(
                              By.ID, "remedy-rolling-restart").text)
    assert browser.current_url == f"{daemon.url}/runs/{run_id}"
    [approval] = journal.approvals(run_id, "rolling-restart")
    assert approval.by == "alice"
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": 375, "height": 812, "deviceScaleFactor": 2, "mobile": True})
    browser.get(f"{daemon.url}/runs/{run_id}")
    assert phone_fits(browser)  # the chart scales down with the page
    browser.save_screenshot(str(tmp_path / "runpage-after.png"))


def test_a_database_run_page_shows_no_password_and_fits_a_phone(
        browser: WebDriver, daemon: RunningDaemon, lab: Any, tmp_path: Path) -> None:
    run_id = start_incident(daemon, "DbPoolExhausted", "completed")
    browser.get(f"{daemon.url}/runs/{run_id}")
    wait_for(lambda: "db-pool-exhausted" in browser.title, "the page's title")
    page = browser.page_source
    assert "test-db" in page
    # the inventory's DSNs hold the passwords; the page holds none of them
    assert PASSWORDS["runbook_ro"] in os.environ["RUNBOOK_LAB_DSN"]
    assert PASSWORDS["runbook_ops"] in os.environ["RUNBOOK_LAB_OPS_DSN"]
    assert not any(secret in page for secret in PASSWORDS.values())
    # every step's evidence, unfolded, shows no password either
    for summary in browser.find_elements(By.CSS_SELECTOR, "details.step > summary"):
        summary.click()
    assert not any(secret in browser.page_source for secret in PASSWORDS.values())

    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": 375, "height": 812, "deviceScaleFactor": 2, "mobile": True})
    browser.refresh()
    assert phone_fits(browser)
    browser.save_screenshot(str(tmp_path / "runpage-phone.png"))
    for summary in browser.find_elements(By.CSS_SELECTOR, "details > summary"):
        summary.click()  # every step's evidence open: long JSON wraps, nothing overflows
    assert phone_fits(browser)


def phone_fits(driver: WebDriver) -> bool:
    """The page at a phone's 375 px has no horizontal scroll."""
    inner, scroll = driver.execute_script(
        "return [window.innerWidth, document.scrollingElement.scrollWidth]")
    assert inner == 375, inner
    return bool(scroll <= inner)

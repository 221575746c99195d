"""``streamjobs web`` used as a person would: headless chromium against the real broker, a
real worker and the dashboard started as a subprocess. Screenshots of each page land in
``.streamjobs/screenshots/``."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from streamjobs._config import KafkaConfig
from streamjobs._ops.lag import group_lag
from tests.conftest import BOOTSTRAP
from tests.kafka.web_support import (
    JOB_TYPE,
    SCHEMAS,
    TOKEN,
    Dashboard,
    browser,
    dashboard,
    eventually,
    navigate,
    shot,
    text_of,
)
from tests.ports import free_port_block


@pytest.fixture(scope="module")
def dash(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    with dashboard(tmp_path_factory.mktemp("web")) as d:
        yield d


@pytest.fixture(scope="module")
def driver() -> Iterator[webdriver.Chrome]:
    with browser() as b:
        yield b


def state(driver: webdriver.Chrome) -> str:
    return text_of(driver, "#state")


def log_in(driver: webdriver.Chrome, dash: Dashboard, token: str) -> None:
    if not driver.find_elements(By.LINK_TEXT, "Log in"):  # a session from an earlier test
        driver.delete_all_cookies()
        driver.refresh()
    navigate(driver, driver.find_element(By.LINK_TEXT, "Log in"))
    driver.find_element(By.ID, "token").send_keys(token)
    navigate(driver, driver.find_element(By.ID, "login"))


def test_job_page_follows_a_job_to_succeeded_live(dash: Dashboard,
                                                  driver: webdriver.Chrome) -> None:
    """A job's page shows its state changing (started, then succeeded) as the worker runs
    it, pushed over SSE: the page is never reloaded."""
    job = dash.emit(sleep_ms=4000)
    driver.get(f"{dash.base}/jobs/{job}")
    driver.execute_script("window.__sameLoad = true")
    eventually(lambda: state(driver) == "started", 30, "the page to show 'started'", driver)
    shot(driver, "job-started")
    eventually(lambda: state(driver) == "succeeded", 30, "the page to show 'succeeded'",
               driver)
    assert driver.execute_script("return window.__sameLoad === true"), "the page reloaded"
    assert "succeeded" in text_of(driver, "table.timeline")
    shot(driver, "job")


def test_failing_job_retries_dies_and_is_reprocessed_from_the_page(
        dash: Dashboard, driver: webdriver.Chrome) -> None:
    """A failing job shows retrying, then dead; reprocessing it from the dead-letter page
    (log in, tick it, dry-run preview, confirm) runs it again and it succeeds."""
    broken = dash.work / f"broken-{uuid.uuid4().hex[:6]}"
    broken.write_text("until fixed")
    job = dash.emit(fail=f"while_file:{broken}")
    driver.get(f"{dash.base}/jobs/{job}")
    eventually(lambda: state(driver) == "retrying", 30, "'retrying'", driver)
    shot(driver, "job-retrying")
    eventually(lambda: state(driver) == "dead", 40, "'dead'", driver)
    shot(driver, "job-dead")

    driver.get(f"{dash.base}/dead-letters?topic={dash.dlq}")
    assert not driver.find_elements(By.ID, "preview"), "actions offered before logging in"
    log_in(driver, dash, TOKEN)
    assert "/dead-letters" in driver.current_url
    row = f"//tr[.//a[text()='{job}']]"
    driver.find_element(By.XPATH, f"{row}//input[@name='ref']").click()
    shot(driver, "dead-letters")
    navigate(driver, driver.find_element(By.ID, "preview"))
    assert "Dry run, nothing written yet: 1 dead letter(s) would be re-published" in \
        text_of(driver, "#outcome")
    shot(driver, "reprocess-preview")
    broken.unlink()  # the bug is fixed
    navigate(driver, driver.find_element(By.ID, "confirm"))
    assert "Re-published 1 dead letter(s)" in text_of(driver, "#outcome")
    shot(driver, "reprocess-done")

    driver.get(f"{dash.base}/jobs/{job}")
    eventually(lambda: state(driver) == "succeeded", 40, "the reprocessed job to succeed",
               driver)
    timeline = text_of(driver, "table.timeline")
    assert "dead" in timeline and "reprocessed" in timeline and "succeeded" in timeline
    shot(driver, "job-reprocessed")
    # Back on the list, the dead letter is marked and cannot be picked again.
    driver.get(f"{dash.base}/dead-letters?topic={dash.dlq}")
    assert driver.find_element(By.XPATH, f"{row}//input[@name='ref']").get_attribute("disabled")
    assert "reprocessed" in driver.find_element(By.XPATH, row).text


def test_wrong_or_missing_token_is_refused(dash: Dashboard, driver: webdriver.Chrome) -> None:
    """Without a session, or with a wrong token, nothing can be changed."""
    driver.delete_all_cookies()
    driver.get(f"{dash.base}/dead-letters?topic={dash.dlq}")
    status = driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        const body = new URLSearchParams({scope: "matching", topic: arguments[0]});
        fetch(arguments[1] + "/dead-letters/reprocess", {method: "POST", body})
          .then(r => done(r.status));""", dash.dlq, dash.base)
    assert status == 403
    log_in(driver, dash, "not-the-token")
    assert "Wrong access token" in text_of(driver, "#error")
    assert not driver.get_cookies(), "a session cookie for a wrong token"
    shot(driver, "login-refused")
    status = driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        fetch(arguments[0] + "/replay", {method: "POST", headers: {Authorization: "Bearer x"},
              body: new URLSearchParams({group: "g", topics: "t", confirm: "yes"})})
          .then(r => done(r.status));""", dash.base)
    assert status == 403


def test_script_payload_and_key_show_as_text(dash: Dashboard,
                                             driver: webdriver.Chrome) -> None:
    """A payload and a key holding markup are shown as text, never run."""
    evil = "<script>window.__xss = 1</script>"
    key = f"<img src=x onerror=window.__xss2=1>{uuid.uuid4().hex[:4]}"
    r = dash.cli("emit", JOB_TYPE, "--json",
                 json.dumps({"id": evil, "key": key, "fail": "permanent", "fail_attempts": 9}),
                 "--schemas", str(SCHEMAS))
    assert r.returncode == 0, r.stderr
    driver.get(f"{dash.base}/dead-letters?topic={dash.dlq}")

    driver.find_element(By.NAME, "key").send_keys(key)
    navigate(driver, driver.find_element(By.CSS_SELECTOR, "#filters button"))

    def listed() -> bool:
        if driver.find_elements(By.CSS_SELECTOR, "#selection td.mono a"):
            return True
        driver.refresh()  # same filter: the key is in the address
        return False

    eventually(listed, 40, "the dead letter to be listed", driver)
    assert key in driver.find_element(By.ID, "selection").text
    navigate(driver, driver.find_element(By.CSS_SELECTOR, "#selection td.mono a"))
    assert evil in text_of(driver, "#payload")
    assert key in text_of(driver, "#key")
    assert driver.execute_script("return window.__xss === undefined && "
                                 "window.__xss2 === undefined")
    assert not driver.find_elements(By.XPATH, "//main//script | //main//img")
    shot(driver, "dead-letter")


def test_reprocess_all_matching_with_a_bearer_token_is_idempotent(dash: Dashboard) -> None:
    """A script reprocesses every dead letter matching a filter (Bearer token, no form): the
    preview writes nothing, the confirmation re-publishes, and confirming again re-publishes
    nothing more (the CLI's progress topic)."""
    key = f"bulk-{uuid.uuid4().hex[:6]}"
    broken = dash.work / f"broken-{key}"
    broken.write_text("until fixed")
    for _ in range(2):
        dash.emit(key=key, fail=f"while_file:{broken}")

    def post(**fields: str) -> tuple[int, str]:
        body = urllib.parse.urlencode({"scope": "matching", "topic": dash.dlq, "key": key,
                                       **fields}).encode()
        req = urllib.request.Request(f"{dash.base}/dead-letters/reprocess", data=body,
                                     headers={"Authorization": f"Bearer {TOKEN}"})
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, resp.read().decode()

    def two_dead() -> bool:
        return "2 dead letter(s) would be re-published" in post()[1]

    eventually(two_dead, 40, "both dead letters to be previewed")
    broken.unlink()  # fixed: the re-published jobs succeed and leave no new dead letter
    status, html = post(confirm="yes")
    assert status == 200 and "Re-published 2 dead letter(s)" in html
    status, html = post(confirm="yes")
    outcome = html.split('id="outcome">', 1)[-1].split("</p>", 1)[0]
    assert "Re-published 0 dead letter(s)" in outcome, outcome
    assert "2 had already been reprocessed" in outcome, outcome


def test_replay_shows_the_plan_and_refuses_an_active_group(
        dash: Dashboard, driver: webdriver.Chrome) -> None:
    """Replay shows nothing but a refusal while the group's worker is connected."""
    driver.get(f"{dash.base}/replay")
    driver.find_element(By.NAME, "group").send_keys(dash.group)
    driver.find_element(By.NAME, "topics").send_keys(f"{dash.prefix}stasks")
    Select(driver.find_element(By.NAME, "mode")).select_by_value("to_earliest")
    navigate(driver, driver.find_element(By.ID, "show-plan"))
    assert "is active" in text_of(driver, "#refused")
    assert not driver.find_elements(By.ID, "confirm")
    shot(driver, "replay-refused")


def test_replay_plan_then_confirm_moves_a_stopped_groups_offsets(
        dash: Dashboard, driver: webdriver.Chrome) -> None:
    """For a group with no members the plan is shown first (nothing moves), and only the
    confirmation, logged in, moves the offsets."""
    group = f"{dash.prefix}stopped"
    topic = f"{dash.prefix}stasks"
    for _ in range(2):
        dash.emit()
    r = dash.cli("replay", "offsets", "--group", group, "--topic", topic, "--to-latest",
                 "--execute")
    assert r.returncode == 0, r.stderr
    ends = _committed(dash, group)
    assert sum(ends.values()) >= 2

    driver.get(f"{dash.base}/replay")
    log_in(driver, dash, TOKEN)
    driver.get(f"{dash.base}/replay")
    driver.find_element(By.NAME, "group").send_keys(group)
    driver.find_element(By.NAME, "topics").send_keys(topic)
    Select(driver.find_element(By.NAME, "mode")).select_by_value("to_earliest")
    navigate(driver, driver.find_element(By.ID, "show-plan"))
    assert f"{sum(ends.values())} job(s) would run again" in driver.find_element(
        By.CSS_SELECTOR, "main .card h2").text
    assert _committed(dash, group) == ends, "the plan moved offsets"
    shot(driver, "replay-plan")
    navigate(driver, driver.find_element(By.ID, "confirm"))
    assert "Offsets moved" in text_of(driver, "#outcome")
    assert set(_committed(dash, group).values()) == {0}


def _committed(dash: Dashboard, group: str) -> dict[int, int]:
    lag = group_lag(KafkaConfig(bootstrap_servers=BOOTSTRAP), group)
    return {p.partition: p.committed or 0 for p in lag.partitions}


def test_served_under_a_path_prefix(dash: Dashboard, driver: webdriver.Chrome) -> None:
    """With --root-path every link, form and the live stream stay under the prefix."""
    port = free_port_block(1)
    dash.start_web(port, "--root-path", "/ops/jobs")
    base = f"http://127.0.0.1:{port}/ops/jobs"
    driver.get(f"{base}/")
    navigate(driver, driver.find_element(By.LINK_TEXT, "Dead letters"))
    assert driver.current_url.startswith(f"{base}/dead-letters")
    job = dash.emit(sleep_ms=5000)
    driver.find_element(By.ID, "search-id").send_keys(job)
    navigate(driver, driver.find_element(By.CSS_SELECTOR, "form.search button"))
    assert driver.current_url == f"{base}/jobs/{job}"
    driver.execute_script("window.__sameLoad = true")
    eventually(lambda: state(driver) == "started", 30, "'started' under the prefix", driver)
    eventually(lambda: state(driver) == "succeeded", 30, "'succeeded' under the prefix",
               driver)
    assert driver.execute_script("return window.__sameLoad === true"), "the page reloaded"
    styled = driver.execute_script(
        "return getComputedStyle(document.querySelector('header.top')).display")
    assert styled == "flex", "the stylesheet did not load under the prefix"


def test_overview_shows_rates_groups_and_dead_letters(dash: Dashboard,
                                                      driver: webdriver.Chrome) -> None:
    """The overview lists the worker's group with its partitions, the job type's rates and
    the dead letters by reason, and refreshes by itself."""
    dash.emit(fail="permanent", fail_attempts=9)
    driver.get(f"{dash.base}/")

    def complete() -> bool:
        text = text_of(driver, "#overview")
        return dash.group in text and "permanent_error" in text and "task" in text \
            and dash.dlq in text

    eventually(complete, 45, "the overview figures", driver)
    driver.execute_script("window.__sameLoad = true")
    before = text_of(driver, "#updated")
    eventually(lambda: text_of(driver, "#updated") not in ("", before), 20,
               "the overview to refresh by itself", driver)
    assert driver.execute_script("return window.__sameLoad === true"), "the page reloaded"
    shot(driver, "overview")
    navigate(driver, driver.find_element(By.LINK_TEXT, "Jobs"))
    navigate(driver, driver.find_element(By.LINK_TEXT, "dead"))
    assert "dead" in text_of(driver, "main table")
    shot(driver, "jobs")

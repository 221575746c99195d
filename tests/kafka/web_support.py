"""The browser tests' world: private topics (``topics apply`` under a prefix), a real worker,
``streamjobs web`` as a subprocess on a free port, and headless Debian chromium driven by
Selenium through Debian's chromedriver (never Selenium Manager: nothing is downloaded)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from tests.conftest import BOOTSTRAP, ROOT, Proc, streamjobs_exe
from tests.ports import free_port_block

# Job type "stask" records every status transition (the catalogue's status = "all").
SCHEMAS = ROOT / "tests" / "apps" / "status_schemas"
APP = "tests.apps.status_tasks:app"
JOB_TYPE = "stask"
SHOTS = ROOT / ".streamjobs" / "screenshots"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM = "/usr/bin/chromium"
TOKEN = "browser-test-token-" + uuid.uuid4().hex[:8]


@dataclass
class Dashboard:
    prefix: str
    group: str
    base: str
    env: dict[str, str]
    work: Path
    procs: list[Proc] = field(default_factory=list)

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*streamjobs_exe(), *args], env=self.env, capture_output=True,
                              text=True, timeout=timeout, cwd=str(ROOT))

    def spawn(self, name: str, *args: str, extra: dict[str, str] | None = None) -> Proc:
        p = Proc(list(args), {**self.env, **(extra or {})}, ROOT, self.work / f"{name}.log")
        self.procs.append(p)
        return p

    @property
    def dlq(self) -> str:
        return f"{self.prefix}stasks.dlq"

    def emit(self, **payload: object) -> str:
        body = {"id": uuid.uuid4().hex[:8], "key": "k", **payload}
        r = self.cli("emit", JOB_TYPE, "--json", json.dumps(body), "--schemas", str(SCHEMAS))
        assert r.returncode == 0, r.stderr
        return r.stdout.strip().splitlines()[-1]

    def start_web(self, port: int, *args: str) -> Proc:
        proc = self.spawn(f"web-{port}", "web", "--port", str(port), "--schemas", str(SCHEMAS),
                          "--group", self.group, *args,
                          extra={"STREAMJOBS_WEB_TOKEN": TOKEN})
        root = args[args.index("--root-path") + 1] if "--root-path" in args else ""
        wait_http(f"http://127.0.0.1:{port}{root}/healthz", proc)
        return proc


def wait_http(url: str, proc: Proc, timeout: float = 45) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            pytest.fail(f"{url}: server exited:\n{proc.output()}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as r:
            if r.status == 200:
                return
        time.sleep(0.2)
    pytest.fail(f"{url} not healthy after {timeout}s:\n{proc.output()}")


@contextlib.contextmanager
def dashboard(tmp: Path) -> Iterator[Dashboard]:
    prefix = f"t-web-{uuid.uuid4().hex[:8]}."
    env = {**os.environ, "STREAMJOBS_BOOTSTRAP_SERVERS": BOOTSTRAP, "PYTHONUNBUFFERED": "1",
           "STREAMJOBS_TOPIC_PREFIX": prefix, "STREAMJOBS_WEB_TOKEN": ""}
    port = free_port_block(1)
    d = Dashboard(prefix, prefix + "workers", f"http://127.0.0.1:{port}", env, tmp)
    admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
    try:
        r = d.cli("topics", "apply", "--schemas", str(SCHEMAS))
        assert r.returncode == 0, r.stdout + r.stderr
        d.spawn("worker", "worker", APP, "--group-id", d.group, "--metrics-port", "0",
                "--concurrency", "4")
        d.start_web(port)
        yield d
    finally:
        for p in d.procs:
            p.stop()
        mine = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix)]
        if mine:
            for fut in admin.delete_topics(mine).values():
                with contextlib.suppress(Exception):
                    fut.result(30)


@contextlib.contextmanager
def browser() -> Iterator[webdriver.Chrome]:
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1360,900", "--lang=en-US"):
        opts.add_argument(arg)
    try:
        driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    except WebDriverException as exc:
        pytest.fail(f"cannot start chromium through {CHROMEDRIVER}: {exc.msg}")
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def shot(driver: webdriver.Chrome, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    # The whole page, not just the window.
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1360, max(700, min(int(height) + 40, 2400)))
    driver.save_screenshot(str(path))
    driver.set_window_size(1360, 900)
    return path


def text_of(driver: webdriver.Chrome, css: str) -> str:
    try:
        return str(driver.find_element(By.CSS_SELECTOR, css).text)
    except (WebDriverException, StaleElementReferenceException):
        return ""


def eventually(pred: Callable[[], object], timeout: float, what: str,
               driver: webdriver.Chrome | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            if driver is not None:
                shot(driver, "failure")
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.2)


def navigate(driver: webdriver.Chrome, element: WebElement, timeout: float = 30) -> None:
    """Clicks a link or submit button and waits for the next page to replace this one."""
    html = driver.find_element(By.TAG_NAME, "html")
    element.click()

    def replaced(_driver: object) -> bool:
        try:
            html.is_enabled()
        except WebDriverException:  # stale, or "node does not belong to the document"
            return True
        return False

    WebDriverWait(driver, timeout).until(replaced)

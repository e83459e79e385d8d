"""A real browser: Debian's headless Chromium, driven through chromedriver's W3C WebDriver protocol, opens the
Swagger UI of a running server, logs in with "Authorize", executes a GET that needs the token and sees a 200.
A screenshot is kept in tests/artifacts/ (gitignored) for a person to look at."""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from domain.settings import Settings
from server import all_endpoints
from sync.openapi import SWAGGER_PATH, documented, operation_id
from tests.conftest import SECRET, bearer

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,1600",
]
# `GET /api/v1/equipment/` once the catalog is merged; until then a GET that also needs the bearer token.
PREFERRED, FALLBACK = "/api/v1/equipment/", "/api/v1/reports/stock/"
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http(method: str, url: str, body: Any = None, timeout: float = 30) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:  # only 127.0.0.1
        return json.loads(response.read() or b"null")


def wait_until(check: Any, timeout: float = 30, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except (urllib.error.URLError, ConnectionError, KeyError, OSError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


class Browser:
    """Just enough of the W3C WebDriver protocol: navigate, find, click, type, read, screenshot."""

    def __init__(self, driver_url: str, profile: Path) -> None:
        self.base = driver_url
        caps = {
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {"binary": CHROMIUM, "args": [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"]},
                }
            }
        }
        self.session = http("POST", f"{driver_url}/session", caps, timeout=60)["value"]["sessionId"]

    def cmd(self, method: str, path: str, body: Any = None) -> Any:
        return http(method, f"{self.base}/session/{self.session}{path}", body)["value"]

    def go(self, url: str) -> None:
        self.cmd("POST", "/url", {"url": url})

    def find(self, css: str, timeout: float = 30) -> str:
        def look() -> str | None:
            found = self.cmd("POST", "/elements", {"using": "css selector", "value": css})
            return found[0][ELEMENT] if found else None

        return str(wait_until(look, timeout, css))

    def click(self, css: str) -> None:
        element = self.find(css)
        self.cmd("POST", f"/element/{element}/click", {})

    def type(self, css: str, text: str) -> None:
        self.cmd("POST", f"/element/{self.find(css)}/value", {"text": text})

    def count(self, css: str) -> int:
        return len(self.cmd("POST", "/elements", {"using": "css selector", "value": css}))

    def text(self, css: str) -> str:
        return str(self.cmd("GET", f"/element/{self.find(css)}/text"))

    def screenshot(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(self.cmd("GET", "/screenshot")))

    def quit(self) -> None:
        try:
            http("DELETE", f"{self.base}/session/{self.session}")
        except OSError:
            pass


@pytest.fixture
def live_server(database_url: str, tmp_path: Path) -> Iterator[str]:
    """`python server.py` on a random port: migrates, loads the demo data, serves with uvicorn."""
    port = free_port()
    env = {**os.environ, "LPG_SECRET_KEY": SECRET, "LPG_ENV": "test", "LPG_DATABASE_URL": database_url}
    log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "server.py"), "--host", "127.0.0.1", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: http("GET", f"{base}/api/v1/health", timeout=2)["status"] == "ok", 60, "the server")
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    assert shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER), "apt-get install chromium chromium-driver"
    port = free_port()
    driver = subprocess.Popen([CHROMEDRIVER, f"--port={port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: http("GET", f"{url}/status", timeout=2)["value"]["ready"], 30, "chromedriver")
        b = Browser(url, tmp_path / "chromium-profile")
        try:
            yield b
        finally:
            b.quit()
    finally:
        driver.terminate()
        driver.wait(timeout=20)


def test_swagger_ui_authorize_and_execute_a_get(live_server: str, browser: Browser, settings: Settings) -> None:
    paths = {(e.method, e.path): e for e in all_endpoints()}
    endpoint = paths.get(("GET", PREFERRED)) or paths[("GET", FALLBACK)]
    op = operation_id(endpoint)
    token = bearer(settings, 1)["Authorization"].removeprefix("Bearer ")  # the demo admin (user 1)

    browser.go(f"{live_server}{SWAGGER_PATH}#/{endpoint.tag}/{op}")
    browser.find(".swagger-ui .info .title")
    browser.find(f"#operations-{endpoint.tag}-{op}")
    assert browser.count(".swagger-ui .errors-wrapper") == 0, "Swagger UI found errors in the document"
    assert browser.count(".swagger-ui .opblock") == len([e for e in all_endpoints() if documented(e)])
    # Authorize: the bearer scheme's dialog takes the access token.
    browser.click(".swagger-ui .auth-wrapper .btn.authorize")
    browser.type(".swagger-ui .modal-ux .auth-container input", token)
    browser.click(".swagger-ui .modal-ux .auth-btn-wrapper .btn.modal-btn.auth.authorize")
    browser.find(".swagger-ui .modal-ux .auth-btn-wrapper .btn-done")
    browser.click(".swagger-ui .modal-ux .auth-btn-wrapper .btn-done")
    # Try it out -> Execute on the deep-linked (already expanded) operation.
    block = f"#operations-{endpoint.tag}-{op}"
    browser.click(f"{block} .try-out__btn")
    browser.click(f"{block} .execute")
    status = wait_until(
        lambda: browser.text(f"{block} .live-responses-table .response .response-col_status").strip(), 30, "a response"
    )
    curl = browser.text(f"{block} .curl-command")
    browser.screenshot(ARTIFACTS / "swagger-ui-authorize-execute.png")
    assert status.startswith("200"), status
    assert f"Authorization: Bearer {token}" in curl, curl

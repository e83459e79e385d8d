"""Server processes the tests start as children: wait until one answers its health check, and stop one."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable

import httpx2 as httpx


def wait_healthy(
    proc: subprocess.Popen[bytes],
    url: str,
    timeout: float,
    *,
    probe_timeout: float = 1.0,
    pause: float = 0.1,
    where: Callable[[], str] = lambda: "",
) -> None:
    """Poll `url`/api/v1/health until it answers 200; RuntimeError when the child exits or `timeout` passes.
    `where` adds to the error what the caller knows of the child (its log's path or tail)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}{where()}")
        try:
            if httpx.get(url + "/api/v1/health", timeout=probe_timeout).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(pause)
    raise RuntimeError(f"the server did not start{where()}")


def stop_child(proc: subprocess.Popen[bytes], grace: float = 15.0) -> None:
    """SIGTERM, then SIGKILL when it has not ended within `grace` seconds."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)

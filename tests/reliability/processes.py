"""Real processes for the reliability tests: a private `mariadbd` (own port, own data folder) and
`python server.py` children, so a test may kill either without touching anything it did not start."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pymysql

from tests.support.children import stop_child, wait_healthy

REPO = Path(__file__).resolve().parents[2]


class PrivateMariaDB:
    """A throwaway MariaDB server: `mariadb-install-db` into a temporary folder, `mariadbd` on `port`."""

    def __init__(self, base: Path, port: int) -> None:
        self.base = base
        self.port = port
        self.datadir = base / "data"
        self.socket = base / "mariadb.sock"
        self.log = base / "mariadb.err"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def install(self) -> None:
        self.datadir.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "mariadb-install-db",
                "--no-defaults",
                "--auth-root-authentication-method=normal",
                f"--datadir={self.datadir}",
                "--user=root",
                "--skip-test-db",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def start(self, timeout: float = 60.0) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.proc = subprocess.Popen(
            [
                "mariadbd",
                "--no-defaults",
                "--user=root",
                f"--datadir={self.datadir}",
                f"--port={self.port}",
                f"--socket={self.socket}",
                "--bind-address=127.0.0.1",
                f"--pid-file={self.base / 'mariadb.pid'}",
                f"--log-error={self.log}",
                "--skip-grant-tables",
                "--skip-name-resolve",
                "--skip-log-bin",
                "--innodb-buffer-pool-size=64M",
                "--innodb-flush-log-at-trx-commit=1",
                "--max-connections=200",
                "--transaction-isolation=READ-COMMITTED",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.starts += 1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mariadbd exited with {self.proc.returncode}: see {self.log}")
            try:
                pymysql.connect(host="127.0.0.1", port=self.port, user="root", connect_timeout=1).close()
                return
            except pymysql.err.OperationalError:
                time.sleep(0.1)
        raise RuntimeError("mariadbd did not start")

    def kill(self) -> None:
        """SIGKILL: what a crash or a pulled plug does (committed transactions must survive it)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.kill()

    def create_database(self, name: str) -> str:
        conn = pymysql.connect(host="127.0.0.1", port=self.port, user="root")
        try:
            with conn.cursor() as cursor:
                cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
                cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        finally:
            conn.close()
        return f"mysql+pymysql://root@127.0.0.1:{self.port}/{name}"

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)


class Server:
    """`python server.py --database-url ... --port ...` as a child process (migrates, loads the demo once)."""

    def __init__(self, database_url: str, port: int, secret: str, log_path: Path, pool: int = 8) -> None:
        self.database_url = database_url
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.secret = secret
        self.log_path = log_path
        self.pool = pool
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, *extra: str, timeout: float = 180.0) -> None:
        """Start and wait until health answers 200; `extra`: more `server.py` options (`--no-migrate`)."""
        env = dict(
            os.environ,
            LPG_SECRET_KEY=self.secret,
            LPG_ENV="test",
            LPG_DB_POOL_SIZE=str(self.pool),
        )
        env.pop("LPG_DATABASE_URL", None)
        log = open(self.log_path, "ab")  # noqa: SIM115 (the child owns it)
        self.proc = subprocess.Popen(
            [sys.executable, "server.py", "--database-url", self.database_url, "--port", str(self.port), *extra],
            cwd=str(REPO),
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.starts += 1
        wait_healthy(self.proc, self.url, timeout, probe_timeout=15, where=lambda: f": see {self.log_path}")

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.alive:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None:
            stop_child(self.proc, grace=20)

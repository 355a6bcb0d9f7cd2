"""A throwaway PostgreSQL server for the tests, started from Debian's package (`postgresql`): a fresh cluster in a
temporary folder on a free port, one database per test, removed at the end of the session."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import psycopg

from gridwatch.broker import free_port


def _binaries() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if not found:
        raise RuntimeError("PostgreSQL is not installed: `make test` installs Debian's postgresql package "
                           "(apt-get install -y postgresql)")
    return Path(found[-1]).parent


class PostgresServer:
    def __init__(self, durable: bool = False) -> None:
        """`durable`: a commit is on disk when it returns (synchronous_commit on), so a crash loses no committed
        transaction; the default trades that for speed, which the suite's throwaway databases do not need."""
        self.durable = durable
        self.bin = _binaries()
        self.dir = Path(tempfile.mkdtemp(prefix="gridwatch-pg-"))
        self.port = free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            shutil.chown(self.dir, "postgres", "postgres")
            self.as_user = ["runuser", "-u", "postgres", "--"]

    def _run(self, *command: str) -> None:
        result = subprocess.run([*self.as_user, *command], capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed: {result.stderr.strip() or result.stdout.strip()}")

    def start(self) -> PostgresServer:
        self._run(str(self.bin / "initdb"), "-D", str(self.dir / "data"), "-U", "gridwatch", "--auth=trust", "-E",
                  "UTF8", "--no-locale")
        self._start()
        return self

    def _start(self) -> None:
        options = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
                   f"-c synchronous_commit={'on' if self.durable else 'off'} -c full_page_writes=off "
                   "-c max_connections=200")
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-o", options, "-l",
                  str(self.dir / "server.log"), "-w", "start")

    def crash_and_restart(self, down_seconds: float) -> None:
        """Kill the server as a crash would (`pg_ctl stop -m immediate`), stay down a while, start it again."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "immediate", "stop")
        time.sleep(down_seconds)
        self._start()

    def create_database(self) -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=gridwatch dbname=postgres",
                             autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg://gridwatch@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        try:
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

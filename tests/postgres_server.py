"""A real PostgreSQL server on a free loopback port, in a temporary directory, for the tests
of the records database. PostgreSQL refuses to run as root, so under root (CI) the server runs
as the `postgres` system user that Debian's package creates, in a directory that user can reach.

Without PostgreSQL installed the records tests skip their PostgreSQL half
(`PostgresNotInstalled`); installed but failing to start, they fail, so that CI cannot pass
without having run them."""

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from tests.redis_server import free_port


class PostgresUnavailable(RuntimeError):
    """PostgreSQL cannot be started here."""


class PostgresNotInstalled(PostgresUnavailable):
    """No PostgreSQL binaries."""


def _binaries() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb is None:
        raise PostgresNotInstalled(
            "PostgreSQL is not installed: apt-get install -y postgresql (the tests run its "
            "initdb and pg_ctl from /usr/lib/postgresql/*/bin)"
        )
    return Path(initdb).parent


class PostgresServer:
    """One `postgres` with a throw-away cluster; `url` reaches its `bridge` database."""

    def __init__(self) -> None:
        self._bin = _binaries()
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            try:
                user = pwd.getpwnam("postgres")
            except KeyError:
                raise PostgresUnavailable(
                    "running as root, and there is no `postgres` user to run PostgreSQL as"
                ) from None
            self._as_user = ["runuser", "-u", "postgres", "--"]
            self._dir = Path(tempfile.mkdtemp(prefix="bridge-pg-", dir=self._reachable_base()))
            os.chown(self._dir, user.pw_uid, user.pw_gid)
        else:
            self._dir = Path(tempfile.mkdtemp(prefix="bridge-pg-"))
        self._data = self._dir / "data"
        self.port = free_port()
        try:
            self._start()
        except PostgresUnavailable:
            self.stop()  # the directory, and the server if it started
            raise
        self.url = f"postgresql+asyncpg://bridge@127.0.0.1:{self.port}/bridge"

    def _start(self) -> None:
        self._run(
            "initdb",
            "-D",
            str(self._data),
            "-U",
            "bridge",
            "-A",
            "trust",
            "--no-sync",
            "-E",
            "UTF8",
        )
        options = f"-p {self.port} -k {self._dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            "pg_ctl",
            "-D",
            str(self._data),
            "-o",
            options,
            "-l",
            str(self._dir / "log"),
            "-w",
            "start",
        )
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "bridge", "bridge")

    def _reachable_base(self) -> str:
        """The temporary directory when the `postgres` user can enter it, else /tmp (a
        TMPDIR under root's home is not reachable for it)."""
        base = tempfile.gettempdir()
        check = [*self._as_user, "test", "-x", base]
        if subprocess.run(check, capture_output=True, timeout=30).returncode == 0:
            return base
        return "/tmp"

    def _run(self, program: str, *args: str) -> None:
        command = [*self._as_user, str(self._bin / program), *args]
        # Run from the server's directory: the `postgres` user may not enter the current one.
        result = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=self._dir)
        if result.returncode != 0:
            raise PostgresUnavailable(f"{program} failed: {result.stderr.strip()[-500:]}")

    def reset(self) -> None:
        """Drop every table, so each test starts from an empty database and migrates it."""
        statement = "DROP SCHEMA public CASCADE; CREATE SCHEMA public;"
        self._run(
            "psql",
            "-X",  # no ~/.psqlrc
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            "bridge",
            "-q",
            "-d",
            "bridge",
            "-c",
            statement,
        )

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self._data), "-m", "immediate", "-w", "stop")
        except PostgresUnavailable:
            pass
        finally:
            shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> "PostgresServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == "__main__":
    started = time.perf_counter()
    with PostgresServer() as server:
        print(server.url, round(time.perf_counter() - started, 2), "s")
        server.reset()

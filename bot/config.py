"""The core's settings: storage, embeddings, LLM, answers, documents and logs.

The adapters add their own (the server's, Slack's, Teams') in adapters.settings.Settings, a subclass of this one:
that is the one settings object, read from the environment at start-up and passed down. Modules never read the
environment themselves: they take a `Settings` (or plain values taken from it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class Settings(BaseSettings):
    # The prefix only keeps field names (home, host, port) from matching unrelated variables such as HOME.
    model_config = SettingsConfigDict(env_prefix="POLICYBOT_FIELD_", env_file=None, extra="ignore", populate_by_name=True)

    # --- storage -----------------------------------------------------------------------------------
    database_url: str | None = Field(None, validation_alias=_env("DATABASE_URL"))
    redis_url: str | None = Field(None, validation_alias=_env("REDIS_URL"))
    home: Path = Field(Path("~/.local/share/policybot"), validation_alias=_env("POLICYBOT_HOME"))

    # --- embeddings --------------------------------------------------------------------------------
    embeddings: str = Field("local", validation_alias=_env("POLICYBOT_EMBEDDINGS"))  # local | openai
    embedding_model: str = Field("text-embedding-3-small", validation_alias=_env("POLICYBOT_EMBEDDING_MODEL"))
    embedding_batch: int = Field(64, validation_alias=_env("POLICYBOT_EMBEDDING_BATCH"))
    embedding_threads: int = Field(1, validation_alias=_env("POLICYBOT_EMBEDDING_THREADS"))
    # Bulk commands (`policybot ingest`, `reindex`): local embedding threads, 0 = every core.
    embedding_bulk_threads: int = Field(0, ge=0, validation_alias=_env("POLICYBOT_EMBEDDING_BULK_THREADS"))
    # The `openai` backend: batches in flight at once.
    embedding_concurrency: int = Field(4, ge=1, validation_alias=_env("POLICYBOT_EMBEDDING_CONCURRENCY"))

    # --- LLM ---------------------------------------------------------------------------------------
    openai_api_key: str | None = Field(None, validation_alias=_env("OPENAI_API_KEY"))
    openai_base_url: str | None = Field(None, validation_alias=_env("OPENAI_BASE_URL"))
    chat_model: str = Field("gpt-4.1-mini", validation_alias=_env("POLICYBOT_CHAT_MODEL"))
    llm_timeout_s: float = Field(20.0, validation_alias=_env("POLICYBOT_LLM_TIMEOUT"))
    llm_max_retries: int = Field(2, validation_alias=_env("POLICYBOT_LLM_RETRIES"))
    llm_concurrency: int = Field(16, validation_alias=_env("POLICYBOT_LLM_CONCURRENCY"))
    # The brand voice asks for two to five sentences (~60-150 words, ~100-250 tokens with markers): 350 leaves room
    # for a short list and still stops a looping model within seconds.
    llm_max_tokens: int = Field(350, ge=16, validation_alias=_env("POLICYBOT_LLM_MAX_TOKENS"))
    # Mild: discourages a model from repeating itself without penalizing the [n] markers it must repeat much.
    llm_frequency_penalty: float = Field(0.3, ge=-2.0, le=2.0, validation_alias=_env("POLICYBOT_LLM_FREQUENCY_PENALTY"))
    # The circuit breaker: after this many consecutive failed or uncited replies from a model, answer extractively
    # and let one probe through every cooldown until one succeeds (0: never open).
    llm_breaker_failures: int = Field(5, ge=0, validation_alias=_env("POLICYBOT_LLM_BREAKER_FAILURES"))
    llm_breaker_cooldown_s: float = Field(30.0, gt=0, validation_alias=_env("POLICYBOT_LLM_BREAKER_COOLDOWN"))
    brand_voice_file: Path | None = Field(None, validation_alias=_env("POLICYBOT_BRAND_VOICE"))
    hr_contact: str = Field("the People team (hr@example.com)", validation_alias=_env("POLICYBOT_HR_CONTACT"))

    # --- answers -----------------------------------------------------------------------------------
    cache_ttl_s: int = Field(24 * 3600, validation_alias=_env("POLICYBOT_CACHE_TTL"))
    top_k: int = Field(5, validation_alias=_env("POLICYBOT_TOP_K"))
    max_question_chars: int = Field(2000, validation_alias=_env("POLICYBOT_MAX_QUESTION_CHARS"))
    rate_limit_per_minute: int = Field(20, validation_alias=_env("POLICYBOT_RATE_LIMIT"))
    # Who holds which document audience (bot/audiences.py); unset: every asker reads `everyone` documents only.
    audiences_file: Path | None = Field(None, validation_alias=_env("POLICYBOT_AUDIENCES_FILE"))
    audience_ttl_s: int = Field(300, validation_alias=_env("POLICYBOT_AUDIENCE_TTL"))

    # --- documents ---------------------------------------------------------------------------------
    max_document_mb: float = Field(20.0, validation_alias=_env("POLICYBOT_MAX_DOCUMENT_MB"))
    # A served upload's ingestion: `idle` (runs only on CPU nothing else wants), `low` (nice 19) or `normal` (the
    # server's own priority); below the answer workers', so answers keep their cores meanwhile (bot/yielding.py).
    upload_priority: Literal["idle", "low", "normal"] = Field("idle", validation_alias=_env("POLICYBOT_UPLOAD_PRIORITY"))
    admins: Annotated[list[str], NoDecode] = Field(default_factory=list, validation_alias=_env("POLICYBOT_ADMINS"))

    # --- HR in the loop (bot/escalation.py) ---------------------------------------------------------
    # Where "Ask HR" posts: a Slack channel id, or a Teams channel/chat conversation id where the bot is installed.
    hr_channel: str | None = Field(None, validation_alias=_env("POLICYBOT_HR_CHANNEL"))
    # Whose replies in an HR thread are relayed and stored as corrections; empty: the admins.
    hr_users: Annotated[list[str], NoDecode] = Field(default_factory=list, validation_alias=_env("POLICYBOT_HR_USERS"))

    # --- logs --------------------------------------------------------------------------------------
    log_level: str = Field("INFO", validation_alias=_env("POLICYBOT_LOG_LEVEL"))

    @field_validator("admins", "hr_users", mode="before")
    @classmethod
    def _split_admins(cls, value: object) -> object:
        # POLICYBOT_ADMINS (and POLICYBOT_HR_USERS) is a comma/space separated list of Slack user ids and/or Teams AAD object ids.
        if isinstance(value, str):
            return [part for part in value.replace(",", " ").split() if part]
        return value

    @field_validator("home", mode="after")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        return value.expanduser()

    @property
    def llm_enabled(self) -> bool:
        return bool(self.openai_api_key)

    @property
    def hr_members(self) -> list[str]:
        """Who answers escalations: POLICYBOT_HR_USERS, or the admins when it is unset."""
        return list(self.hr_users or self.admins)

    @property
    def max_document_bytes(self) -> int:
        return int(self.max_document_mb * 1024 * 1024)


"""The one settings object, read from the environment at start-up and passed down.

Modules never read the environment themselves: they take a `Settings` (or plain values taken from it).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


# Where admins' uploads may be downloaded from (the first URL and every redirect). Slack: url_private and
# url_private_download are on files.slack.com (*.slack.com), and Slack serves files from slack-files.com and its
# CDN *.slack-edge.com. Teams: a file sent to a bot lands in the sender's OneDrive for Business
# (TENANT-my.sharepoint.com; *.sharepoint-df.com is Microsoft's own tenant, *.sharepoint.us the US government
# clouds), or consumer OneDrive (onedrive.live.com, *.onedrive.com, *.1drv.com).
DEFAULT_DOWNLOAD_HOSTS = (
    "*.slack.com", "slack-files.com", "*.slack-edge.com",
    "*.sharepoint.com", "*.sharepoint-df.com", "*.sharepoint.us",
    "onedrive.live.com", "*.onedrive.com", "*.1drv.com",
)
_HOST_PATTERN = re.compile(r"^(\*\.)?[a-z0-9_.:-]+$")  # a name or an IP address (IPv6 without brackets)


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

    # --- LLM ---------------------------------------------------------------------------------------
    openai_api_key: str | None = Field(None, validation_alias=_env("OPENAI_API_KEY"))
    openai_base_url: str | None = Field(None, validation_alias=_env("OPENAI_BASE_URL"))
    chat_model: str = Field("gpt-4.1-mini", validation_alias=_env("POLICYBOT_CHAT_MODEL"))
    llm_timeout_s: float = Field(20.0, validation_alias=_env("POLICYBOT_LLM_TIMEOUT"))
    llm_max_retries: int = Field(2, validation_alias=_env("POLICYBOT_LLM_RETRIES"))
    llm_concurrency: int = Field(16, validation_alias=_env("POLICYBOT_LLM_CONCURRENCY"))
    brand_voice_file: Path | None = Field(None, validation_alias=_env("POLICYBOT_BRAND_VOICE"))
    hr_contact: str = Field("the People team (hr@example.com)", validation_alias=_env("POLICYBOT_HR_CONTACT"))

    # --- answers -----------------------------------------------------------------------------------
    cache_ttl_s: int = Field(24 * 3600, validation_alias=_env("POLICYBOT_CACHE_TTL"))
    top_k: int = Field(5, validation_alias=_env("POLICYBOT_TOP_K"))
    max_question_chars: int = Field(2000, validation_alias=_env("POLICYBOT_MAX_QUESTION_CHARS"))
    rate_limit_per_minute: int = Field(20, validation_alias=_env("POLICYBOT_RATE_LIMIT"))

    # --- documents ---------------------------------------------------------------------------------
    max_document_mb: float = Field(20.0, validation_alias=_env("POLICYBOT_MAX_DOCUMENT_MB"))
    admins: Annotated[list[str], NoDecode] = Field(default_factory=list, validation_alias=_env("POLICYBOT_ADMINS"))
    download_hosts: Annotated[list[str], NoDecode] = Field(default_factory=lambda: list(DEFAULT_DOWNLOAD_HOSTS),
                                                           validation_alias=_env("POLICYBOT_DOWNLOAD_HOSTS"))

    # --- Slack -------------------------------------------------------------------------------------
    slack_bot_token: str | None = Field(None, validation_alias=_env("SLACK_BOT_TOKEN"))
    slack_signing_secret: str | None = Field(None, validation_alias=_env("SLACK_SIGNING_SECRET"))
    slack_app_token: str | None = Field(None, validation_alias=_env("SLACK_APP_TOKEN"))
    slack_api_url: str = Field("https://slack.com/api/", validation_alias=_env("SLACK_API_URL"))
    slack_command: str = Field("/policy", validation_alias=_env("POLICYBOT_SLACK_COMMAND"))

    # --- Microsoft Teams ---------------------------------------------------------------------------
    microsoft_app_id: str = Field("", validation_alias=_env("MICROSOFT_APP_ID"))
    microsoft_app_password: str = Field("", validation_alias=_env("MICROSOFT_APP_PASSWORD"))
    microsoft_app_type: str = Field("MultiTenant", validation_alias=_env("MICROSOFT_APP_TYPE"))
    microsoft_app_tenant_id: str = Field("", validation_alias=_env("MICROSOFT_APP_TENANT_ID"))

    # --- server and logs ---------------------------------------------------------------------------
    host: str = Field("0.0.0.0", validation_alias=_env("POLICYBOT_HOST"))
    port: int = Field(3978, validation_alias=_env("PORT", "POLICYBOT_PORT"))
    workers: int = Field(1, validation_alias=_env("POLICYBOT_WORKERS"))
    answer_workers: int = Field(0, validation_alias=_env("POLICYBOT_ANSWER_WORKERS"))
    max_queue_wait_s: float = Field(30.0, validation_alias=_env("POLICYBOT_MAX_QUEUE_WAIT"))
    log_level: str = Field("INFO", validation_alias=_env("POLICYBOT_LOG_LEVEL"))
    log_message_text: bool = Field(False, validation_alias=_env("POLICYBOT_LOG_MESSAGE_TEXT"))

    @field_validator("admins", mode="before")
    @classmethod
    def _split_admins(cls, value: object) -> object:
        # POLICYBOT_ADMINS is a comma/space separated list of Slack user ids and/or Teams AAD object ids.
        if isinstance(value, str):
            return [part for part in value.replace(",", " ").split() if part]
        return value

    @field_validator("download_hosts", mode="before")
    @classmethod
    def _split_download_hosts(cls, value: object) -> object:
        # Comma/space separated host names; `*.example.com` means any subdomain of example.com (not example.com).
        if isinstance(value, str):
            value = value.replace(",", " ").split()
        if isinstance(value, (list, tuple)):
            hosts = [str(part).strip().strip("[]").lower().rstrip(".") for part in value if str(part).strip()]
            bad = [host for host in hosts if not _HOST_PATTERN.match(host)]
            if bad:  # a typo must fail at start-up, not quietly refuse (or allow) every download
                raise ValueError(f"POLICYBOT_DOWNLOAD_HOSTS: not a host name or *.domain pattern: {', '.join(bad)}")
            return hosts
        return value

    @field_validator("home", mode="after")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        return value.expanduser()

    @property
    def llm_enabled(self) -> bool:
        return bool(self.openai_api_key)

    @property
    def max_document_bytes(self) -> int:
        return int(self.max_document_mb * 1024 * 1024)


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment; keyword overrides win (used by tests and the CLI)."""
    return Settings(**overrides)

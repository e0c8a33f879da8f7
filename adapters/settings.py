"""The one settings object of a policybot process: the core's (bot.config) plus what the adapters own (the
server's here, Slack's and Teams' in their packages). Read from the environment once, at start-up, by
`load_settings()`, and passed down; a `Settings` is also a `bot.config.Settings`, so the core takes it as is.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from adapters.slack.settings import SlackSettings
from adapters.teams.settings import TeamsSettings
from bot import config

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


class ServerSettings(BaseSettings):
    """`policybot serve` and what every chat platform shares (upload hosts, message logging)."""

    # Same config as the core's (bot.config): field names never match variables by themselves, aliases do.
    model_config = SettingsConfigDict(env_prefix="POLICYBOT_FIELD_", env_file=None, extra="ignore", populate_by_name=True)

    download_hosts: Annotated[list[str], NoDecode] = Field(default_factory=lambda: list(DEFAULT_DOWNLOAD_HOSTS),
                                                           validation_alias=AliasChoices("POLICYBOT_DOWNLOAD_HOSTS"))
    host: str = Field("0.0.0.0", validation_alias=AliasChoices("POLICYBOT_HOST"))
    port: int = Field(3978, validation_alias=AliasChoices("PORT", "POLICYBOT_PORT"))
    workers: int = Field(1, validation_alias=AliasChoices("POLICYBOT_WORKERS"))
    answer_workers: int = Field(0, validation_alias=AliasChoices("POLICYBOT_ANSWER_WORKERS"))
    max_queue_wait_s: float = Field(30.0, validation_alias=AliasChoices("POLICYBOT_MAX_QUEUE_WAIT"))
    log_message_text: bool = Field(False, validation_alias=AliasChoices("POLICYBOT_LOG_MESSAGE_TEXT"))
    # LLM answers shown while they are written (Slack chat streaming, Teams streaming in personal chats), one
    # update at most every stream_interval_s (bot.streaming).
    stream_answers: bool = Field(True, validation_alias=AliasChoices("POLICYBOT_STREAM"))
    stream_interval_s: float = Field(1.0, ge=0.2, validation_alias=AliasChoices("POLICYBOT_STREAM_INTERVAL"))
    # Where people reach `policybot serve` (the admin console's sign-in links); https makes its cookie Secure.
    public_url: str | None = Field(None, validation_alias=AliasChoices("POLICYBOT_PUBLIC_URL"))

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


class Settings(ServerSettings, SlackSettings, TeamsSettings, config.Settings):
    """Every setting, flat (settings.slack_bot_token, settings.top_k): one object, one environment read."""

    model_config = config.Settings.model_config


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment; keyword overrides win (used by tests and the CLI)."""
    return Settings(**overrides)

"""Slack's settings (part of the one settings object, adapters.settings.Settings, read once at start-up)."""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class SlackSettings(BaseSettings):
    # Same config as the core's (bot.config): field names never match variables by themselves, aliases do.
    model_config = SettingsConfigDict(env_prefix="POLICYBOT_FIELD_", env_file=None, extra="ignore", populate_by_name=True)

    # HTTP mode needs the bot token and the signing secret; Socket Mode the bot token and the app token (xapp-).
    slack_bot_token: str | None = Field(None, validation_alias=AliasChoices("SLACK_BOT_TOKEN"))
    slack_signing_secret: str | None = Field(None, validation_alias=AliasChoices("SLACK_SIGNING_SECRET"))
    slack_app_token: str | None = Field(None, validation_alias=AliasChoices("SLACK_APP_TOKEN"))
    slack_api_url: str = Field("https://slack.com/api/", validation_alias=AliasChoices("SLACK_API_URL"))
    slack_command: str = Field("/policy", validation_alias=AliasChoices("POLICYBOT_SLACK_COMMAND"))

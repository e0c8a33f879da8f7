"""Teams' settings (part of the one settings object, adapters.settings.Settings, read once at start-up)."""

from __future__ import annotations

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class TeamsSettings(BaseSettings):
    # Same config as the core's (bot.config): field names never match variables by themselves, aliases do.
    model_config = SettingsConfigDict(env_prefix="POLICYBOT_FIELD_", env_file=None, extra="ignore", populate_by_name=True)

    # The bot's Entra identity; no app id = anonymous (Emulator) mode (adapters.teams.http.BotFrameworkConfig).
    microsoft_app_id: str = Field("", validation_alias=AliasChoices("MICROSOFT_APP_ID"))
    microsoft_app_password: str = Field("", validation_alias=AliasChoices("MICROSOFT_APP_PASSWORD"))
    microsoft_app_type: str = Field("MultiTenant", validation_alias=AliasChoices("MICROSOFT_APP_TYPE"))
    microsoft_app_tenant_id: str = Field("", validation_alias=AliasChoices("MICROSOFT_APP_TENANT_ID"))

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
    # Entra group audiences through Microsoft Graph checkMemberGroups (needs GroupMember.Read.All, application;
    # and a tenant id): off means only explicit user ids count for Teams (adapters/teams/graph.py).
    graph_groups: bool = Field(False, validation_alias=AliasChoices("POLICYBOT_GRAPH_GROUPS"))
    graph_url: str = Field("https://graph.microsoft.com/v1.0", validation_alias=AliasChoices("POLICYBOT_GRAPH_URL"))
    graph_authority: str = Field("https://login.microsoftonline.com",
                                 validation_alias=AliasChoices("POLICYBOT_GRAPH_AUTHORITY"))

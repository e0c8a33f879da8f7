"""The platforms' group lookups for document audiences, registered on the core (bot/audiences.py) by every
process that answers: the server and the answer workers."""

from __future__ import annotations

import logging

from bot.core import PolicyBot

log = logging.getLogger(__name__)


def install(bot: PolicyBot) -> None:
    """Slack user groups when a bot token is set; Entra groups when POLICYBOT_GRAPH_GROUPS is on."""
    settings = bot.settings
    directory = bot.audiences.directory
    if getattr(settings, "slack_bot_token", None) and directory.groups("slack_groups"):
        from adapters.slack.membership import SlackGroups

        bot.audiences.register("slack", SlackGroups.from_settings(settings))
    if getattr(settings, "graph_groups", False) and directory.groups("entra_groups"):
        from adapters.teams.graph import GraphGroups

        bot.audiences.register("teams", GraphGroups.from_settings(settings))
    elif directory.groups("entra_groups"):
        log.warning("the audiences file lists Entra groups but POLICYBOT_GRAPH_GROUPS is off: Teams users get "
                    "only the audiences that name them explicitly")

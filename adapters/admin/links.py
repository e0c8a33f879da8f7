"""Sign-in links to the admin console, for the chat adapters and the CLI (`policybot console-link`)."""

from __future__ import annotations

from urllib.parse import quote

from bot.console_auth import LINK_TTL_S

LOGIN_PATH = "/admin/login"


def base_url(settings) -> str:
    """POLICYBOT_PUBLIC_URL, or this machine on the server's port."""
    return (settings.public_url or f"http://localhost:{settings.port}").rstrip("/")


def console_url(settings, token: str) -> str:
    return f"{base_url(settings)}{LOGIN_PATH}?token={quote(token)}"


def link_message(settings, token: str | None) -> str:
    """What the bot tells an admin who asked for a link (or anyone else)."""
    if token is None:
        return "Only policy admins can open the admin console. Ask the People team to add you to POLICYBOT_ADMINS."
    return (f"Your sign-in link to the admin console (valid {LINK_TTL_S // 60} minutes, works once): "
            f"{console_url(settings, token)}")

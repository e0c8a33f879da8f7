"""The one place the platforms' adapters log what a person wrote.

Message text is personal (health, pay, complaints), so it is not logged unless POLICYBOT_LOG_MESSAGE_TEXT is
true; then each question is logged at INFO with who asked it. Nothing else in the adapters logs message text or
request bodies (see bot/logs.py for the log format).
"""

from __future__ import annotations

import logging

from adapters.settings import Settings

log = logging.getLogger(__name__)

def log_question(settings: Settings, platform: str, user: str | None, text: str) -> None:
    """Log a question's text at INFO when POLICYBOT_LOG_MESSAGE_TEXT is set; otherwise nothing."""
    if settings.log_message_text:
        # Cut where answering cuts it: a 2 MB "question" is not a 2 MB log line.
        log.info("%s question from %s: %s", platform, user, text[:settings.max_question_chars])

"""A small router: greetings, thanks and help get an answer without retrieval; everything else is a question."""

from __future__ import annotations

import re

_GREETING = re.compile(r"^(hi|hello|hey|hiya|good (morning|afternoon|evening)|yo|hola|bonjour|ol[aá]|howdy)\b[\s!.,]*(there|bot|policybot|team)?[\s!.]*$", re.I)
_THANKS = re.compile(r"^(thanks?( you)?|thx|ty|cheers|merci|obrigad[oa]|great,? thanks?|perfect,? thanks?|ok,? thanks?)\b[\s!.]*(a lot|so much|very much)?[\s!.]*$", re.I)
_HELP = re.compile(r"^(help|\?|what can you do\??|how does this work\??|commands|usage)[\s!.]*$", re.I)


def route(text: str) -> str | None:
    """'greeting', 'thanks', 'help' for messages that need no retrieval; None for a real question."""
    cleaned = text.strip()
    if not cleaned or _HELP.match(cleaned):
        return "help"
    if _GREETING.match(cleaned):
        return "greeting"
    if _THANKS.match(cleaned):
        return "thanks"
    return None


def reply(kind: str, hr_contact: str) -> str:
    examples = '"How many vacation days do I get?", "Can I expense a coworking desk?"'
    if kind == "greeting":
        return f"Hi! I answer questions about our HR policies and cite the documents I use. Try {examples}."
    if kind == "thanks":
        return "You're welcome! Ask me anything else about our policies."
    return (
        "Ask me a question about our HR and company policies, for example "
        f"{examples}. I answer from the official documents and link each source [n]. "
        f"For anything personal or not covered, contact {hr_contact}. "
        "Use 👍/👎 on an answer to tell us how it did."
    )

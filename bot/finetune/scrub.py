"""Personal data out of training examples: emails, phone numbers, Slack/Teams mentions, employee ids.

Only what the employee or admin typed (questions, answers, corrections) is scrubbed, never the company's own
documents or the system prompt: a value that also appears in the example's sources or system message (the HR
mailbox, a helpline number in a policy) is company information, not personal data, and is kept so the model
still learns to quote it.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

PLACEHOLDERS = {
    "email": "[email]",
    "mention": "[user]",
    "employee_id": "[employee id]",
    "phone": "[phone]",
}

_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{2,}(?![\w-])")
# Slack: <@U123ABC>, <@W123ABC|name>, <!subteam^S123|@team>; Teams: <at>Jane Doe</at>
_MENTION = re.compile(r"<@[UW][A-Z0-9]{2,}(?:\|[^>]*)?>|<!subteam\^[A-Z0-9]+(?:\|[^>]*)?>|<at>[^<]{1,100}</at>", re.I)
# EMP-12345, EMP12345, emp_1234; E123456 (a letter E and six or seven digits)
_EMPLOYEE_ID = re.compile(r"\b(?:EMP[-_ ]?\d{3,8}|E\d{6,7})\b", re.I)
# Candidate phone numbers; _is_phone decides (digit count, not a date or a plain amount).
_PHONE = re.compile(r"(?<![\w+])(?:\+|00)?\(?\d[\d\s().\-/]{5,}\d(?![\w])")
_DATE = re.compile(r"^\d{4}[-./]\d{1,2}[-./]\d{1,2}$|^\d{1,2}[-./]\d{1,2}[-./]\d{2,4}$")


def _is_phone(candidate: str) -> bool:
    digits = sum(ch.isdigit() for ch in candidate)
    if _DATE.match(candidate.strip()):
        return False
    if candidate.startswith(("+", "00")) or "(" in candidate:
        return 7 <= digits <= 15
    # Without a country code: at least 9 digits in groups (07700 900123, 555-123-4567, 030 1234567).
    return 9 <= digits <= 15 and bool(re.search(r"[\s.\-/]", candidate.strip()) or digits >= 10)


@dataclass
class ScrubReport:
    counts: Counter = field(default_factory=Counter)

    def add(self, other: "ScrubReport") -> None:
        self.counts.update(other.counts)

    def as_dict(self) -> dict[str, int]:
        return {kind: int(self.counts.get(kind, 0)) for kind in PLACEHOLDERS}

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def _sub(pattern: re.Pattern, kind: str, text: str, allowed: set[str], report: ScrubReport,
         check=None) -> str:
    def replace(match: re.Match) -> str:
        value = match.group(0)
        if check is not None and not check(value):
            return value
        if value.lower() in allowed:
            return value
        report.counts[kind] += 1
        return PLACEHOLDERS[kind]

    return pattern.sub(replace, text)


def find_allowed(*texts: str) -> set[str]:
    """Emails, phones and ids that the company's own text contains (kept when they recur in an answer)."""
    allowed: set[str] = set()
    for text in texts:
        for pattern in (_EMAIL, _EMPLOYEE_ID):
            allowed.update(m.group(0).lower() for m in pattern.finditer(text))
        allowed.update(m.group(0).lower() for m in _PHONE.finditer(text) if _is_phone(m.group(0)))
    return allowed


def scrub(text: str, report: ScrubReport | None = None, allowed: set[str] | None = None) -> str:
    """Replace personal data with placeholders ([email], [phone], [user], [employee id]); counts go to `report`."""
    report = report if report is not None else ScrubReport()
    allowed = allowed or set()
    text = _sub(_EMAIL, "email", text, allowed, report)  # first: an address can hold digits and ids
    text = _sub(_MENTION, "mention", text, allowed, report)
    text = _sub(_EMPLOYEE_ID, "employee_id", text, allowed, report)
    text = _sub(_PHONE, "phone", text, allowed, report, check=_is_phone)
    return text

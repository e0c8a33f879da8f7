"""The core's plain values as Slack messages and modals (Block Kit, built with slack_sdk's models).

Pure functions: no I/O, nothing here talks to Slack. Limits respected here:
  - a section's text is at most 3,000 characters (long answers are split into several sections);
  - a message has at most 50 blocks, a context block at most 10 elements;
  - every message also gets a plain `text` fallback (notifications, screen readers, old clients).
Everything that comes from documents or the LLM is escaped (&, <, >), so it can neither mention
@channel nor forge a link.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from urllib.parse import quote

from slack_sdk.models.blocks import (
    ActionsBlock,
    ButtonElement,
    ContextActionsBlock,
    ContextBlock,
    FeedbackButtonObject,
    FeedbackButtonsElement,
    InputBlock,
    MarkdownTextObject,
    PlainTextInputElement,
    PlainTextObject,
    SectionBlock,
)
from slack_sdk.models.views import View

from bot.contract import Answer, DocumentInfo, Source

SECTION_LIMIT = 3000  # characters of text in a section block (and in one context element)
MAX_BLOCKS = 50
CONTEXT_ELEMENTS = 10
FALLBACK_LIMIT = 12000
LIST_LIMIT = 3800  # one ephemeral reply  # the `text` fallback; Slack truncates at 40,000
FEEDBACK_ACTION = "policybot_feedback"
FEEDBACK_MODAL = "policybot_feedback_modal"
ESCALATE_ACTION = "policybot_escalate"  # "Ask HR"; its anonymous twin below (action ids are unique per block)
ESCALATE_ANONYMOUS_ACTION = "policybot_escalate_anonymous"
# Answers a vote can be recorded against (the core records these; "error" and "limited" are not recorded).


@dataclass(frozen=True)
class Message:
    blocks: list[dict]
    text: str  # plain fallback; also what notifications show


# --------------------------------------------------------------------------------------------- text


def escape(text: str) -> str:
    """Slack's three control characters as entities (the only escaping mrkdwn needs)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_BOLD = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*")
_UNDERSCORE_BOLD = re.compile(r"(?<!\w)__(?=\S)(.+?)(?<=\S)__(?!\w)")
_ITALIC = re.compile(r"(?<![*\w])\*(?=[^\s*])([^*\n]+?)(?<=[^\s*])\*(?![*\w])")
_HEADING = re.compile(r"^[ \t]*#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", re.M)
_BULLET = re.compile(r"^([ \t]*)[*+-][ \t]+", re.M)
_MD_LINK = re.compile(r"\[([^\]\n]+)\]\((https?://[^\s)]+)\)")
_PLACEHOLDER = "\x00B\x00"


def to_mrkdwn(text: str) -> str:
    """The answer's markdown-ish text as Slack mrkdwn, minimally: escaping, **bold**, # headings, bullets, links.

    Citation markers ([1], [2]) are left as they are.
    """
    text = escape(text)
    text = _MD_LINK.sub(lambda m: f"<{_safe_url(m.group(2))}|{m.group(1)}>", text)
    text = _HEADING.sub(lambda m: f"{_PLACEHOLDER}{m.group(1).strip('*')}{_PLACEHOLDER}", text)
    text = _BULLET.sub(lambda m: f"{m.group(1)}• ", text)
    text = _BOLD.sub(lambda m: f"{_PLACEHOLDER}{m.group(1)}{_PLACEHOLDER}", text)
    text = _UNDERSCORE_BOLD.sub(lambda m: f"{_PLACEHOLDER}{m.group(1)}{_PLACEHOLDER}", text)
    text = _ITALIC.sub(lambda m: f"_{m.group(1)}_", text)  # markdown *italic* would be bold in mrkdwn
    return text.replace(_PLACEHOLDER, "*")


def _safe_url(url: str) -> str:
    """A URL as it may appear inside <url|label>: & as &amp; (Slack's own form); |, <, >, spaces encoded."""
    url = url.replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")
    url = quote(url, safe=":/?#[]@!$&'()*+,;=%~-._")
    return url.replace("&", "&amp;")


def is_linkable(link: str | None) -> bool:
    """A web or mail link (spaces inside are encoded when rendered); anything else is shown as plain title."""
    return bool(link) and re.match(r"^(https?://|mailto:)[^\s][^\r\n]*$", link.strip(), re.I) is not None


def split_text(text: str, limit: int = SECTION_LIMIT) -> list[str]:
    """Pieces of at most `limit` characters, cut at a paragraph, line, sentence or word boundary when possible,
    and never inside an entity such as &amp;."""
    pieces: list[str] = []
    rest = text.strip()
    while len(rest) > limit:
        window = rest[:limit]
        cut = -1
        for boundary in ("\n\n", "\n", ". ", " "):
            at = window.rfind(boundary)
            if at >= limit // 3:
                cut = at + (1 if boundary == ". " else 0)
                break
        if cut <= 0:
            cut = limit
            amp = window.rfind("&", max(0, limit - 6))
            if amp != -1 and ";" not in window[amp:]:
                cut = amp  # don't split "&amp;"
        pieces.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest:
        pieces.append(rest)
    return pieces


def source_label(source: Source) -> str:
    """`Title › Section` (unescaped)."""
    return f"{source.document} › {source.section}" if source.section else source.document


def source_line(source: Source) -> str:
    """`[n] <link|Title › Section>`; a source without a usable link shows its title (escaped either way)."""
    label = escape(source_label(source))
    shown = f"<{_safe_url(source.link.strip())}|{label}>" if is_linkable(source.link) else label
    page = f", p. {source.page}" if source.page else ""
    return f"[{source.marker}] {shown}{page}"


# --------------------------------------------------------------------------------------------- answers


def feedback_value(rating: int, interaction_id: str) -> str:
    return f"{'+1' if rating > 0 else '-1'}:{interaction_id}"


def parse_feedback_value(value: str | None) -> tuple[int, str] | None:
    """(rating, interaction id) from a feedback button's value, or None for anything else."""
    match = re.fullmatch(r"([+-]1):([0-9a-fA-F-]{8,64})", value or "")
    if not match:
        return None
    return (1 if match.group(1) == "+1" else -1), match.group(2)


def feedback_block(interaction_id: str) -> dict:
    return ContextActionsBlock(
        block_id=f"feedback:{interaction_id}",
        elements=[FeedbackButtonsElement(
            action_id=FEEDBACK_ACTION,
            positive_button=FeedbackButtonObject(text="👍", accessibility_label="This answer helped",
                                                 value=feedback_value(1, interaction_id)),
            negative_button=FeedbackButtonObject(text="👎", accessibility_label="This answer was wrong or unhelpful",
                                                 value=feedback_value(-1, interaction_id)),
        )],
    ).to_dict()


def escalate_block(interaction_id: str) -> dict:
    """"Ask HR" and "Ask HR anonymously" under an answer or a refusal (adapters.slack.escalation)."""
    return ActionsBlock(block_id=f"escalate:{interaction_id}", elements=[
        ButtonElement(text="Ask HR", action_id=ESCALATE_ACTION, value=f"named:{interaction_id}"),
        ButtonElement(text="Ask HR anonymously", action_id=ESCALATE_ANONYMOUS_ACTION,
                      value=f"anonymous:{interaction_id}"),
    ]).to_dict()


def parse_escalate_value(value: str | None) -> tuple[bool, str] | None:
    """(anonymous, interaction id) from an "Ask HR" button's value, or None for anything else."""
    match = re.fullmatch(r"(named|anonymous):([0-9a-fA-F-]{8,64})", value or "")
    return (match.group(1) == "anonymous", match.group(2)) if match else None


def render_answer(answer: Answer, ask_hr: bool = False) -> Message:
    """The answer with inline [n], a context block of its sources, and 👍/👎 carrying the interaction id; with
    `ask_hr` (POLICYBOT_HR_CHANNEL set) also "Ask HR" buttons."""
    head: list[dict] = []
    if answer.notice:
        head.append(_notice_block(answer.notice))
    tail = answer_footer(answer, ask_hr)

    body = to_mrkdwn(answer.text) or " "
    sections = split_text(body)
    room = MAX_BLOCKS - len(head) - len(tail)
    if len(sections) > room:
        sections = sections[:room]
        sections[-1] = sections[-1][: SECTION_LIMIT - 30].rstrip() + " … _(answer shortened)_"
    blocks = head + [SectionBlock(text=MarkdownTextObject(text=s)).to_dict() for s in sections] + tail
    return Message(blocks=blocks, text=fallback_text(answer))


def answer_footer(answer: Answer, ask_hr: bool = False) -> list[dict]:
    """What goes under an answer's text: its sources, the 👍/👎 and, with `ask_hr`, "Ask HR" (also what
    chat.stopStream adds under a streamed answer)."""
    tail: list[dict] = []
    if answer.sources:
        tail.append(_sources_block(answer.sources))
    if answer.rateable:
        tail.append(feedback_block(answer.interaction_id))
        if ask_hr:
            tail.append(escalate_block(answer.interaction_id))
    return tail


def stream_text(delta: str) -> str:
    """A piece of streamed answer text as chat.appendStream's markdown: escaped like every answer, so a
    document can neither mention @channel nor forge a link (escaping is per character, so pieces can be
    escaped one by one)."""
    return escape(delta)


def stream_end_blocks(answer: Answer, ask_hr: bool = False) -> list[dict]:
    """The blocks chat.stopStream puts under a streamed answer: the notice (it could not go above: the text was
    already streaming), the sources and the feedback buttons."""
    return ([_notice_block(answer.notice)] if answer.notice else []) + answer_footer(answer, ask_hr)


def _notice_block(notice: str) -> dict:
    return ContextBlock(elements=[MarkdownTextObject(text=escape(notice)[:SECTION_LIMIT])]).to_dict()


def _sources_block(sources: list[Source]) -> dict:
    elements: list[str] = []
    current = ""
    for line in (source_line(s) for s in sources):
        line = line[:SECTION_LIMIT]
        if current and len(current) + 1 + len(line) > SECTION_LIMIT:
            elements.append(current)
            current = line
        else:
            current = f"{current}\n{line}" if current else line
    if current:
        elements.append(current)
    return ContextBlock(elements=[MarkdownTextObject(text=e) for e in elements[:CONTEXT_ELEMENTS]]).to_dict()


def fallback_text(answer: Answer) -> str:
    lines = [to_mrkdwn(answer.text)]
    if answer.sources:
        lines.append("Sources: " + "; ".join(f"[{s.marker}] {escape(source_label(s))}" for s in answer.sources))
    text = "\n".join(lines)
    return text if len(text) <= FALLBACK_LIMIT else text[: FALLBACK_LIMIT - 1] + "…"


# --------------------------------------------------------------------------------------------- feedback modal


def feedback_modal(interaction_id: str, channel: str | None, thread_ts: str | None) -> dict:
    """Opened after 👎: what was wrong, and what the answer should have said (both optional)."""
    metadata = json.dumps({"interaction_id": interaction_id, "channel": channel, "thread_ts": thread_ts})
    return View(
        type="modal",
        callback_id=FEEDBACK_MODAL,
        private_metadata=metadata,
        title=PlainTextObject(text="Improve this answer"),
        submit=PlainTextObject(text="Send"),
        close=PlainTextObject(text="Skip"),
        blocks=[
            InputBlock(block_id="wrong", optional=True, label=PlainTextObject(text="What was wrong?"),
                       element=PlainTextInputElement(action_id="wrong", multiline=True, max_length=2000)),
            InputBlock(block_id="correction", optional=True,
                       label=PlainTextObject(text="What should the answer have said?"),
                       element=PlainTextInputElement(action_id="correction", multiline=True, max_length=3000)),
        ],
    ).to_dict()


def parse_feedback_submission(view: dict) -> tuple[dict, str | None, str | None]:
    """(metadata, comment, correction) from the feedback modal's view_submission."""
    try:
        metadata = json.loads(view.get("private_metadata") or "{}")
    except ValueError:
        metadata = {}
    if not isinstance(metadata, dict):  # the form's metadata is ours, but it comes back through Slack
        metadata = {}
    values = (view.get("state") or {}).get("values") or {}
    comment = ((values.get("wrong") or {}).get("wrong") or {}).get("value")
    correction = ((values.get("correction") or {}).get("correction") or {}).get("value")
    return metadata, (comment or "").strip() or None, (correction or "").strip() or None


# --------------------------------------------------------------------------------------------- admin replies


def help_text(command: str) -> str:
    return "\n".join([
        f"*{command}* manages the documents I answer from:",
        f"• `{command} upload`: add a document or replace one (PDF, Word, Markdown, text or HTML; up to 10 MB). "
        "Admins only.",
        f"• `{command} list`: the documents I answer from.",
        f"• `{command} remove TITLE`: stop using a document. Admins only.",
        f"• `{command} console`: a sign-in link to the admin console. Admins only.",
        f"• `{command} help`: this message.",
        "To ask a question, mention me in a channel or send me a direct message.",
    ])


def documents_text(documents: list[DocumentInfo]) -> str:
    if not documents:
        return "No documents yet. An admin can add one with the upload command."
    lines = [f"*{len(documents)} document{'s' if len(documents) != 1 else ''}:*"]
    for i, d in enumerate(documents):
        title = f"<{_safe_url(d.link)}|{escape(d.title)}>" if is_linkable(d.link) else escape(d.title)
        updated = f", updated {d.updated_at[:10]}" if d.updated_at else ""
        line = f"• {title} (version {d.version}, {d.chunks} passages{updated})"
        if sum(len(x) + 1 for x in lines) + len(line) > LIST_LIMIT:
            lines.append(f"…and {len(documents) - i} more.")
            break
        lines.append(line)
    return "\n".join(lines)


SUGGESTED_PROMPTS = [
    {"title": "Vacation days", "message": "How many vacation days do I get?"},
    {"title": "Sick leave", "message": "What do I do when I'm sick?"},
    {"title": "Expenses", "message": "What can I expense when I travel for work?"},
    {"title": "Remote work", "message": "Can I work from home or abroad?"},
]

"""The core's plain values as Bot Framework activities for Teams. Pure: no I/O.

An answer is one message whose text keeps the core's inline [n] markers, plus Teams' AI message entity
(https://learn.microsoft.com/microsoftteams/platform/bots/how-to/bot-messages-ai-generated-content):

    entities = [{"type": "https://schema.org/Message", "@type": "Message", "@context": "https://schema.org",
                 "@id": "", "additionalType": ["AIGeneratedContent"],
                 "citation": [{"@type": "Claim", "position": n,
                               "appearance": {"@type": "DigitalDocument", "name": ..., "url": ..., "abstract": ...}}]}]
    channelData = {"feedbackLoop": {"type": "default"}}

Teams turns each [n] into a citation pill that shows the document; the AI label says the text is machine
written; the feedback loop adds 👍/👎 and Teams' own feedback form, which comes back as a
`message/submitAction` invoke (see bot.py).

Feedback: the current docs enable the buttons with `channelData.feedbackLoop = {"type": "default"}`; the older
`channelData.feedbackLoopEnabled = true` gives the same default form. Teams rejects an activity that sets both,
so exactly one is set (FEEDBACK_CHANNEL_DATA). "custom" would make Teams ask the bot for its own form through a
`message/fetchTask` invoke, which this bot does not implement.

Limits kept here: at most 20 citations (Teams answers 400 above that), a citation name at most 80 characters
and an abstract at most 160, and the whole serialized activity under MAX_ACTIVITY_BYTES (Teams refuses messages
over about 28 KB; the connector adds its own fields), cutting the answer text if needed.
"""

from __future__ import annotations

import json
import re
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlparse

from botbuilder.schema import Activity, ActivityTypes, Entity

from bot.contract import Answer, DocumentInfo, Source, UploadResult

MESSAGE_ENTITY_TYPE = "https://schema.org/Message"
MAX_CITATIONS = 20
NAME_CHARS = 80
ABSTRACT_CHARS = 160
MAX_ACTIVITY_BYTES = 26_000
ENVELOPE_BYTES = 512  # an activity's own keys (type, text, textFormat, entities, channelData, ...) and JSON syntax
FEEDBACK_CHANNEL_DATA = {"feedbackLoop": {"type": "default"}}
# Answers a vote can be recorded against: the core records these ("error" and "limited" are not recorded and
# smalltalk has nothing to learn from). Refusals get the buttons: a 👎 on "not in our policies" is how a
# missing or badly worded document shows up.
# Teams' predefined citation icons, by the source's file type.
_ICONS = {".pdf": "PDF", ".docx": "Microsoft Word", ".doc": "Microsoft Word", ".md": "Text", ".markdown": "Text",
          ".txt": "Text"}
_MARKER = re.compile(r"\s?\[(\d{1,3})\]")
_TAG_START = re.compile(r"<(?=[A-Za-z/!?])")


class RawEntity(Entity):
    """An entity whose extra keys ("@type", "citation", ...) survive msrest serialization.

    botbuilder's Entity model knows only `type`; msrest drops every other key unless the model maps
    `additional_properties` to the object itself, which is what this does.
    """

    _attribute_map = {
        "type": {"key": "type", "type": "str"},
        "additional_properties": {"key": "", "type": "{object}"},
    }

    def __init__(self, *, type: str | None = None, additional_properties: dict | None = None, **kwargs) -> None:
        super().__init__(type=type, **kwargs)
        self.additional_properties = dict(additional_properties or {})


# --------------------------------------------------------------------------------------------- answers


def answer_activity(answer: Answer, ask_hr: Any = None) -> Activity:
    """The message for one answer: text with [n], citations entity and feedback buttons where they apply; with
    `ask_hr` (a card attachment: adapters.teams.escalation.escalate_card) the "Ask HR" buttons too."""
    text = _escape_tags(answer.text)
    if answer.notice:
        text = f"_{_escape_tags(answer.notice)}_\n\n{text}"
    if not answer.rateable:
        return text_activity(text)

    sources = [s for s in answer.sources if 1 <= s.marker <= MAX_CITATIONS]
    text = _drop_markers(text, keep={s.marker for s in sources})

    citations = {s.marker: citation(s) for s in sources}

    def build(body: str) -> Activity:
        entity = message_entity([c for marker, c in citations.items() if f"[{marker}]" in body])
        return Activity(type=ActivityTypes.message, text=body, text_format="markdown",
                        entities=[RawEntity(type=MESSAGE_ENTITY_TYPE, additional_properties=_without_type(entity))],
                        channel_data=dict(FEEDBACK_CHANNEL_DATA), attachments=[ask_hr] if ask_hr else None)

    # Everything but the text, at its largest (every citation kept): what the text may add to stay under the limit.
    besides_text = (_json_bytes([message_entity(list(citations.values())), FEEDBACK_CHANNEL_DATA])
                    + (_attachment_bytes(ask_hr) if ask_hr else 0) + ENVELOPE_BYTES)
    return _fit(text, build, besides_text)


def message_entity(citations: list[dict]) -> dict:
    """Teams' root message entity: the AI label, and the citations when there are any."""
    entity = {
        "type": MESSAGE_ENTITY_TYPE,
        "@type": "Message",
        "@context": "https://schema.org",
        "@id": "",
        "additionalType": ["AIGeneratedContent"],
    }
    if citations:
        entity["citation"] = citations[:MAX_CITATIONS]
    return entity


def citation(source: Source) -> dict:
    """One Claim: the document's title as the name, the section and snippet as the abstract, its link."""
    page = f", p. {source.page}" if source.page else ""
    name = clip(source.document or source.source or "Document", NAME_CHARS - len(page)) + page
    abstract = f"{source.section}: {source.snippet}" if source.section else source.snippet
    appearance: dict = {"@type": "DigitalDocument", "name": name, "abstract": clip(abstract or name, ABSTRACT_CHARS)}
    if source.link and urlparse(source.link).scheme in ("http", "https"):
        appearance["url"] = source.link
    icon = _ICONS.get(PurePosixPath(urlparse(source.source or "").path).suffix.lower())
    if icon:
        appearance["image"] = {"@type": "ImageObject", "name": icon}
    return {"@type": "Claim", "position": source.marker, "appearance": appearance}


# --------------------------------------------------------------------------------------------- other replies


def text_activity(text: str) -> Activity:
    """A plain message (command results, errors, help), cut to the size Teams accepts."""
    return _fit(text, lambda body: Activity(type=ActivityTypes.message, text=body, text_format="markdown"))


def typing_activity() -> Activity:
    return Activity(type=ActivityTypes.typing)


# --------------------------------------------------------------------------------------------- streaming
# Teams streams a bot message in personal chats as typing activities that carry a `streaminfo` entity
# (https://learn.microsoft.com/microsoftteams/platform/bots/streaming-ux): an informative update, then the
# text so far (each one the whole text, not a delta) numbered by streamSequence, then the final message. The
# connector's id for the first one is the streamId every later one names.

STREAMINFO = "streaminfo"


def stream_entity(stream_type: str, stream_id: str | None, sequence: int | None) -> RawEntity:
    """{"type": "streaminfo", "streamType": informative | streaming | final, "streamId", "streamSequence"}; the
    first activity has no id yet, the final one no sequence."""
    properties: dict = {"streamType": stream_type}
    if stream_id:
        properties["streamId"] = stream_id
    if sequence is not None:
        properties["streamSequence"] = sequence
    return RawEntity(type=STREAMINFO, additional_properties=properties)


def informative_activity(text: str, sequence: int = 1) -> Activity:
    """The status shown before any answer text ("Searching the handbook…"); it starts the stream."""
    return Activity(type=ActivityTypes.typing, text=text, entities=[stream_entity("informative", None, sequence)])


def streaming_activity(text: str, stream_id: str | None, sequence: int) -> Activity:
    """The answer so far (the whole text, escaped like the final answer)."""
    return Activity(type=ActivityTypes.typing, text=_escape_tags(text)[:MAX_ACTIVITY_BYTES // 2],
                    entities=[stream_entity("streaming", stream_id, sequence)])


def final_activity(answer: Answer, stream_id: str | None, ask_hr: Any = None) -> Activity:
    """The answer as always (AI label, citations, feedback loop, "Ask HR"), closing the stream when there is one."""
    activity = answer_activity(answer, ask_hr=ask_hr)
    if stream_id:
        activity.entities = [*(activity.entities or []), stream_entity("final", stream_id, None)]
    return activity


def upload_results(results: list[UploadResult | str]) -> str:
    """One line per file: the core's message (already says what happened or what went wrong)."""
    lines = [r if isinstance(r, str) else r.message for r in results]
    return "\n\n".join(lines)


def document_list(documents: list[DocumentInfo], limit: int = 100) -> str:
    if not documents:
        return "No documents yet. An admin can send me a file (pdf, docx, md, txt, html) here to add one."
    lines = [f"**Policy documents ({len(documents)})**", ""]
    for d in documents[:limit]:
        when = f", updated {d.updated_at[:10]}" if d.updated_at else ""
        title = _escape_tags(d.title)
        title = f"[{title}]({d.link})" if d.link and urlparse(d.link).scheme in ("http", "https") else title
        lines.append(f"- {title} — version {d.version}, {d.chunks} passages{when}")
    if len(documents) > limit:
        lines.append(f"- … and {len(documents) - limit} more")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- helpers


def clip(text: str, limit: int) -> str:
    """At most `limit` characters, cut at a word where possible, with an ellipsis when cut."""
    text = " ".join((text or "").split())
    if len(text) <= limit:
        return text
    cut = text[: max(limit - 1, 0)]
    if " " in cut[limit // 2:]:
        cut = cut.rsplit(" ", 1)[0]
    return cut.rstrip(" ,;:.-") + "…"


def activity_bytes(activity: Activity) -> int:
    return len(json.dumps(activity.serialize(), ensure_ascii=False).encode("utf-8"))


def _json_bytes(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False).encode("utf-8"))


def _attachment_bytes(attachment: Any) -> int:
    """The JSON size of an attachment's fields (a card's content is a plain dict); msrest's serializer, which
    costs more than the rest of the answer's rendering, only for content that is not plain JSON."""
    fields = [attachment.content_type, attachment.content_url, attachment.name, attachment.thumbnail_url,
              attachment.content]
    try:
        return _json_bytes(fields) + len(fields) * 16  # each field's "key": and its comma
    except TypeError:
        return _json_bytes(attachment.serialize())


def _fit(text: str, build, besides_text: int | None = None) -> Activity:
    """build(text), with the text cut (at a word, with "…") until the serialized activity fits.

    `besides_text`: an upper bound on the serialized activity's bytes other than its text. When the text and that
    fit, the activity is built once and not serialized to be measured: msrest's serializer is the costly part,
    and the activity is serialized again when it is sent (2% of an answer worker's CPU, load.py --profile)."""
    if besides_text is not None and _json_bytes(text) + besides_text <= MAX_ACTIVITY_BYTES:
        return build(text)
    activity = build(text)
    for _ in range(6):
        excess = activity_bytes(activity) - MAX_ACTIVITY_BYTES
        if excess <= 0:
            return activity
        encoded = text.encode("utf-8")
        keep = max(len(encoded) - excess - 64, 0)
        text = encoded[:keep].decode("utf-8", "ignore")
        text = (text.rsplit(" ", 1)[0] if " " in text[-200:] else text) + " …"
        activity = build(text)
    return activity


def _drop_markers(text: str, keep: set[int]) -> str:
    """Remove [n] markers that have no citation (past Teams' 20), so none shows as a dead reference."""
    return _MARKER.sub(lambda m: m.group(0) if int(m.group(1)) in keep else "", text)


def _escape_tags(text: str) -> str:
    """Text from documents or the LLM must not become Teams markup (<at>, <a href>, ...); "a < b" stays."""
    return _TAG_START.sub("&lt;", text or "")


def _without_type(entity: dict) -> dict:
    return {k: v for k, v in entity.items() if k != "type"}

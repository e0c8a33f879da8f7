"""The Teams conversation: a TeamsActivityHandler that turns activities into core calls and renders the results.

- Personal chat: every message is a question, or a command (`help`, `list`, `remove TITLE`, `upload`), or an
  admin's file upload. Group chats and channels: only messages that @mention the bot, with the mention removed.
- Follow-ups: the core keys history on conversation_id = activity.conversation.id. In a channel that id ends in
  `;messageid=<root>`, so each reply chain is its own conversation; a personal or group chat is one.
- Feedback: Teams' 👍/👎 form arrives as a `message/submitAction` invoke whose replyToId is the id of the bot's
  message; the id was mapped to the interaction when the answer was sent. The invoke is answered 200 with an
  empty body (Teams shows an error for any other answer).
- The core is synchronous; every core call goes through `run` (the server's thread pool).

Just over 400 lines because it is the one dispatcher of every Teams activity kind (messages, commands, uploads,
feedback invokes, card actions); streaming (adapters.teams.stream), escalation (adapters.teams.escalation),
uploads and rendering live in their own modules.
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
import re
import time
from typing import Any, Awaitable, Callable

from botbuilder.core import InvokeResponse, TurnContext
from botbuilder.core.teams import TeamsActivityHandler
from botbuilder.schema import Activity, ActivityTypes, ChannelAccount

from adapters import background
from adapters.admin.links import link_message
from adapters.background import BUSY_MESSAGE
from adapters.message_log import log_question
from adapters.teams import render, uploads
from adapters.teams.escalation import TeamsEscalation, escalate_card
from adapters.teams.stream import streamed_answer
from bot import metrics
from bot.contract import Answer
from bot.core import PolicyBot

log = logging.getLogger(__name__)

PLATFORM = "teams"
FEEDBACK_INVOKE = "message/submitAction"
TYPING_PERIOD_S = 3.0
_RATINGS = {"like": 1, "dislike": -1}
_COMMAND = re.compile(r"^\s*/?(help|list|remove|upload|ask|console)\b[\s:]*(.*)$", re.I | re.S)

Runner = Callable[..., Awaitable[Any]]


async def _in_thread(function, *args, **kwargs):
    return await asyncio.to_thread(function, *args, **kwargs)


class TeamsActivities(TeamsActivityHandler):
    """botbuilder's activity handler for Teams: turns activities into core calls and renders the results."""

    def __init__(self, core: PolicyBot, run: Runner | None = None, *, allow_http_downloads: bool = False,
                 download_timeout_s: float = uploads.DEFAULT_TIMEOUT_S, app_id: str = "") -> None:
        super().__init__()
        self.core = core
        self.run = run or _in_thread
        self.escalation = TeamsEscalation(core, self.run, app_id)  # "Ask HR" (adapters.teams.escalation)
        self.allow_http_downloads = allow_http_downloads  # anonymous (Emulator) mode only; Teams links are https
        self.download_timeout_s = download_timeout_s

    # ------------------------------------------------------------------------------------------ messages

    async def on_message_activity(self, turn_context: TurnContext) -> None:
        activity = turn_context.activity
        if not await self._claim(activity):
            return
        if self.escalation.submitted(activity):  # "Ask HR" or "Mark resolved" on one of our cards
            await self.escalation.on_submit(turn_context, user_of(activity))
            return
        hr_thread = self.escalation.hr_thread(activity)
        if hr_thread:  # a reply in an "Ask HR" thread of the HR channel, not a question
            await self.escalation.on_hr_reply(turn_context, hr_thread, user_of(activity), message_text(activity))
            return
        personal = scope(activity) == "personal"
        if not personal and not mentions_bot(activity):
            return  # group chat or channel chatter that isn't for us
        text = message_text(activity)
        user_id = user_of(activity)
        files = uploads.file_attachments(activity)
        if files:
            if personal:
                await self._upload(turn_context, user_id, files, text)
            else:
                await self._say(turn_context, "Uploads work in a personal chat with me: open a chat with "
                                              f"{_bot_name(activity)} and send the file there.")
            return

        match = _COMMAND.match(text)
        command, argument = (match.group(1).lower(), match.group(2).strip()) if match else (None, text)
        if command == "ask":
            text, command = argument, None
        if command == "help" and not argument or not text:
            await self._say(turn_context, self.help_text(activity, user_id))
            return
        if command and personal:
            if await self._command(turn_context, user_id, command, argument):
                return
        elif command in ("list", "remove", "upload", "console") and not argument:
            await self._say(turn_context, f"`{command}` works in a personal chat with me.")
            return
        await self._answer(turn_context, text, user_id)

    async def say_busy(self, turn_context: TurnContext) -> None:
        """Turn logic for a message the answer workers have no room for (adapters.turn_queue): say so now rather
        than let everyone's wait grow. Not a recorded turn (nothing to rate)."""
        activity = turn_context.activity
        if activity.type != ActivityTypes.message or not await self._claim(activity):
            return
        if scope(activity) == "personal" or mentions_bot(activity):
            await self._say(turn_context, BUSY_MESSAGE)

    async def _command(self, turn_context: TurnContext, user_id: str, command: str, argument: str) -> bool:
        """Run a personal-chat command; False when the text is really a question ("remove a dependent?")."""
        if command == "list":
            if argument and argument.lower() not in ("documents", "docs", "all", "policies"):
                return False
            documents = await self.run(self.core.documents_for, PLATFORM, user_id)  # a personal chat: theirs
            await self._say(turn_context, render.document_list(documents))
            return True
        if command == "console":  # a one-time sign-in link to the admin console (adapters.admin)
            if argument:
                return False  # "console games at work?" is a question
            token = await self.run(self.core.console.issue_link, user_id)
            await self._say(turn_context, link_message(self.core.settings, token))
            return True
        if command == "upload":
            if argument.endswith("?"):
                return False
            if not self.core.is_admin(user_id):
                await self._say(turn_context, _NOT_ADMIN_UPLOAD)
            else:
                await self._say(turn_context, "Attach the file (pdf, docx, md, txt or html) to a message to me; add "
                                              "`upload TITLE` as its text to set the title shown in citations.")
            return True
        if command == "remove":
            if argument.endswith("?"):
                return False
            if not argument:
                return await self._say(turn_context, "Say which document, e.g. `remove Travel Policy`.")
            if not self.core.is_admin(user_id) and not await self._names_a_document(argument, user_id):
                return False  # a question that starts with "remove", from someone who can't remove anyway
            result = await self.run(self.core.remove, user_id, argument)
            await self._say(turn_context, result.message)
            return True
        return False

    async def _names_a_document(self, name: str, user_id: str) -> bool:
        wanted = name.strip().casefold()
        documents = await self.run(self.core.documents_for, PLATFORM, user_id)
        return any(wanted in (d.title.casefold(), d.source.casefold(), str(d.id)) for d in documents)

    async def _answer(self, turn_context: TurnContext, question: str, user_id: str) -> None:
        activity = turn_context.activity
        started = time.monotonic()
        log_question(self.core.settings, PLATFORM, user_id, question)
        # Teams streams only in personal chats; group chats and channels get the final message only.
        ask_hr = (lambda a: escalate_card(a.interaction_id)) if self.core.escalations.hr_channel else (lambda a: None)
        if scope(activity) == "personal" and getattr(self.core.settings, "stream_answers", False):
            answer, response = await streamed_answer(turn_context, self.core, self.run, question, user_id, started,
                                                     ask_hr=ask_hr)
        else:
            answer = await self._typing_while(
                turn_context, self.run(self.core.answer, question, user_id, PLATFORM, activity.conversation.id,
                                       private=scope(activity) == "personal"),  # a channel's answer is everyone's
                delay_s=background.INDICATOR_DELAY_S)
            response = await turn_context.send_activity(render.answer_activity(answer, ask_hr=ask_hr(answer)))
            metrics.observe_first_text(PLATFORM, time.monotonic() - started, streamed=False)
        if response is not None and response.id and answer.rateable:
            try:
                await self.run(self.core.remember_message, answer.interaction_id, message_ref(activity, response.id))
            except Exception:  # the user has the answer; only a later vote on it can't be matched
                log.exception("could not map Teams message %s to interaction %s", response.id, answer.interaction_id)

    async def _upload(self, turn_context: TurnContext, user_id: str, files: list[uploads.FileRef], text: str) -> None:
        if not self.core.is_admin(user_id):
            log.info("refused an upload from non-admin %s", user_id)
            await self._say(turn_context, _NOT_ADMIN_UPLOAD)
            return
        match = _COMMAND.match(text)
        argument = match.group(2) if match and match.group(1).lower() == "upload" else ""
        # `upload TITLE for NAME[,NAME]`: the title (one file only) and who may read the files.
        title, audiences = uploads.upload_text(argument, self.core.audiences.directory.names)
        title = title if len(files) == 1 else None

        async def ingest_all() -> list:
            results: list = []
            for file in files:
                try:
                    data = await uploads.download(file, max_bytes=self.core.settings.max_document_bytes,
                                                  hosts=self.core.settings.download_hosts,
                                                  timeout_s=self.download_timeout_s,
                                                  allow_http=self.allow_http_downloads)
                except uploads.DownloadError as err:
                    log.warning("upload of %s failed: %s", file.filename, err.reason)
                    results.append(str(err))
                    continue
                results.append(await self.run(self.core.upload, user_id, file.filename, data, title=title or None,
                                              audiences=audiences))
            return results

        results = await self._typing_while(turn_context, ingest_all())
        await self._say(turn_context, render.upload_results(results))

    # ------------------------------------------------------------------------------------------ feedback

    async def on_invoke_activity(self, turn_context: TurnContext) -> InvokeResponse:
        if turn_context.activity.name == FEEDBACK_INVOKE:
            try:
                await self._feedback(turn_context.activity)
            except Exception:  # a failed vote is logged; Teams must still get its empty 200
                log.exception("could not record Teams feedback")
            return InvokeResponse(status=200, body=None)
        return await super().on_invoke_activity(turn_context)

    async def _feedback(self, activity: Activity) -> None:
        value = activity.value if isinstance(activity.value, dict) else {}
        action = value.get("actionValue") if isinstance(value.get("actionValue"), dict) else {}
        rating = _RATINGS.get(str(action.get("reaction", "")).lower())
        if value.get("actionName") != "feedback" or rating is None:
            log.warning("ignored a %s invoke with an unexpected value (actionName %r, reaction %r)", FEEDBACK_INVOKE,
                        value.get("actionName"), action.get("reaction"))
            return
        if not activity.reply_to_id:
            log.warning("feedback invoke without replyToId; nothing to record it against")
            return
        interaction_id = await self._interaction_for(message_ref(activity, activity.reply_to_id))
        if interaction_id is None:
            log.warning("feedback on unknown Teams message %s in %s; not recorded", activity.reply_to_id,
                        activity.conversation.id if activity.conversation else None)
            return
        result = await self.run(self.core.feedback, interaction_id, user_of(activity), PLATFORM, rating,
                                comment=feedback_text(action.get("feedback")))
        if not result.recorded:
            log.warning("feedback on %s not recorded: %s", interaction_id, result.message)

    async def _interaction_for(self, ref: str, attempts: int = 8, wait_s: float = 0.4) -> str | None:
        """The interaction behind a sent message. Under load the mapping is written a moment after the user
        sees the answer, so a quick vote waits for it (about 3 s) instead of being dropped."""
        for attempt in range(attempts):
            try:
                interaction_id = await self.run(self.core.interaction_for_message, ref)
            except Exception:  # the database is briefly away: same as not there yet
                interaction_id = None
            if interaction_id is not None or attempt == attempts - 1:
                return interaction_id
            await asyncio.sleep(wait_s)
        return None

    # ------------------------------------------------------------------------------------------ installs

    async def on_teams_members_added_dispatch(self, members_added: list[ChannelAccount], team_info, turn_context):
        """Say hello when the bot itself is added (no member lookups: the only member that matters is us)."""
        recipient = turn_context.activity.recipient
        if recipient is not None and any(m.id == recipient.id for m in members_added or []):
            await self._say(turn_context, self.help_text(turn_context.activity, user_of(turn_context.activity)))

    # ------------------------------------------------------------------------------------------ helpers

    def help_text(self, activity: Activity, user_id: str) -> str:
        hr = self.core.settings.hr_contact
        if scope(activity) != "personal":
            return (f"Mention me with a question about our HR and company policies, e.g. "
                    f"**@{_bot_name(activity)} How many vacation days do I get?** I answer from the official "
                    "documents and cite them [n]; reply in the same thread to ask a follow-up. "
                    f"Commands and uploads work in a personal chat with me. For anything personal, contact {hr}.")
        lines = [
            "Ask me about our HR and company policies, e.g. **How many vacation days do I get?** or "
            "**Can I expense a coworking desk?** I answer from the official documents and cite them [n]; "
            "select a number to see the source. Use 👍/👎 under an answer to tell us how it did.",
            "",
            "- `list`: the documents I answer from",
            "- `help`: this message",
        ]
        if self.core.is_admin(user_id):
            lines += [
                "- **Admins:** send a file (pdf, docx, md, txt, html) here to add it, or to replace the document "
                "with the same file name; write `upload TITLE` with it to set the title shown in citations, and "
                "`upload TITLE for NAME[,NAME]` (or `upload for NAME`) to let only those audiences read it",
                "- **Admins:** `remove TITLE` takes a document out",
                "- **Admins:** `console` sends a sign-in link to the admin console",
            ]
        lines += ["", f"For anything personal or not covered, contact {hr}."]
        return "\n".join(lines)

    async def _say(self, turn_context: TurnContext, text: str) -> bool:
        await turn_context.send_activity(render.text_activity(text))
        return True

    async def _typing_while(self, turn_context: TurnContext, work: Awaitable[Any], delay_s: float = 0.0) -> Any:
        """Show "typing…" until the work is done (Teams shows one indicator for a few seconds, so repeat it),
        unless it is done within `delay_s` (answers: background.INDICATOR_DELAY_S).

        The first indicator is sent (awaited) before the result is used, so it never arrives after the reply."""
        done = asyncio.Event()

        async def send_typing() -> bool:
            try:
                await turn_context.send_activity(render.typing_activity())
                return True
            except Exception as err:  # cosmetic: never let the indicator fail the turn
                log.debug("typing indicator failed: %s", err)
                return False

        async def keep_typing() -> None:
            while True:
                try:
                    await asyncio.wait_for(done.wait(), TYPING_PERIOD_S)
                    return
                except asyncio.TimeoutError:
                    if not await send_typing():
                        return

        work = asyncio.ensure_future(work)  # starts now; the indicator goes out meanwhile
        if await background.ready_within(work, delay_s):
            return work.result()
        if not await send_typing():
            return await work
        typing = asyncio.create_task(keep_typing())
        try:
            return await work
        finally:
            done.set()
            await typing

    async def _claim(self, activity: Activity) -> bool:
        """Teams may deliver a message twice (retries, several bot processes): only the first claim answers."""
        if not activity.id:
            return True
        key = f"{activity.conversation.id if activity.conversation else ''}|{activity.id}"
        claimed = await self.core.events.claim_event(PLATFORM, key)
        if not claimed:
            log.info("duplicate Teams activity %s ignored", key)
        return claimed


_NOT_ADMIN_UPLOAD = ("Only policy admins can upload documents, so nothing was added. "
                     "Ask the People team to add you, or send the file to them.")


# ---------------------------------------------------------------------------------------------- activity helpers


def scope(activity: Activity) -> str:
    """personal | groupChat | channel (Teams' conversationType; the Emulator sends none: personal)."""
    conversation = activity.conversation
    kind = (conversation.conversation_type if conversation else None) or ""
    if kind in ("channel", "groupChat"):
        return kind
    return "groupChat" if conversation is not None and conversation.is_group else "personal"


def _mention_id(entity) -> str | None:
    props = getattr(entity, "additional_properties", None) or {}
    mentioned = props.get("mentioned")
    return mentioned.get("id") if isinstance(mentioned, dict) else None


def mentions_bot(activity: Activity) -> bool:
    recipient = activity.recipient.id if activity.recipient else None
    return bool(recipient) and any(_mention_id(e) == recipient for e in TurnContext.get_mentions(activity))


def message_text(activity: Activity) -> str:
    """The message text without the bot's @mention, Teams' HTML entities, or extra whitespace."""
    text = activity.text or ""
    if activity.recipient and activity.entities:
        mentions = [e for e in TurnContext.get_mentions(activity) if _mention_id(e) == activity.recipient.id]
        if mentions:
            try:
                text = TurnContext.remove_recipient_mention(activity) or ""
            except (KeyError, TypeError, AttributeError, re.error):
                pass
            for mention in mentions:  # botbuilder matches the mention as a pattern; remove any literal leftover
                literal = (mention.additional_properties or {}).get("text")
                if literal:
                    text = text.replace(literal, " ")
    text = re.sub(r"</?at>", " ", text)
    return " ".join(html.unescape(text).split())


def user_of(activity: Activity) -> str:
    """The Entra (AAD) object id when Teams sends one (that is what POLICYBOT_ADMINS lists), else the channel id."""
    account = activity.from_property
    if account is None:
        return "unknown"
    return account.aad_object_id or account.id or "unknown"


def message_ref(activity: Activity, message_id: str) -> str:
    """The key a bot message is remembered by. Teams message ids are only unique within a conversation (channel
    ids are timestamps), so the conversation is part of it; the `;messageid=` reply-chain suffix is not, as the
    feedback invoke may name the thread differently from the reply."""
    conversation = (activity.conversation.id if activity.conversation else "") or ""
    return f"teams:{conversation.split(';', 1)[0]}:{message_id}"


def feedback_text(raw: Any) -> str | None:
    """The comment in Teams' feedback form: actionValue.feedback is a JSON string {"feedbackText": "..."}."""
    if raw is None:
        return None
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return raw.strip() or None
    if isinstance(raw, dict):
        text = raw.get("feedbackText")
        return str(text).strip() or None if text is not None else None
    return str(raw).strip() or None


def _bot_name(activity: Activity) -> str:
    return (activity.recipient.name if activity.recipient else None) or "PolicyBot"

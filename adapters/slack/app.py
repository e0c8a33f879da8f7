"""The Slack adapter: a slack-bolt AsyncApp whose listeners turn Slack events into core calls.

Acknowledging fast: the app runs with process_before_response=True, so bolt answers Slack's HTTP request as
soon as a listener returns, and every listener returns at once: it acks and hands the slow part (the answer,
the download, the database) to `self.background` (adapters.background: the tasks, their drain at shutdown, and
the hand-off to answer workers), so a question that was acknowledged is also answered.

What posts in Slack (answers, the busy reply, private notes) is the adapter's `replier` (adapters.slack.replier),
which also claims each question's event_id before answering: bolt itself does not look at Slack's retry header.
"""

from __future__ import annotations

import asyncio
import logging
import re

import aiohttp
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.webhook.async_client import AsyncWebhookClient

from adapters.admin.links import link_message
from adapters.background import Background
from adapters.slack import render, uploads
from adapters.slack.escalation import SlackEscalation
from adapters.slack.replier import PLATFORM, QUESTION_TURN, RunBlocking, SlackReplier, slack_error
from bot.core import PolicyBot
from knowledge.audiences import AudienceError, parse_audiences

log = logging.getLogger(__name__)

NOT_ADMIN = "Only policy admins can {what}. Ask the People team to add your Slack user id to POLICYBOT_ADMINS."


class SlackAdapter:
    def __init__(self, bot: PolicyBot, run_blocking: RunBlocking, verify_requests: bool = True) -> None:
        self.bot = bot
        self.settings = bot.settings
        self.run_blocking = run_blocking
        self.background = Background(PLATFORM)  # its queue is set when answer workers answer the questions
        self.replier = SlackReplier(bot, run_blocking)
        self.client = self.replier.client  # one Web API client for bolt and the replies
        self.escalation = SlackEscalation(bot, run_blocking, self.replier, self.background.spawn)
        self.upload_limit = min(uploads.SLACK_FILE_LIMIT, self.settings.max_document_bytes)
        self.app = AsyncApp(
            name="policybot",
            client=self.client,
            signing_secret=self.settings.slack_signing_secret or "",
            request_verification_enabled=verify_requests,
            process_before_response=True,
            logger=bolt_logger(),
        )
        self._register()

    # ------------------------------------------------------------------------------------------ plumbing

    def _register(self) -> None:
        app = self.app
        app.event("app_mention")(self.on_mention)
        app.event("message")(self.on_message)
        app.event("app_home_opened")(self.on_home_opened)
        app.event("assistant_thread_started")(self.on_assistant_thread_started)
        app.event(re.compile(r".*"))(self.on_other_event)  # acknowledged, so Slack doesn't resend it
        app.command(self.settings.slack_command)(self.on_command)
        app.action(render.FEEDBACK_ACTION)(self.on_feedback)
        app.view(render.FEEDBACK_MODAL)(self.on_feedback_submission)
        app.view(uploads.UPLOAD_MODAL)(self.on_upload_submission)
        self.escalation.register(app)

    # ------------------------------------------------------------------------------------------ questions

    async def on_mention(self, body: dict, event: dict, context) -> None:
        if event.get("bot_id") or event.get("subtype") or event.get("edited") or not event.get("user"):
            return
        thread_ts = event.get("thread_ts") or event.get("ts")
        question = strip_mention(event.get("text") or "", context.bot_user_id)
        await self.hand_off(dict(event_id=body.get("event_id"), question=question, user=event["user"],
                                 channel=event.get("channel"), thread_ts=thread_ts, team=team_of(body, event)))

    async def on_message(self, body: dict, event: dict, context) -> None:
        # Edits (message_changed), deletions, joins, bot posts and our own messages are not questions.
        if event.get("subtype") not in (None, "thread_broadcast", "file_share") or event.get("bot_id"):
            return
        user, channel, text = event.get("user"), event.get("channel"), event.get("text") or ""
        if not user or not channel or user == context.bot_user_id:
            return
        if self.escalation.is_hr_thread_reply(event):  # an HR member answering an "Ask HR" thread
            self.background.spawn(self.escalation.on_hr_message(body.get("event_id"), event), "hr-reply")
            return
        thread_ts = event.get("thread_ts") or event.get("ts")
        turn = dict(event_id=body.get("event_id"), question=text, user=user, channel=channel, thread_ts=thread_ts,
                    team=team_of(body, event))
        if event.get("channel_type") == "im":
            # Only the asker sees a DM's answer: their audiences apply (a group DM, mpim, counts as a channel).
            await self.hand_off({**turn, "private": True})
            return
        # A reply in a channel thread the bot answered in (needs the message.channels / message.groups events).
        # A reply that mentions the bot arrives as app_mention too, and is answered from there.
        if event.get("thread_ts") and not mentions(text, context.bot_user_id) and not re.search(r"<@[UW]", text):
            await self.hand_off({**turn, "only_if_engaged": True})

    async def hand_off(self, turn: dict) -> None:
        """Answer a question (the keyword arguments of SlackReplier.answer()): in an answer worker when there are
        some, else in this process after the ack."""
        replier = self.replier
        await self.background.hand_off(QUESTION_TURN, turn, lambda: replier.answer(**turn),
                                       lambda: replier.say_busy(**turn))

    # ------------------------------------------------------------------------------------------ agent messaging

    async def on_home_opened(self, event: dict) -> None:
        # Agent messaging: the Messages tab is the agent's DM; prompts pin to its top (no thread_ts).
        if event.get("tab") == "messages" and event.get("channel"):
            self.background.spawn(self.suggest_prompts(event["channel"], None), "prompts")

    async def on_assistant_thread_started(self, event: dict) -> None:
        # The older assistant messaging experience: prompts belong to the new thread.
        thread = event.get("assistant_thread") or {}
        if thread.get("channel_id") and thread.get("thread_ts"):
            self.background.spawn(self.suggest_prompts(thread["channel_id"], thread["thread_ts"]), "prompts")

    async def suggest_prompts(self, channel: str, thread_ts: str | None) -> None:
        try:
            await self.client.assistant_threads_setSuggestedPrompts(
                channel_id=channel, thread_ts=thread_ts, title="Ask me about our policies",
                prompts=render.SUGGESTED_PROMPTS)
        except (SlackApiError, aiohttp.ClientError, asyncio.TimeoutError) as err:
            log.warning("could not set suggested prompts in %s: %s", channel, err)

    async def on_other_event(self) -> None:
        return None

    # ------------------------------------------------------------------------------------------ feedback

    async def on_feedback(self, ack, body: dict, action: dict) -> None:
        await ack()
        parsed = render.parse_feedback_value(action.get("value"))
        user = (body.get("user") or {}).get("id")
        if parsed is None or not user:
            log.warning("feedback click without a valid value: %r", action.get("value"))
            return
        rating, interaction_id = parsed
        container = body.get("container") or {}
        channel = (body.get("channel") or {}).get("id") or container.get("channel_id")
        thread_ts = (body.get("message") or {}).get("thread_ts") or container.get("thread_ts")
        vote = self.record_vote(interaction_id, user, rating, channel, thread_ts, body.get("trigger_id"))
        self.background.spawn(vote, "feedback")

    async def record_vote(self, interaction_id: str, user: str, rating: int, channel: str | None,
                          thread_ts: str | None, trigger_id: str | None) -> None:
        if rating < 0 and trigger_id:  # first: a trigger_id is valid for 3 seconds
            try:
                await self.client.views_open(trigger_id=trigger_id,
                                             view=render.feedback_modal(interaction_id, channel, thread_ts))
            except (SlackApiError, aiohttp.ClientError, asyncio.TimeoutError) as err:
                log.warning("could not open the feedback form: %s", err)
        result = await self.run_blocking(self.bot.feedback, interaction_id, user, PLATFORM, rating)
        await self.replier.tell(user, channel, thread_ts, render.escape(result.message))

    async def on_feedback_submission(self, ack, body: dict, view: dict) -> None:
        await ack()
        metadata, comment, correction = render.parse_feedback_submission(view)
        user = (body.get("user") or {}).get("id")
        if not metadata.get("interaction_id") or not user or not (comment or correction):
            return
        self.background.spawn(self.record_correction(metadata, user, comment, correction), "correction")

    async def record_correction(self, metadata: dict, user: str, comment: str | None,
                                correction: str | None) -> None:
        result = await self.run_blocking(self.bot.feedback, metadata["interaction_id"], user, PLATFORM, -1,
                                         comment, correction)
        text = "Thanks, your note was saved. It helps us fix the answer." if result.recorded else result.message
        await self.replier.tell(user, metadata.get("channel"), metadata.get("thread_ts"), render.escape(text))

    # ------------------------------------------------------------------------------------------ /policy

    async def on_command(self, ack, command: dict) -> None:
        name = self.settings.slack_command
        words = (command.get("text") or "").strip()
        sub, _, argument = words.partition(" ")
        sub, argument = sub.lower(), argument.strip()
        user = command.get("user_id") or ""
        if sub in ("", "help"):
            await ack(text=render.help_text(name), response_type="ephemeral")
        elif sub == "console":  # a one-time sign-in link to the admin console (adapters.admin), privately
            token = await self.run_blocking(self.bot.console.issue_link, user)
            await ack(text=render.escape(link_message(self.settings, token)), response_type="ephemeral")
        elif sub == "list":
            await ack()
            self.background.spawn(self.list_documents(command), "list")
        elif sub in ("upload", "remove") and not self.bot.is_admin(user):
            await ack(text=NOT_ADMIN.format(what="upload documents" if sub == "upload" else "remove documents"),
                      response_type="ephemeral")
        elif sub == "upload":
            await ack()
            self.background.spawn(self.open_upload(command), "upload-form")
        elif sub == "remove":
            if not argument:
                await ack(text=f"Say which document to remove, e.g. `{name} remove Travel Policy`. "
                               f"`{name} list` shows the titles.", response_type="ephemeral")
                return
            await ack()
            self.background.spawn(self.remove_document(command, argument), "remove")
        else:
            await ack(text=f"I don't know `{render.escape(sub[:40])}`.\n" + render.help_text(name),
                      response_type="ephemeral")

    async def list_documents(self, command: dict) -> None:
        # The list goes to its asker only: the documents they may read (an admin: all of them).
        documents = await self.run_blocking(self.bot.documents_for, PLATFORM, command.get("user_id") or "")
        await self.respond(command, render.documents_text(documents))

    async def remove_document(self, command: dict, title: str) -> None:
        result = await self.run_blocking(self.bot.remove, command["user_id"], title)
        await self.respond(command, render.escape(result.message))

    async def open_upload(self, command: dict) -> None:
        try:
            await self.client.views_open(trigger_id=command["trigger_id"], view=uploads.upload_modal(self.upload_limit))
        except (SlackApiError, aiohttp.ClientError, asyncio.TimeoutError) as err:
            log.warning("could not open the upload form: %s", err)
            await self.respond(command, "I couldn't open the upload form. Please try the command again.")

    async def respond(self, command: dict, text: str) -> None:
        """Reply to a slash command privately: through its response_url, else the user's DM."""
        url = command.get("response_url")
        if url:
            try:
                response = await AsyncWebhookClient(url, timeout=15).send(text=text, response_type="ephemeral")
                if response.status_code == 200:
                    return
                log.info("response_url answered %s; using the DM", response.status_code)
            except (aiohttp.ClientError, asyncio.TimeoutError) as err:
                log.info("response_url failed (%s); using the DM", err)
        await self.replier.dm(command["user_id"], text)

    # ------------------------------------------------------------------------------------------ uploads

    async def on_upload_submission(self, ack, body: dict, view: dict) -> None:
        user = (body.get("user") or {}).get("id") or ""
        if not self.bot.is_admin(user):
            await ack(response_action="errors", errors={"file": NOT_ADMIN.format(what="upload documents")})
            return
        request = uploads.parse_upload_submission(view)
        if request.file is None:
            await ack(response_action="errors", errors={"file": "Choose a file to upload."})
            return
        problem = uploads.check_file(request.file, self.upload_limit)
        if problem:
            await ack(response_action="errors", errors={"file": problem})
            return
        if request.link and not render.is_linkable(request.link):
            await ack(response_action="errors", errors={"link": "Use a web address starting with https://"})
            return
        if request.audiences:
            try:
                parse_audiences(request.audiences)
            except AudienceError as err:
                await ack(response_action="errors", errors={"audiences": str(err)})
                return
        await ack()  # closes the modal; the result comes as a DM
        self.background.spawn(self.ingest(user, request), "ingest")

    async def ingest(self, user: str, request: uploads.UploadRequest) -> None:
        file = request.file
        try:
            if file.url is None or file.size is None or not file.name:
                file = await self._file_info(file)
                problem = uploads.check_file(file, self.upload_limit)
                if problem:
                    raise uploads.UploadProblem(problem)
            data = await uploads.download(file, self.settings.slack_bot_token, self.upload_limit,
                                          self.client.base_url, self.settings.download_hosts)
        except uploads.UploadProblem as problem:
            await self.replier.dm(user, render.escape(f"Upload failed: {problem} Nothing was changed."))
            return
        result = await self.run_blocking(self.bot.upload, user, file.name, data, request.title, request.link,
                                         request.audiences)
        await self.replier.dm(user, render.escape(result.message))

    async def _file_info(self, file: uploads.SlackFile) -> uploads.SlackFile:
        """Complete a file known only by id (file_input payloads may carry just that) with files.info."""
        if not file.id:
            raise uploads.UploadProblem("Slack did not say which file was uploaded. Try again.")
        try:
            response = await self.client.files_info(file=file.id)
        except SlackApiError as err:
            raise uploads.UploadProblem(
                f"I couldn't look up the file in Slack ({slack_error(err)}). Check that the app has the "
                "files:read scope.") from err
        except (aiohttp.ClientError, asyncio.TimeoutError) as err:
            raise uploads.UploadProblem("I couldn't reach Slack to look up the file. Try again later.") from err
        return uploads.SlackFile.from_payload(response.get("file") or {})


# ---------------------------------------------------------------------------------------------- helpers


class _NoRequestData(logging.Filter):
    """Bolt quotes request bodies in some messages (an invalid signature at INFO, an unhandled request at
    WARNING), as dict reprs: keep what comes before the first `{`, and at most 300 characters."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cut = min(len(message), 300, message.find("{") if "{" in message else len(message))
        if cut < len(message):
            record.msg, record.args = message[:cut].rstrip(" (:") + " […request data not logged]", None
        return True


def bolt_logger() -> logging.Logger:
    """The base logger for bolt. Bolt copies its base logger's level onto every logger it creates, and without
    one the root's (INFO): then a refused request's whole body (up to 2 MB) is logged at INFO. This one is at
    WARNING at least, and its filter (copied too) keeps request data out of what bolt still logs."""
    logger = logging.getLogger("adapters.slack.bolt")
    logger.setLevel(max(logging.WARNING, logging.getLogger().getEffectiveLevel()))
    if not any(isinstance(f, _NoRequestData) for f in logger.filters):
        logger.addFilter(_NoRequestData())
    return logger


def strip_mention(text: str, bot_user_id: str | None) -> str:
    """The question without the @mention(s) of the bot."""
    if bot_user_id:
        text = re.sub(rf"<@{re.escape(bot_user_id)}(\|[^>]*)?>", " ", text)
    else:
        text = re.sub(r"^\s*<@[UW][A-Z0-9]+(\|[^>]*)?>", " ", text)
    return " ".join(text.split())


def team_of(body: dict, event: dict) -> str | None:
    """The asker's workspace (a stream into a channel thread names it: recipient_team_id)."""
    return event.get("user_team") or event.get("team") or body.get("team_id")


def mentions(text: str, user_id: str | None) -> bool:
    return bool(user_id) and re.search(rf"<@{re.escape(user_id)}(\|[^>]*)?>", text) is not None


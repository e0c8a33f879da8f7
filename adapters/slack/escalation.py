"""Slack's side of "Ask HR" (bot.escalation holds the policy): the buttons under an answer, the thread in the HR
channel (POLICYBOT_HR_CHANNEL), HR replies in that thread (`message` events: the app needs `message.channels`,
or `message.groups` for a private channel, and to be a member of it), and "Mark resolved".

The reply reaches the employee where they asked when that was their DM with the bot (in the same thread), and
in their DM otherwise: an HR answer may be personal, so it is never posted in a shared channel.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.models.blocks import ActionsBlock, ButtonElement, ContextBlock, MarkdownTextObject, SectionBlock

from adapters.slack import render
from adapters.slack.replier import PLATFORM, RunBlocking, SlackReplier, slack_error
from bot.core import PolicyBot
from bot.escalation import HrPost, Relay

log = logging.getLogger(__name__)

RESOLVE_ACTION = "policybot_escalation_resolve"
ANSWER_CHARS = 2500  # of the bot's answer shown in the HR post (one section)


class SlackEscalation:
    def __init__(self, bot: PolicyBot, run_blocking: RunBlocking, replier: SlackReplier, spawn) -> None:
        self.bot = bot
        self.run_blocking = run_blocking
        self.replier = replier
        self.spawn = spawn  # Background.spawn: the slow part runs after the ack

    def register(self, app) -> None:
        app.action(render.ESCALATE_ACTION)(self.on_escalate)
        app.action(render.ESCALATE_ANONYMOUS_ACTION)(self.on_escalate)
        app.action(RESOLVE_ACTION)(self.on_resolve)

    def is_hr_thread_reply(self, event: dict) -> bool:
        """A reply inside a thread of the HR channel (not the thread's first message)."""
        hr = self.bot.escalations.hr_channel
        thread = event.get("thread_ts")
        return bool(hr) and event.get("channel") == hr and bool(thread) and thread != event.get("ts")

    # ------------------------------------------------------------------------------------------ employee side

    async def on_escalate(self, ack, body: dict, action: dict) -> None:
        await ack()
        parsed = render.parse_escalate_value(action.get("value"))
        user = (body.get("user") or {}).get("id")
        if parsed is None or not user:
            log.warning("Ask HR click without a valid value: %r", action.get("value"))
            return
        anonymous, interaction_id = parsed
        container = body.get("container") or {}
        channel = (body.get("channel") or {}).get("id") or container.get("channel_id")
        message = body.get("message") or {}
        thread_ts = message.get("thread_ts") or container.get("thread_ts") or message.get("ts")
        self.spawn(self.escalate(interaction_id, user, anonymous, channel, thread_ts), "escalate")

    async def escalate(self, interaction_id: str, user: str, anonymous: bool, channel: str | None,
                       thread_ts: str | None) -> None:
        in_dm = bool(channel) and channel.startswith("D")
        reply_to = {"channel": channel if in_dm else user, "thread_ts": thread_ts if in_dm else None}
        opened = await self.run_blocking(self.bot.escalations.open, interaction_id, user, PLATFORM, anonymous,
                                         reply_to)
        if opened.ok:
            posted = await self._post(opened.hr_channel, None, hr_post_blocks(opened.post), hr_post_text(opened.post))
            if posted is None:
                await self.run_blocking(self.bot.escalations.abandon, opened.post.escalation_id)
                await self.replier.tell(user, channel, thread_ts, "I couldn't reach the People team just now. "
                                        "Please try again in a minute.")
                return
            await self.run_blocking(self.bot.escalations.thread_posted, opened.post.escalation_id, *posted)
        await self.replier.tell(user, channel, thread_ts, render.escape(opened.message))

    # ------------------------------------------------------------------------------------------ HR side

    async def on_hr_message(self, event_id: str | None, event: dict) -> None:
        """A message in an HR thread: relayed to the employee when an HR member wrote it."""
        if event_id and not await self.bot.events.claim_event(PLATFORM, event_id):
            return
        relay = await self.run_blocking(self.bot.escalations.reply, PLATFORM, event["channel"], event["thread_ts"],
                                        event.get("user") or "", plain_text(event.get("text") or ""))
        if relay is not None:
            await self._post(relay.reply_to.get("channel") or relay.user_id, relay.reply_to.get("thread_ts"),
                             None, relay_text(relay))

    async def on_resolve(self, ack, body: dict, action: dict) -> None:
        await ack()
        user = (body.get("user") or {}).get("id")
        value = action.get("value") or ""
        if not user or not value.isdigit():
            return
        channel = (body.get("channel") or {}).get("id")
        self.spawn(self.resolve(int(value), user, channel), "resolve")

    async def resolve(self, escalation_id: int, user: str, channel: str | None) -> None:
        result = await self.run_blocking(self.bot.escalations.resolve, escalation_id, user)
        if result.ok and result.hr_conversation and result.hr_thread:
            await self._post(result.hr_conversation, result.hr_thread, None, f"✅ Marked resolved by <@{user}>.")
        else:
            await self.replier.tell(user, channel, None, render.escape(result.message))

    async def _post(self, channel: str, thread_ts: str | None, blocks: list[dict] | None,
                    text: str) -> tuple[str, str] | None:
        try:
            response = await self.replier.client.chat_postMessage(channel=channel, thread_ts=thread_ts, text=text,
                                                                  blocks=blocks, unfurl_links=False)
            return response["channel"], response["ts"]
        except SlackApiError as err:
            log.error("could not post to %s: %s", channel, slack_error(err))
        except (aiohttp.ClientError, asyncio.TimeoutError) as err:
            log.error("could not post to %s: %s", channel, err)
        return None


# --------------------------------------------------------------------------------------------- rendering


def asker_label(post: HrPost) -> str:
    return f"<@{post.asker}>" if post.asker else "anonymous"


def hr_post_text(post: HrPost) -> str:
    return f"Question from {asker_label(post)}: {render.escape(post.question)}"


def hr_post_blocks(post: HrPost) -> list[dict]:
    """The HR channel thread's first message: who asked, the question, the bot's answer and sources, resolve."""
    answer = render.to_mrkdwn(post.answer)
    if len(answer) > ANSWER_CHARS:
        answer = answer[:ANSWER_CHARS].rsplit(" ", 1)[0] + " …"
    blocks = [
        SectionBlock(text=MarkdownTextObject(
            text=f"*Question from {asker_label(post)}* (escalation #{post.escalation_id})\n"
                 f"> {render.escape(post.question)[:2000]}")).to_dict(),
        SectionBlock(text=MarkdownTextObject(text=f"*PolicyBot answered:*\n{answer or ' '}")).to_dict(),
    ]
    if post.sources:
        lines = "\n".join(render.source_line(s) for s in post.sources)[:render.SECTION_LIMIT]
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=lines)]).to_dict())
    blocks.append(ContextBlock(elements=[MarkdownTextObject(
        text="Reply in this thread to answer: your reply goes to the employee and is saved as the right answer."
    )]).to_dict())
    blocks.append(ActionsBlock(block_id=f"resolve:{post.escalation_id}", elements=[
        ButtonElement(text="Mark resolved", action_id=RESOLVE_ACTION, value=str(post.escalation_id), style="primary"),
    ]).to_dict())
    return blocks


def plain_text(mrkdwn: str) -> str:
    """Slack's message text as typed: its three entities back to characters (stored as the correction)."""
    return mrkdwn.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def relay_text(relay: Relay) -> str:
    return (f"<@{relay.answered_by}> from the People team answered your question "
            f"“{render.escape(relay.question[:300])}”:\n\n{render.escape(relay.text)}")

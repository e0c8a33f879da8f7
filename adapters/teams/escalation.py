"""Teams' side of "Ask HR" (bot.escalation holds the policy).

- The answer carries an Adaptive Card with "Ask HR" / "Ask HR anonymously" (Action.Submit): Teams sends the
  card's data back as a message activity whose `value` is {"policybot": "escalate", ...}.
- The question, the bot's answer and its sources are posted to POLICYBOT_HR_CHANNEL (a channel or chat
  conversation id where the bot is installed) as a new message: a proactive message (continue_conversation)
  to that conversation, on the service URL the employee's activity came from.
- A reply in that thread reaches the bot as a message in conversation `HR_CHANNEL;messageid=<root>` (a channel;
  the bot gets it when it is @mentioned, or always with the ChannelMessage.Read.Group RSC permission) or, in a
  chat, as a message whose replyToId is the root. An HR member's reply is relayed to the employee's own
  conversation, again proactively, with the conversation reference stored when they asked.
- "Mark resolved" is an Action.Submit on the HR post.
"""

from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable

from botbuilder.core import CardFactory, TurnContext
from botbuilder.schema import Activity, ActivityTypes, ConversationAccount, ConversationReference

from adapters.teams import render
from bot.core import PolicyBot
from bot.escalation import HrPost, Relay

log = logging.getLogger(__name__)

PLATFORM = "teams"
SUBMIT_KEY = "policybot"
ANSWER_CHARS = 2500

Runner = Callable[..., Awaitable[Any]]


def escalate_card(interaction_id: str) -> Any:
    """The card attached to an answer: two submit buttons carrying the interaction id."""
    return CardFactory.adaptive_card({
        "type": "AdaptiveCard", "$schema": "http://adaptivecards.io/schemas/adaptive-card.json", "version": "1.4",
        "body": [{"type": "TextBlock", "text": "Need a person? The People team can answer this.", "wrap": True,
                  "size": "Small", "isSubtle": True}],
        "actions": [
            {"type": "Action.Submit", "title": "Ask HR",
             "data": {SUBMIT_KEY: "escalate", "interaction_id": interaction_id, "anonymous": False}},
            {"type": "Action.Submit", "title": "Ask HR anonymously",
             "data": {SUBMIT_KEY: "escalate", "interaction_id": interaction_id, "anonymous": True}},
        ],
    })


def hr_post_activity(post: HrPost, asker_name: str | None) -> Activity:
    who = "Anonymous question" if post.asker is None else f"Question from {asker_name or post.asker}"
    answer = render.clip(post.answer, ANSWER_CHARS)
    body: list[dict] = [
        {"type": "TextBlock", "text": f"{who} (escalation #{post.escalation_id})", "weight": "Bolder", "wrap": True},
        {"type": "TextBlock", "text": post.question, "wrap": True},
        {"type": "TextBlock", "text": "PolicyBot answered:", "weight": "Bolder", "wrap": True},
        {"type": "TextBlock", "text": answer, "wrap": True},
    ]
    if post.sources:
        body.append({"type": "TextBlock", "wrap": True, "size": "Small", "isSubtle": True,
                     "text": "\n\n".join(f"[{s.marker}] {s.document}" + (f" › {s.section}" if s.section else "")
                                         for s in post.sources)})
    body.append({"type": "TextBlock", "wrap": True, "size": "Small", "isSubtle": True,
                 "text": "Reply in this thread (mention the bot) to answer: your reply goes to the employee and is "
                         "saved as the right answer."})
    card = CardFactory.adaptive_card({
        "type": "AdaptiveCard", "$schema": "http://adaptivecards.io/schemas/adaptive-card.json", "version": "1.4",
        "body": body,
        "actions": [{"type": "Action.Submit", "title": "Mark resolved",
                     "data": {SUBMIT_KEY: "resolve", "escalation": post.escalation_id}}],
    })
    return Activity(type=ActivityTypes.message, text=f"{who}: {render.clip(post.question, 300)}",
                    attachments=[card])


def relay_activity(relay: Relay, answered_by_name: str | None) -> Activity:
    return render.text_activity(f"**{answered_by_name or relay.answered_by}** from the People team answered your "
                                f"question “{render.clip(relay.question, 300)}”:\n\n{relay.text}")


def hr_thread_of(activity: Activity, hr_channel: str | None) -> str | None:
    """The HR thread an activity is a reply in (its root message id), or None when it is not in the HR channel."""
    conversation = (activity.conversation.id if activity.conversation else "") or ""
    base, _, suffix = conversation.partition(";messageid=")
    if not hr_channel or base != hr_channel.split(";", 1)[0]:
        return None
    return suffix or activity.reply_to_id or None


class TeamsEscalation:
    def __init__(self, core: PolicyBot, run: Runner, app_id: str = "") -> None:
        self.core = core
        self.run = run
        self.app_id = app_id  # MICROSOFT_APP_ID: proactive messages are sent as this bot

    @staticmethod
    def submitted(activity: Activity) -> str | None:
        """"escalate" or "resolve" when the activity is one of our cards' submit buttons."""
        value = activity.value if isinstance(activity.value, dict) else {}
        kind = value.get(SUBMIT_KEY)
        return kind if kind in ("escalate", "resolve") else None

    def hr_thread(self, activity: Activity) -> str | None:
        return hr_thread_of(activity, self.core.escalations.hr_channel)

    async def on_submit(self, turn_context: TurnContext, user_id: str) -> None:
        activity = turn_context.activity
        value = activity.value
        if self.submitted(activity) == "resolve":
            escalation = value.get("escalation")
            if not isinstance(escalation, int):
                return
            result = await self.run(self.core.escalations.resolve, escalation, user_id)
            name = activity.from_property.name if activity.from_property else None
            await turn_context.send_activity(render.text_activity(
                f"✅ Marked resolved by {name or user_id}." if result.ok else result.message))
            return
        interaction_id = value.get("interaction_id")
        if not isinstance(interaction_id, str):
            return
        reference = TurnContext.get_conversation_reference(activity).serialize()
        opened = await self.run(self.core.escalations.open, interaction_id, user_id, PLATFORM,
                                bool(value.get("anonymous")), reference)
        if opened.ok:
            name = activity.from_property.name if activity.from_property else None
            hr_reference = ConversationReference(
                channel_id=activity.channel_id, service_url=activity.service_url, bot=activity.recipient,
                conversation=ConversationAccount(id=opened.hr_channel, is_group=True))
            try:
                root = await self._send(turn_context, hr_reference, hr_post_activity(opened.post, name), new_thread=True)
            except Exception:  # the HR channel is unreachable (bot not installed there, connector down)
                log.exception("could not post escalation %s to the HR channel", opened.post.escalation_id)
                root = None
            if not root:
                await self.run(self.core.escalations.abandon, opened.post.escalation_id)
                await turn_context.send_activity(render.text_activity(
                    "I couldn't reach the People team just now. Please try again in a minute."))
                return
            await self.run(self.core.escalations.thread_posted, opened.post.escalation_id,
                           opened.hr_channel.split(";", 1)[0], root)
        await turn_context.send_activity(render.text_activity(opened.message))

    async def on_hr_reply(self, turn_context: TurnContext, thread: str, user_id: str, text: str) -> None:
        activity = turn_context.activity
        hr_channel = activity.conversation.id.split(";", 1)[0]
        relay = await self.run(self.core.escalations.reply, PLATFORM, hr_channel, thread, user_id, text)
        if relay is None:
            return
        reference = ConversationReference().deserialize(relay.reply_to)
        name = activity.from_property.name if activity.from_property else None
        try:
            await self._send(turn_context, reference, relay_activity(relay, name))
        except Exception:
            log.exception("could not relay the HR answer to escalation %s", relay.escalation_id)
            await turn_context.send_activity(render.text_activity(
                "Saved, but I couldn't deliver it to the employee just now."))
            return
        await turn_context.send_activity(render.text_activity("Sent to the employee and saved as the right answer."))

    async def _send(self, turn_context: TurnContext, reference: ConversationReference, message: Activity,
                    new_thread: bool = False) -> str | None:
        """A proactive message to `reference`'s conversation; the id of the sent activity. `new_thread`: a new
        top-level post (send to conversation), not a reply to the continuation activity botbuilder makes up."""
        sent: list[str | None] = []

        async def send(context: TurnContext) -> None:
            if new_thread:
                connector = context.turn_state[context.adapter.BOT_CONNECTOR_CLIENT_KEY]
                message.conversation, message.from_property = reference.conversation, reference.bot
                message.channel_id, message.service_url = reference.channel_id, reference.service_url
                response = await connector.conversations.send_to_conversation(reference.conversation.id, message)
            else:
                response = await context.send_activity(message)
            sent.append(response.id if response is not None else None)

        await turn_context.adapter.continue_conversation(reference, send, self.app_id or None)
        return sent[0] if sent else None

"""The terminal adapter: `policybot ask` and the interactive `policybot chat`."""

from __future__ import annotations

import getpass
import sys
import uuid
from typing import Callable, TextIO

from bot.contract import Answer
from bot.core import PolicyBot

PLATFORM = "terminal"


def render(answer: Answer) -> str:
    lines = [answer.text]
    if answer.notice:
        lines.insert(0, f"({answer.notice})")
    if answer.sources:
        lines.append("")
        lines.append("Sources:")
        for s in answer.sources:
            where = s.document + (f" › {s.section}" if s.section else "") + (f", p. {s.page}" if s.page else "")
            lines.append(f"  [{s.marker}] {where}" + (f" <{s.link}>" if s.link else f" ({s.source})"))
    return "\n".join(lines)


QUIT = frozenset({"quit", "exit"})
UP = frozenset({"y", "yes", "+", "👍"})
DOWN = frozenset({"n", "no", "-", "👎"})
HELP = ("policybot — ask about our HR policies.\n"
        "After each answer type y (helpful) or n (not helpful), Enter to skip, or simply your next question.\n"
        "quit, exit or Ctrl-D ends the chat.\n")
RATE_PROMPT = "helpful? y / n, Enter to skip, or your next question> "


def chat(bot: PolicyBot, read: Callable[[str], str] = input, out: TextIO = sys.stdout) -> int:
    """A conversation in the terminal: answer, show sources, ask for a rating (y/n) and record it.

    Whatever is typed at the rating prompt that is not a rating is the next question: people often just keep
    asking, and dropping that question silently would look like the bot ignored them."""
    user = getpass.getuser()
    conversation = f"terminal-{uuid.uuid4().hex[:8]}"
    print(HELP, file=out)
    question: str | None = None  # a question typed at the rating prompt, answered next
    while True:
        if question is None:
            question = _read(read, "you> ", out)
            if question is None:
                return 0
        if not question:  # a stray Enter asks nothing and ends nothing
            question = None
            continue
        if question.lower() in QUIT:
            return 0
        answer = bot.answer(question, user, PLATFORM, conversation)
        question = None
        print("\n" + render(answer) + "\n", file=out)
        if not answer.rateable:
            continue
        reply = _read(read, RATE_PROMPT, out)
        if reply is None:
            return 0
        vote = reply.lower()
        if vote in UP:
            print(bot.feedback(answer.interaction_id, user, PLATFORM, 1).message + "\n", file=out)
        elif vote in DOWN:
            correction = _read(read, "what should it have said? (optional)> ", out)
            result = bot.feedback(answer.interaction_id, user, PLATFORM, -1, correction=correction or None)
            print(result.message + "\n", file=out)
            if correction is None:  # Ctrl-D: the vote is kept, then the chat ends
                return 0
        elif vote:
            question = reply  # not a rating: the next question (quit/exit are handled there too)


def _read(read: Callable[[str], str], prompt: str, out: TextIO) -> str | None:
    """One line, stripped; None at Ctrl-D or Ctrl-C, which end the chat."""
    try:
        return read(prompt).strip()
    except (EOFError, KeyboardInterrupt):
        print(file=out)
        return None

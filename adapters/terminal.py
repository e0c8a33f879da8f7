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


def chat(bot: PolicyBot, read: Callable[[str], str] = input, out: TextIO = sys.stdout) -> int:
    """A conversation in the terminal: answer, show sources, ask for 👍/👎 and record it."""
    user = getpass.getuser()
    conversation = f"terminal-{uuid.uuid4().hex[:8]}"
    print("policybot — ask about our HR policies. Empty line or Ctrl-D to quit.\n", file=out)
    while True:
        try:
            question = read("you> ").strip()
        except EOFError:
            print(file=out)
            return 0
        if not question or question.lower() in ("quit", "exit", ":q"):
            return 0
        answer = bot.answer(question, user, PLATFORM, conversation)
        print("\n" + render(answer) + "\n", file=out)
        if answer.kind in ("smalltalk", "error"):
            continue
        try:
            vote = read("helpful? [y]es / [n]o / Enter to skip> ").strip().lower()
        except EOFError:
            return 0
        if vote in ("y", "yes", "+", "👍"):
            print(bot.feedback(answer.interaction_id, user, PLATFORM, 1).message + "\n", file=out)
        elif vote in ("n", "no", "-", "👎"):
            correction = read("what should it have said? (optional)> ").strip()
            print(bot.feedback(answer.interaction_id, user, PLATFORM, -1, correction=correction or None).message + "\n",
                  file=out)

"""The terminal adapter: `policybot ask` and the interactive `policybot chat`."""

from __future__ import annotations

import getpass
import sys
import uuid
from typing import Callable, TextIO

from bot.contract import Answer
from bot.core import PolicyBot
from bot.streaming import replaces, unsent

PLATFORM = "terminal"


def render(answer: Answer, with_text: bool = True) -> str:
    """The answer, its notice and its sources; without the text when it was already printed as it streamed."""
    lines = [answer.text] if with_text else []
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
        answer = _streamed_answer(bot, question, user, conversation, out)
        question = None
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


def _streamed_answer(bot: PolicyBot, question: str, user: str, conversation: str, out: TextIO) -> Answer:
    """Ask, printing an LLM answer as it is written; then the rest (or, when the final answer is not what was
    written, e.g. the citation check replaced it, the final answer in full after a note)."""
    written: list[str] = []

    def on_text(delta: str) -> None:
        if not written:
            out.write("\n")
        written.append(delta)
        out.write(delta)
        out.flush()

    answer = bot.answer(question, user, PLATFORM, conversation, on_text=on_text)
    shown = "".join(written)
    if not shown:
        print("\n" + render(answer) + "\n", file=out)
    elif replaces(shown, answer.text):  # a terminal can't rewrite what it printed: the final answer follows
        note = ("(I could not check that answer against the sources; here is what they say.)" if answer.kind != "llm"
                else "(With its sources numbered:)")
        print(f"\n\n{note}\n{render(answer)}\n", file=out)
    else:
        rest = render(answer, with_text=False)
        print(unsent(shown, answer.text) + ("\n\n" + rest if rest else "") + "\n", file=out)
    return answer


def _read(read: Callable[[str], str], prompt: str, out: TextIO) -> str | None:
    """One line, stripped; None at Ctrl-D or Ctrl-C, which end the chat."""
    try:
        return read(prompt).strip()
    except (EOFError, KeyboardInterrupt):
        print(file=out)
        return None

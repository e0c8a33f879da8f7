"""Answer commands: `ask` and the interactive `chat` (what `make run` opens)."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from importlib import resources
from pathlib import Path

from adapters import terminal
from adapters.cli import UserFacingError
from bot.config import Settings
from bot.core import PolicyBot
from bot.runtime import Runtime, build_runtime
from knowledge.audiences import AudienceError, parse_audiences
from knowledge.ingest import discover, ingest_file, list_documents


def register(commands) -> None:
    p = commands.add("ask", ask, "answer one question")
    p.add_argument("question")
    p.add_argument("--json", action="store_true")
    p.add_argument("--user", default=None, help="who asks (default: your login name)")
    p.add_argument("--conversation", default=None, help="conversation id, to ask follow-ups across calls")
    p.add_argument("--audience", metavar="NAME[,NAME]", default=None,
                   help="ask as a member of these document audiences (default: everyone only)")
    p = commands.add("chat", chat, "interactive chat in the terminal (loads the sample handbook if empty)")
    p.add_argument("--no-sample", action="store_true", help="do not load the sample handbook into an empty base")


def sample_handbook_dir() -> Path:
    return Path(str(resources.files("knowledge").joinpath("sample_handbook")))


def load_sample_if_empty(runtime: Runtime) -> int:
    if list_documents(runtime.sessions):
        return 0
    files = discover([sample_handbook_dir()])
    print(f"The knowledge base is empty: loading the sample handbook ({len(files)} documents)…", file=sys.stderr)
    for number, (path, source) in enumerate(files, 1):
        result = ingest_file(runtime.sessions, runtime.embedder, path, source=source)
        print(f"  [{number}/{len(files)}] {result.title}: {result.chunks} passages", file=sys.stderr)
    return len(files)


def ask(settings: Settings, args: argparse.Namespace) -> int:
    try:
        audiences = parse_audiences(args.audience) if args.audience else ()
    except AudienceError as err:
        raise UserFacingError(str(err)) from err
    bot = PolicyBot(build_runtime(settings))
    # The terminal shows the answer to its asker only; the audiences are the ones stated, never looked up.
    answer = bot.answer(args.question, args.user or getpass.getuser(), "terminal", args.conversation,
                        private=True, audiences=audiences)
    if args.json:
        print(json.dumps(answer.as_json(), indent=2, ensure_ascii=False))
    else:
        print(terminal.render(answer))
    return 1 if answer.kind == "error" else 0  # the apology is shown, but a script should know it failed


def chat(settings: Settings, args: argparse.Namespace) -> int:
    runtime = build_runtime(settings)
    if not args.no_sample:
        load_sample_if_empty(runtime)
    return terminal.chat(PolicyBot(runtime))

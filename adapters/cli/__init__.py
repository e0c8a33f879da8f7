"""`policybot` command line. Each command group lives in its own module and registers itself here."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable

from bot.config import load_settings
from knowledge.embeddings import EmbeddingMismatch

log = logging.getLogger("policybot")


class Commands:
    """The argparse tree, with named groups (`db`, `docs`, `eval`, ...) that several modules extend."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.top = parser.add_subparsers(dest="command", metavar="COMMAND")
        self._groups: dict[str, argparse._SubParsersAction] = {}

    def add(self, name: str, handler: Callable, help: str, group: str | None = None) -> argparse.ArgumentParser:
        parent = self.group(group) if group else self.top
        parser = parent.add_parser(name, help=help, description=help)
        parser.set_defaults(handler=handler)
        return parser

    def group(self, name: str, help: str = "") -> argparse._SubParsersAction:
        if name not in self._groups:
            parser = self.top.add_parser(name, help=help or f"{name} commands")
            parser.set_defaults(handler=lambda settings, args, p=parser: p.print_help() or 2)
            self._groups[name] = parser.add_subparsers(dest=f"{name}_command", metavar="COMMAND")
        return self._groups[name]


def build_parser() -> argparse.ArgumentParser:
    from adapters.cli import answer_commands, knowledge_commands

    parser = argparse.ArgumentParser(prog="policybot", description="HR and policy assistant for Slack and Teams")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = Commands(parser)
    for module in (knowledge_commands, answer_commands):
        module.register(commands)
    for optional in ("finetune_commands", "serve_command"):
        try:
            module = __import__(f"adapters.cli.{optional}", fromlist=["register"])
        except ModuleNotFoundError:
            continue
        module.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    settings = load_settings()
    # Logs go to stderr so that --json output on stdout stays machine-readable.
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else getattr(logging, settings.log_level.upper(), logging.INFO),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(settings, args) or 0)
    except KeyboardInterrupt:
        return 130
    except (UserFacingError, EmbeddingMismatch) as err:
        print(f"policybot: {err}", file=sys.stderr)
        return 1


class UserFacingError(Exception):
    """An error whose message tells the user what to do; printed without a traceback."""


def run_main() -> None:  # pragma: no cover - console entry
    sys.exit(main())

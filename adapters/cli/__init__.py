"""`policybot` command line. Each command group lives in its own module and registers itself here."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import warnings
from pathlib import Path
from typing import Callable

from adapters.cli import console
from adapters.settings import Settings, load_settings
from bot.audiences import AudienceConfigError
from knowledge.embeddings import EmbeddingMismatch

log = logging.getLogger("policybot")
_kept_to_exit: list[contextlib.ExitStack] = []


class Commands:
    """The argparse tree, with named groups (`db`, `docs`, `eval`, ...) that several modules extend."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.top = parser.add_subparsers(dest="command", metavar="COMMAND")
        self._groups: dict[str, argparse._SubParsersAction] = {}

    def add(self, name: str, handler: Callable, help: str, group: str | None = None) -> argparse.ArgumentParser:
        parent = self.group(group) if group else self.top
        parser = parent.add_parser(name, help=help, description=help)
        parser.set_defaults(handler=handler)
        _add_verbose(parser, default=argparse.SUPPRESS)  # `policybot ask -v ...` works too
        return parser

    def group(self, name: str, help: str = "") -> argparse._SubParsersAction:
        if name not in self._groups:
            parser = self.top.add_parser(name, help=help or f"{name} commands")
            _add_verbose(parser, default=argparse.SUPPRESS)
            parser.set_defaults(handler=lambda settings, args, p=parser: p.print_help() or 2)
            self._groups[name] = parser.add_subparsers(dest=f"{name}_command", metavar="COMMAND")
        return self._groups[name]


def _add_verbose(parser: argparse.ArgumentParser, default: object) -> None:
    # SUPPRESS on subcommands: an absent flag there must not reset one given before the subcommand.
    parser.add_argument("-v", "--verbose", action="store_true", default=default,
                        help="debug logs, embedded PostgreSQL/Redis output and library warnings on stderr "
                             "(also POLICYBOT_LOG_LEVEL=DEBUG); by default they go to POLICYBOT_HOME/policybot.log")


def build_parser() -> argparse.ArgumentParser:
    # Imported here, not at the top: warnings raised while they import are replayed once logging is set up (main).
    from adapters.cli import answer_commands, finetune_commands, hr_commands, knowledge_commands, serve_command

    parser = argparse.ArgumentParser(prog="policybot", description="HR and policy assistant for Slack and Teams")
    _add_verbose(parser, default=False)
    commands = Commands(parser)
    for module in (knowledge_commands, answer_commands, finetune_commands, hr_commands, serve_command):
        module.register(commands)
    return parser


def main(argv: list[str] | None = None, until_exit: bool = False) -> int:
    """Run one command. In-process callers (tests) get logging and stderr back as they were on return."""
    # Warnings raised while the command modules import are replayed once logging knows where they belong.
    with warnings.catch_warnings(record=True) as early:
        parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        settings = load_settings()
    except Exception as err:  # a malformed environment variable: say which, not a traceback
        print(f"policybot: {console.describe(err)}", file=sys.stderr)
        return 2
    verbose = console.is_verbose(args.verbose, settings.log_level)
    if args.command == "serve":  # a server keeps its INFO logs (serve switches them to JSON itself)
        logging.basicConfig(level=logging.DEBUG if verbose else _level(settings.log_level), stream=sys.stderr,
                            format=console.DEBUG_FORMAT)
        _replay(early)
        return _run(args, settings, one_line_errors=False, log_file=None)
    with contextlib.ExitStack() as stack:
        log_file = stack.enter_context(console.console(verbose, settings.log_level, settings.home))
        _replay(early)
        code = _run(args, settings, one_line_errors=not verbose, log_file=log_file)
        if until_exit:
            # The console entry keeps this set-up to the end: the embedded services stop in atexit handlers,
            # and their logs and child output belong in the same place as the rest.
            # (Held in a global: a dropped generator-based context manager would be closed, i.e. undone.)
            _kept_to_exit.append(stack.pop_all())
        return code


def _run(args: argparse.Namespace, settings: Settings, one_line_errors: bool, log_file: Path | None) -> int:
    try:
        return int(args.handler(settings, args) or 0)
    except KeyboardInterrupt:
        return 130
    except (UserFacingError, EmbeddingMismatch, AudienceConfigError) as err:
        print(f"policybot: {err}", file=sys.stderr)
        return 1
    except Exception as err:
        if not one_line_errors:
            raise  # -v wants the traceback; serve's own logging reports it
        # One line on the terminal; the traceback goes to the log file (the stderr handler drops it).
        where = f" (details in {log_file})" if log_file else " (run with -v for details)"
        log.error("%s%s", console.describe(err), where, exc_info=True)
        return 1


def _level(name: str) -> int:
    return getattr(logging, name.strip().upper(), logging.INFO)


def _replay(caught: list[warnings.WarningMessage]) -> None:
    for w in caught:
        warnings.showwarning(w.message, w.category, w.filename, w.lineno)


class UserFacingError(Exception):
    """An error whose message tells the user what to do; printed without a traceback."""


def run_main() -> None:  # pragma: no cover - console entry
    sys.exit(main(until_exit=True))

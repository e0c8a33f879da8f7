"""HR commands: `gaps` (what people asked and could not find) and `console-link` (sign in to the admin console)."""

from __future__ import annotations

import argparse
import json

from bot.config import Settings
from bot.runtime import build_runtime


def register(commands) -> None:
    p = commands.add("gaps", gaps, "questions the bot refused, got 👎 or took to HR, grouped by meaning")
    p.add_argument("--since", default="30d", help="how far back: 30d (default), 12h, 2w")
    p.add_argument("--similarity", type=float, default=None,
                   help="how alike questions in a group must be, 0-1 (default 0.5; higher: smaller groups)")
    p.add_argument("--json", action="store_true")

    p = commands.add("console-link", console_link, "print a one-time sign-in link to the admin console (10 minutes)")
    p.add_argument("user_id", metavar="USER_ID", help="an admin's Slack user id or Teams AAD object id")


def gaps(settings: Settings, args: argparse.Namespace) -> int:
    from adapters.cli import UserFacingError
    from bot.gaps import DEFAULT_SIMILARITY, find_gaps, parse_since

    try:
        since = parse_since(args.since)
    except ValueError as err:
        raise UserFacingError(str(err)) from err
    similarity = DEFAULT_SIMILARITY if args.similarity is None else args.similarity
    if not 0 < similarity <= 1:
        raise UserFacingError("--similarity is between 0 and 1, e.g. 0.5")
    runtime = build_runtime(settings)
    try:
        found = find_gaps(runtime.sessions, runtime.embedder, since, similarity)
    finally:
        runtime.close()
    if args.json:
        print(json.dumps({"since": args.since, "gaps": [g.as_json() for g in found]}, indent=2, ensure_ascii=False))
        return 0
    if not found:
        print(f"No refused, 👎 or escalated questions in the last {args.since}.")
        return 0
    print(f"{sum(g.count for g in found)} questions in {len(found)} groups (last {args.since}):")
    for number, gap in enumerate(found, 1):
        why = ", ".join(f"{n} {reason.replace('_', ' ')}" for reason, n in sorted(gap.reasons.items()))
        print(f"\n{number}. {gap.count} question{'s' if gap.count != 1 else ''} ({why})")
        for example in gap.examples:
            print(f"   “{example}”")
        if gap.nearest_document:
            where = f"{gap.nearest_document}" + (f" › {gap.nearest_section}" if gap.nearest_section else "")
            print(f"   nearest document: {where} (similarity {gap.nearest_similarity:.2f})")
        else:
            print("   nearest document: none (no documents yet)")
    return 0


def console_link(settings: Settings, args: argparse.Namespace) -> int:
    from adapters.admin.links import console_url
    from adapters.cli import UserFacingError
    from bot.console_auth import ConsoleAuth
    from bot import embedded_services

    auth = ConsoleAuth(embedded_services.redis_client(settings), settings)
    token = auth.issue_link(args.user_id)
    if token is None:
        raise UserFacingError(f"{args.user_id} is not an admin: add them to POLICYBOT_ADMINS first")
    print(console_url(settings, token))
    return 0

"""python -m adapters.teams.manifest --app-id GUID [--company NAME] [--website URL] [-o policybot-teams.zip]"""

from __future__ import annotations

import argparse
import sys

from adapters.teams.manifest import build_package


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adapters.teams.manifest",
                                     description="Build the Teams app package (manifest.json + icons) for PolicyBot.")
    parser.add_argument("--app-id", required=True, help="the bot's Entra app (client) id: MICROSOFT_APP_ID")
    parser.add_argument("--company", default="PolicyBot", help="developer name shown in Teams (max 32 characters)")
    parser.add_argument("--website", default="https://www.example.com/",
                        help="https URL of your HR or intranet page (also used as privacy and terms URL)")
    parser.add_argument("-o", "--out", default="policybot-teams.zip", help="where to write the zip")
    args = parser.parse_args(argv)
    try:
        out = build_package({"MICROSOFT_APP_ID": args.app_id.strip(), "COMPANY_NAME": args.company,
                             "COMPANY_WEBSITE": args.website}, args.out)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {out}; upload it in Teams: Apps → Manage your apps → Upload an app")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The Teams app package: manifest.json (a template with ${{VAR}} placeholders) and the two icons.

    python -m adapters.teams.manifest --app-id <MICROSOFT_APP_ID> --company "Contoso HR" \
        --website https://intranet.contoso.com/hr -o policybot-teams.zip

writes the zip to upload in Teams (Apps → Manage your apps → Upload an app) or in the Teams admin center.
"""

from __future__ import annotations

import json
import re
import uuid
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
TEMPLATE = HERE / "manifest.json"
ICONS = ("color.png", "outline.png")
_PLACEHOLDER = re.compile(r"\$\{\{([A-Z0-9_]+)\}\}")


def placeholders(text: str | None = None) -> set[str]:
    return set(_PLACEHOLDER.findall(TEMPLATE.read_text(encoding="utf-8") if text is None else text))


def render_manifest(values: dict[str, str]) -> dict:
    """The manifest with every placeholder filled; ValueError names any that is missing or invalid."""
    app_id = values.get("MICROSOFT_APP_ID", "")
    try:
        uuid.UUID(app_id)
    except ValueError:
        raise ValueError(f"MICROSOFT_APP_ID must be the bot's Entra app (client) id, a GUID, not {app_id!r}") from None
    website = values.get("COMPANY_WEBSITE", "")
    if not website.startswith("https://"):
        raise ValueError(f"COMPANY_WEBSITE must be an https:// URL, not {website!r}")
    if len(values.get("COMPANY_NAME", "")) > 32:
        raise ValueError("COMPANY_NAME can be at most 32 characters (Teams' limit)")
    template = TEMPLATE.read_text(encoding="utf-8")
    missing = placeholders(template) - values.keys()
    if missing:
        raise ValueError(f"no value for {', '.join(sorted(missing))}")
    # Values are JSON-escaped so a quote in a company name can't break the manifest.
    filled = _PLACEHOLDER.sub(lambda m: json.dumps(values[m.group(1)])[1:-1], template)
    return json.loads(filled)


def build_package(values: dict[str, str], out: Path) -> Path:
    """manifest.json (filled in) plus the icons, zipped at the root as Teams expects."""
    manifest = render_manifest(values)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as package:
        package.writestr("manifest.json", json.dumps(manifest, indent=2, ensure_ascii=False))
        for icon in ICONS:
            package.write(HERE / icon, icon)
    return out

"""The platforms `policybot serve` mounts on its app, in order (adapters.server.Mount): Slack (nothing when it is
not configured), then Teams (always), then the admin console (/admin, always; adapters.admin). Listed here, not discovered, so the server imports no platform module."""

from __future__ import annotations

from adapters.admin import routes as admin_routes
from adapters.server import Mount
from adapters.slack import http as slack_http
from adapters.teams import http as teams_http

PLATFORMS: tuple[Mount, ...] = (slack_http.mount, teams_http.mount, admin_routes.mount)

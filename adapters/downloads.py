"""Fetching an uploaded file by URL, for every platform: which hosts may serve it, and redirects.

A platform hands the bot a link (Slack's url_private_download, Teams' pre-authenticated OneDrive downloadUrl) and
the server fetches it, so a link to anywhere else would make the bot fetch from inside our network, or send
the Slack bot token to someone else. The rules, in one place for both adapters:

- the host of the first URL and of every redirect must be in POLICYBOT_DOWNLOAD_HOSTS (`*.example.com` = any
  subdomain of example.com);
- https only; plain http only where the adapter allows it (local development: Teams anonymous mode, a Slack
  API URL that is itself http);
- at most MAX_REDIRECTS redirects, followed here (aiohttp's own following checks nothing);
- credentials (the Slack bot token) go only to the hosts the adapter says, and are dropped for good at the
  first redirect that leaves them.

A refused link raises DownloadRefused, whose message names the host and says what to do.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import aiohttp

log = logging.getLogger(__name__)

MAX_REDIRECTS = 3
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


class DownloadRefused(Exception):
    """The link (or a redirect) is not one the bot downloads from; str() is a sentence for the uploader."""

    def __init__(self, reason: str, host: str | None = None) -> None:
        self.reason = reason
        self.host = host
        super().__init__(reason)


@dataclass(frozen=True)
class DownloadRules:
    hosts: tuple[str, ...]
    allow_http: bool = False
    max_redirects: int = MAX_REDIRECTS

    @classmethod
    def from_hosts(cls, hosts: Iterable[str], *, allow_http: bool = False) -> "DownloadRules":
        return cls(tuple(h.lower() for h in hosts), allow_http)

    def check(self, url: str) -> str:
        """The URL's host when the bot may download from it; DownloadRefused otherwise."""
        parts = urlsplit(url)
        scheme, host = parts.scheme.lower(), (parts.hostname or "").lower().rstrip(".")
        if not host or scheme not in ("https", "http"):
            raise DownloadRefused("the download link is not a web address")
        if scheme == "http" and not self.allow_http:
            raise DownloadRefused(f"the download link to {host} is not encrypted (http), so I did not follow it",
                                  host)
        if not host_allowed(host, self.hosts):
            raise DownloadRefused(f"the file is served from {host}, which is not on the list of hosts I download "
                                  f"from; ask the operator to add it to POLICYBOT_DOWNLOAD_HOSTS if it is "
                                  f"trusted", host)
        return host


def host_allowed(host: str, patterns: Iterable[str]) -> bool:
    """Exact names, or `*.domain` for any subdomain of domain (not domain itself)."""
    host = host.lower().rstrip(".")
    for pattern in patterns:
        if pattern.startswith("*."):
            if host.endswith(pattern[1:]) and len(host) > len(pattern) - 1:
                return True
        elif host == pattern:
            return True
    return False


@asynccontextmanager
async def get(session: aiohttp.ClientSession, url: str, rules: DownloadRules, *,
              headers: Mapping[str, str] | None = None, credentials: Mapping[str, str] | None = None,
              send_credentials: Callable[[str], bool] = lambda url: False) -> AsyncIterator[aiohttp.ClientResponse]:
    """GET url under `rules`, following redirects ourselves; yields the final (non-redirect) response.

    `credentials` (e.g. Authorization) are sent only while `send_credentials(url)` holds: once a redirect leads
    elsewhere they are not sent again, even if a later redirect comes back (that hop was chosen by another host).
    """
    trusted = bool(credentials)
    for hop in range(rules.max_redirects + 1):
        try:
            rules.check(url)
        except DownloadRefused as refused:  # the host only: download URLs can carry pre-authenticated tokens
            log.warning("refused a download%s: %s", f" after {hop} redirect(s)" if hop else "", refused.reason)
            raise
        trusted = trusted and send_credentials(url)
        sent = {**(headers or {}), **(credentials if trusted and credentials else {})}
        async with session.get(url, headers=sent, allow_redirects=False) as response:
            if response.status not in _REDIRECTS:
                yield response
                return
            location = response.headers.get("Location")
            if not location:
                raise DownloadRefused(f"the download link answered a redirect ({response.status}) to nowhere")
            url = urljoin(url, location)
    log.warning("refused a download: more than %d redirects", rules.max_redirects)
    raise DownloadRefused(f"the download link redirected more than {rules.max_redirects} times, so I stopped")

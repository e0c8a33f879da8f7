"""Files sent to the bot in a personal chat: find them in the activity and download them safely.

Teams uploads a file the user sends to a bot into the user's OneDrive and gives the bot an attachment

    {"contentType": "application/vnd.microsoft.teams.file.download.info", "name": "leave.pdf",
     "contentUrl": "https://contoso.sharepoint.com/...", "content": {"downloadUrl": "https://...", "uniqueId": "...",
     "fileType": "pdf"}}

whose `downloadUrl` is pre-authenticated and short-lived: a plain GET, no bot token (sending the bot's token to
SharePoint would leak it), from a host on POLICYBOT_DOWNLOAD_HOSTS, redirects included (adapters.downloads).
The manifest must say `"supportsFiles": true` for Teams to allow this.

Every failure becomes a DownloadError whose message names the file and says what to do; nothing is ingested.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import PurePosixPath, PureWindowsPath
from urllib.parse import urlsplit

import aiohttp
from botbuilder.schema import Activity

from adapters import downloads

FILE_DOWNLOAD_INFO = "application/vnd.microsoft.teams.file.download.info"
DEFAULT_TIMEOUT_S = 60.0
_CHUNK = 64 * 1024
_HTML_TYPES = {".html", ".htm"}


@dataclass(frozen=True)
class FileRef:
    filename: str
    download_url: str
    file_type: str | None = None


class DownloadError(Exception):
    """A file could not be fetched; str() is the message for the uploader."""

    def __init__(self, filename: str, reason: str) -> None:
        self.filename = filename
        self.reason = reason
        super().__init__(f"Couldn't get {filename}: {reason}. Nothing was changed.")


def file_attachments(activity: Activity) -> list[FileRef]:
    """The files in a message (Teams also adds a text/html copy of the message text; that is not a file)."""
    files = []
    for attachment in activity.attachments or []:
        if (attachment.content_type or "").lower() != FILE_DOWNLOAD_INFO:
            continue
        content = attachment.content if isinstance(attachment.content, dict) else {}
        file_type = str(content.get("fileType") or "").strip(". ").lower() or None
        files.append(FileRef(_safe_name(attachment.name, file_type), str(content.get("downloadUrl") or ""), file_type))
    return files


async def download(file: FileRef, *, max_bytes: int, hosts: Iterable[str], timeout_s: float = DEFAULT_TIMEOUT_S,
                   allow_http: bool = False) -> bytes:
    """The file's bytes, or DownloadError (a host not in `hosts`, unreachable, not found, too big, a web page
    instead of the file). The link and every redirect are checked by adapters.downloads; no credentials are sent."""
    url = file.download_url
    if urlsplit(url).scheme.lower() not in ("https", "http"):
        raise DownloadError(file.filename, "Teams sent no usable download link; send the file again")
    rules = downloads.DownloadRules.from_hosts(hosts, allow_http=allow_http)
    timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=min(10.0, timeout_s))
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with downloads.get(session, url, rules, headers={"Accept": "*/*"}) as response:
                _check_status(file, response.status)
                if response.content_length is not None and response.content_length > max_bytes:
                    raise DownloadError(file.filename, _too_big(response.content_length, max_bytes))
                content_type = response.content_type or ""
                data = bytearray()
                async for chunk in response.content.iter_chunked(_CHUNK):
                    data.extend(chunk)
                    if len(data) > max_bytes:
                        raise DownloadError(file.filename, _too_big(None, max_bytes))
    except DownloadError:
        raise
    except downloads.DownloadRefused as refused:
        raise DownloadError(file.filename, refused.reason) from refused
    except (asyncio.TimeoutError, TimeoutError):
        raise DownloadError(file.filename, f"the download took longer than {timeout_s:.0f} seconds; try again")
    except aiohttp.ClientError as err:
        raise DownloadError(file.filename, f"the download link could not be reached ({type(err).__name__}); "
                                           "try again, or send the file again") from err
    if not data:
        raise DownloadError(file.filename, "the downloaded file is empty")
    if _suffix(file.filename) not in _HTML_TYPES and (content_type == "text/html" or _looks_like_html(bytes(data))):
        raise DownloadError(file.filename, "the download link returned a web page instead of the file (often an "
                                           "expired link or a sign-in page); send the file again")
    return bytes(data)


def _check_status(file: FileRef, status: int) -> None:
    if status < 400:
        return
    if status in (404, 410):
        raise DownloadError(file.filename, f"the download link was not found (HTTP {status}); it may have expired, "
                                           "so send the file again")
    if status in (401, 403):
        raise DownloadError(file.filename, f"access to the file was denied (HTTP {status}); send the file again")
    raise DownloadError(file.filename, f"the download failed (HTTP {status}); try again later")


def _too_big(size: int | None, max_bytes: int) -> str:
    if size is None:
        return f"it is over the {_size(max_bytes)} upload limit; split it or compress its images"
    return f"it is {_size(size)}, over the {_size(max_bytes)} upload limit; split it or compress its images"


def _size(n: int) -> str:
    if n >= 10 * 1048576:
        return f"{n / 1048576:.0f} MB"
    if n >= 1048576:
        return f"{n / 1048576:.1f} MB"
    return f"{max(n / 1024, 0.1):.1f} KB"


def _looks_like_html(data: bytes) -> bool:
    head = data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return head.startswith((b"<!doctype html", b"<html", b"<head", b"<body"))


def _safe_name(name: str | None, file_type: str | None) -> str:
    """A plain file name (no folders), with the file type as its extension when it has none."""
    base = PureWindowsPath(PurePosixPath(str(name or "").strip()).name).name.strip() or "upload"
    if file_type and not _suffix(base):
        base = f"{base}.{file_type}"
    return base[:200]


def _suffix(filename: str) -> str:
    return PurePosixPath(filename).suffix.lower()


_FOR = re.compile(r"^(?P<title>.*?)\s*\bfor\s+(?P<audiences>[\w.,\s-]+)$", re.I | re.S)


def upload_text(argument: str, known_audiences: Collection[str]) -> tuple[str | None, str | None]:
    """`upload TITLE for NAME[,NAME]` -> (title, audiences). The `for …` part counts only when every name in it
    is a configured audience (or `everyone`), so a title such as "Allowance for travel" stays whole."""
    argument = argument.strip()
    match = _FOR.match(argument)
    if match:
        names = [n.strip().lower() for n in match.group("audiences").split(",") if n.strip()]
        if names and all(n in known_audiences or n == "everyone" for n in names):
            return match.group("title").strip() or None, ",".join(names)
    return argument or None, None

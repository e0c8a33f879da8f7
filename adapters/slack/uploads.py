"""Admin uploads from Slack: the upload modal, reading its submission, and fetching the file from Slack.

Slack's file_input hands us file objects (or only their ids) in the view_submission; the bytes must be
fetched from `url_private_download` with the bot token (only ever sent to Slack's hosts; the link and its redirects
must be on POLICYBOT_DOWNLOAD_HOSTS, see adapters.downloads). When that fails because of auth (a missing
files:read scope, a revoked token), Slack does not answer 401: it answers 200 with its HTML sign-in page.
`download()` detects that, so a login page is never ingested as a policy document.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import urlsplit

import aiohttp
from slack_sdk.models.blocks import (
    ContextBlock,
    InputBlock,
    MarkdownTextObject,
    PlainTextInputElement,
    PlainTextObject,
    UrlInputElement,
)
from slack_sdk.models.blocks.block_elements import FileInputElement  # not re-exported by slack_sdk.models.blocks
from slack_sdk.models.views import View

from adapters import downloads

UPLOAD_MODAL = "policybot_upload"
FILETYPES = ["pdf", "docx", "md", "txt", "html"]
ACCEPTED_EXTENSIONS = {".pdf", ".docx", ".md", ".markdown", ".txt", ".html", ".htm"}
SLACK_FILE_LIMIT = 10 * 1024 * 1024  # Slack's own limit for file_input
HTML_EXTENSIONS = {".html", ".htm"}
DOWNLOAD_TIMEOUT_S = 60


class UploadProblem(Exception):
    """A clear, one-line message for the admin; nothing was ingested."""


@dataclass(frozen=True)
class SlackFile:
    id: str | None
    name: str
    size: int | None
    url: str | None
    mimetype: str | None = None

    @classmethod
    def from_payload(cls, data: dict) -> "SlackFile":
        size = data.get("size")
        return cls(
            id=data.get("id"),
            name=(data.get("name") or data.get("title") or "").strip(),
            size=int(size) if isinstance(size, (int, float, str)) and str(size).isdigit() else None,
            url=data.get("url_private_download") or data.get("url_private"),
            mimetype=data.get("mimetype"),
        )

    @property
    def extension(self) -> str:
        return PurePosixPath(self.name).suffix.lower()


@dataclass(frozen=True)
class UploadRequest:
    file: SlackFile | None
    title: str | None
    link: str | None
    audiences: str | None = None  # who may read it, as typed (`leadership, payroll-de`); None: everyone / kept


def upload_modal(max_bytes: int) -> dict:
    limit_mb = max_bytes / (1024 * 1024)
    return View(
        type="modal",
        callback_id=UPLOAD_MODAL,
        private_metadata=json.dumps({"v": 1}),
        title=PlainTextObject(text="Upload a policy"),
        submit=PlainTextObject(text="Upload"),
        close=PlainTextObject(text="Cancel"),
        blocks=[
            InputBlock(block_id="file", label=PlainTextObject(text="Document"),
                       element=FileInputElement(action_id="file", filetypes=FILETYPES, max_files=1)),
            InputBlock(block_id="title", optional=True, label=PlainTextObject(text="Title"),
                       hint=PlainTextObject(text="Leave empty to use the document's own title. A document with the "
                                                 "same title or file name is replaced."),
                       element=PlainTextInputElement(action_id="title", max_length=200)),
            InputBlock(block_id="link", optional=True, label=PlainTextObject(text="Link shown in citations"),
                       hint=PlainTextObject(
                           text="Where employees can read the official version, e.g. the intranet page."),
                       element=UrlInputElement(action_id="link")),
            InputBlock(block_id="audiences", optional=True, label=PlainTextObject(text="Who may read it"),
                       hint=PlainTextObject(
                           text="Audiences, separated by commas (e.g. leadership, payroll-de). Leave empty for "
                                "everyone, or to keep a replaced document's."),
                       element=PlainTextInputElement(action_id="audiences", max_length=200)),
            ContextBlock(elements=[MarkdownTextObject(
                text=f"PDF, Word (.docx), Markdown, text or HTML, up to {limit_mb:.0f} MB.")]),
        ],
    ).to_dict()


def parse_upload_submission(view: dict) -> UploadRequest:
    values = (view.get("state") or {}).get("values") or {}
    files = ((values.get("file") or {}).get("file") or {}).get("files") or []
    title = ((values.get("title") or {}).get("title") or {}).get("value")
    link = ((values.get("link") or {}).get("link") or {}).get("value")
    audiences = ((values.get("audiences") or {}).get("audiences") or {}).get("value")
    return UploadRequest(
        file=SlackFile.from_payload(files[0]) if files and isinstance(files[0], dict) else None,
        title=(title or "").strip() or None,
        link=(link or "").strip() or None,
        audiences=(audiences or "").strip() or None,
    )


def check_file(file: SlackFile, max_bytes: int) -> str | None:
    """What is wrong with the file as Slack described it (before downloading), or None."""
    if file.name and file.extension not in ACCEPTED_EXTENSIONS:
        shown = f"'{file.extension}'" if file.extension else "(no extension)"
        return (f"{file.name} has an unsupported file type {shown}. "
                "Upload a PDF, Word (.docx), Markdown, text or HTML file.")
    if file.size is not None and file.size > max_bytes:
        return _too_big(file.name or "The file", file.size, max_bytes)
    return None


def trusted_file_url(url: str, api_url: str) -> bool:
    """Only Slack's own hosts (or the configured API host, e.g. a proxy or a test server) get the bot token."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme == "https" and (host == "slack.com" or host.endswith(".slack.com") or host == "slack-files.com"):
        return True
    api = urlsplit(api_url)
    return (parts.scheme, parts.hostname, parts.port) == (api.scheme, api.hostname, api.port)


async def download(file: SlackFile, token: str, max_bytes: int, api_url: str, hosts: Iterable[str]) -> bytes:
    """The file's bytes, fetched with the bot token; raises UploadProblem with a message for the admin.

    The link and every redirect must be on an allowed host (adapters.downloads); the token goes only to Slack."""
    name = file.name or "the file"
    if not file.url:
        raise UploadProblem(f"Slack did not give me a download link for {name}. Try uploading it again.")
    if not trusted_file_url(file.url, api_url):
        raise UploadProblem(f"{name} is not hosted on Slack, so I did not download it.")
    # http only when the Web API itself is spoken over http (a local Slack in development): then the token
    # travels in the clear anyway, and a download adds nothing.
    rules = downloads.DownloadRules.from_hosts(hosts, allow_http=urlsplit(api_url).scheme == "http")
    timeout = aiohttp.ClientTimeout(total=DOWNLOAD_TIMEOUT_S)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with downloads.get(session, file.url, rules, credentials={"Authorization": f"Bearer {token}"},
                                     send_credentials=lambda url: trusted_file_url(url, api_url)) as response:
                if response.status != 200:
                    raise UploadProblem(f"Slack answered {response.status} when I downloaded {name}. Try again later.")
                declared = response.content_length
                if declared is not None and declared > max_bytes:
                    raise UploadProblem(_too_big(name, declared, max_bytes))
                content_type = (response.headers.get("Content-Type") or "").split(";")[0].strip().lower()
                data = bytearray()
                async for chunk in response.content.iter_chunked(64 * 1024):
                    data.extend(chunk)
                    if len(data) > max_bytes:
                        raise UploadProblem(_too_big(name, len(data), max_bytes, at_least=True))
    except UploadProblem:
        raise
    except downloads.DownloadRefused as refused:
        raise UploadProblem(f"I did not download {name}: {refused.reason}.") from refused
    except (aiohttp.ClientError, TimeoutError) as err:
        raise UploadProblem(f"I couldn't download {name} from Slack ({type(err).__name__}). Try again later.") from err
    if file.extension not in HTML_EXTENSIONS and (content_type == "text/html" or _looks_like_html(bytes(data[:512]))):
        raise UploadProblem(
            f"Slack sent a sign-in page instead of {name}: the app can't read files. Check that it has the "
            "files:read scope (reinstall it after adding the scope) and try again.")
    return bytes(data)


def _looks_like_html(head: bytes) -> bool:
    start = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return start.startswith(b"<!doctype html") or start.startswith(b"<html")


def _too_big(name: str, size: int, limit: int, at_least: bool = False) -> str:
    shown = _mb(size)
    if at_least or shown == _mb(limit):  # "10 MB, over the 10 MB limit" would read like a bug
        return f"{name} is over the {_mb(limit)} limit. Split it or compress its images and try again."
    return f"{name} is {shown}, over the {_mb(limit)} limit. Split it or compress its images and try again."


def _mb(n: int) -> str:
    mb = n / (1024 * 1024)
    return f"{mb:.1f} MB".replace(".0 MB", " MB") if mb >= 0.1 else f"{n:,} bytes"

"""The admin console's routes on `policybot serve`'s aiohttp app (mounted like a platform: adapters.platforms).

    GET  /admin/login?token=   the one-time link: a page with a "Sign in" button (a link preview fetching the
    POST /admin/login          URL must not use it up); the POST redeems it and sets the session cookie
    POST /admin/logout
    GET  /admin/               charts;   /admin/charts/NAME.svg the SVGs
    GET  /admin/documents      POST /admin/documents/upload, /admin/documents/ID/remove
    GET  /admin/questions?q=   recent turns, with search
    GET  /admin/escalations    POST /admin/escalations/ID/resolve
    GET  /admin/gaps?since=30d
    GET  /admin/models         POST /admin/models/ID/promote (through the evaluation gate), /admin/models/rollback

Rules: every page needs a session (cookie: HttpOnly, SameSite=Strict, Path=/admin, Secure behind https) of a
user who is still an admin, else 401; every POST carries the session's CSRF token, else 403. The sign-in form
has its own double-submit token (a short-lived cookie and a hidden field). Changes go through the core's calls
(PolicyBot.upload / remove, bot.escalation, bot.finetune.evaluation.promote, registry.rollback), so the console
does exactly what the chat commands and the CLI do.
"""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

import jinja2
from aiohttp import web

from adapters.admin import charts
from adapters.server import Mounting
from bot import insights
from bot.console_auth import ConsoleSession
from bot.core import PolicyBot
from bot.finetune import registry
from bot.gaps import find_gaps, parse_since

log = logging.getLogger(__name__)

COOKIE = "policybot_console"
LOGIN_COOKIE = "policybot_console_login"
PREFIX = "/admin"
CONSOLE_GAP_QUESTIONS = 300  # `policybot gaps` groups up to 1,000
TEMPLATES = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
                               autoescape=True, trim_blocks=True, lstrip_blocks=True)
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; img-src 'self'; style-src 'self' 'unsafe-inline'; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY", "Cache-Control": "no-store", "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


class Console:
    def __init__(self, mounting: Mounting) -> None:
        self.bot: PolicyBot = mounting.bot
        self.run = mounting.run_blocking
        self.settings = mounting.bot.settings

    # ------------------------------------------------------------------------------------------ plumbing

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get(f"{PREFIX}/login", self.login_page), web.post(f"{PREFIX}/login", self.login),
            web.post(f"{PREFIX}/logout", self.logout),
            web.get(f"{PREFIX}", self.overview), web.get(f"{PREFIX}/", self.overview),
            web.get(f"{PREFIX}/charts/{{name}}.svg", self.chart),
            web.get(f"{PREFIX}/documents", self.documents),
            web.post(f"{PREFIX}/documents/upload", self.upload),
            web.post(f"{PREFIX}/documents/{{id:\\d+}}/remove", self.remove),
            web.get(f"{PREFIX}/questions", self.questions),
            web.get(f"{PREFIX}/escalations", self.escalations),
            web.post(f"{PREFIX}/escalations/{{id:\\d+}}/resolve", self.resolve),
            web.get(f"{PREFIX}/gaps", self.gaps),
            web.get(f"{PREFIX}/models", self.models),
            web.post(f"{PREFIX}/models/{{id:\\d+}}/promote", self.promote),
            web.post(f"{PREFIX}/models/rollback", self.rollback),
        ]

    def page(self, template: str, session: ConsoleSession | None, status: int = 200, **context) -> web.Response:
        html = TEMPLATES.get_template(template).render(session=session, prefix=PREFIX, **context)
        return web.Response(text=html, content_type="text/html", status=status, headers=HEADERS)

    def refused(self, status: int, message: str) -> web.Response:
        return self.page("refused.html", None, status=status, message=message,
                         command=self.settings.slack_command)

    def refusal(self, status: int, message: str) -> web.HTTPException:
        """The refusal page as an exception (raised from the checks below)."""
        kind = {401: web.HTTPUnauthorized, 403: web.HTTPForbidden}[status]
        html = TEMPLATES.get_template("refused.html").render(session=None, prefix=PREFIX, message=message,
                                                             command=self.settings.slack_command)
        return kind(text=html, content_type="text/html", headers=HEADERS)

    def secure(self, request: web.Request) -> bool:
        return (request.secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https"
                or (self.settings.public_url or "").lower().startswith("https://"))

    async def session_of(self, request: web.Request) -> ConsoleSession | None:
        return await self.run(self.bot.console.session, request.cookies.get(COOKIE))

    async def signed_in(self, request: web.Request) -> ConsoleSession:
        session = await self.session_of(request)
        if session is None:
            raise self.refusal(401, "You are not signed in, or your session ended.")
        return session

    async def form(self, request: web.Request) -> tuple[ConsoleSession, dict]:
        """The session and the posted form, with the CSRF token checked (403 without a valid one)."""
        session = await self.signed_in(request)
        fields = dict(await request.post())
        if not session.csrf_ok(fields.get("csrf") if isinstance(fields.get("csrf"), str) else None):
            raise self.refusal(403, "The form's security token was missing or wrong. Reload the page and try again.")
        return session, fields

    # ------------------------------------------------------------------------------------------ sign-in

    async def login_page(self, request: web.Request) -> web.Response:
        token = request.query.get("token", "")
        if not token:
            return self.refused(401, "Sign in with a link from the bot.")
        nonce = secrets.token_urlsafe(16)
        response = self.page("login.html", None, token=token, nonce=nonce)
        response.set_cookie(LOGIN_COOKIE, nonce, max_age=600, path=f"{PREFIX}/login", httponly=True,
                            samesite="Strict", secure=self.secure(request))
        return response

    async def login(self, request: web.Request) -> web.Response:
        fields = await request.post()
        nonce = request.cookies.get(LOGIN_COOKIE, "")
        if not nonce or not secrets.compare_digest(nonce, str(fields.get("nonce", ""))):
            return self.refused(403, "The sign-in form's security token was missing or wrong. Open the link again.")
        session = await self.run(self.bot.console.redeem, str(fields.get("token", "")))
        if session is None:
            return self.refused(401, "This sign-in link is invalid, expired (links last 10 minutes) or was already "
                                     "used.")
        log.info("admin console: %s signed in", session.user_id)
        response = _see_other(f"{PREFIX}/")
        response.set_cookie(COOKIE, session.token, path=PREFIX, httponly=True, samesite="Strict",
                            secure=self.secure(request))
        response.del_cookie(LOGIN_COOKIE, path=f"{PREFIX}/login")
        return response

    async def logout(self, request: web.Request) -> web.Response:
        session, _ = await self.form(request)
        await self.run(self.bot.console.end, session.token)
        response = self.refused(200, "You are signed out.")
        response.del_cookie(COOKIE, path=PREFIX)
        return response

    # ------------------------------------------------------------------------------------------ pages

    async def overview(self, request: web.Request) -> web.Response:
        session = await self.signed_in(request)
        return self.page("charts.html", session, charts=charts.CHARTS)

    async def chart(self, request: web.Request) -> web.Response:
        await self.signed_in(request)
        name = request.match_info["name"]
        if name not in charts.CHARTS:
            raise web.HTTPNotFound()
        data = await self.run(insights.chart_data, self.bot.runtime.sessions)
        svg = await self.run(charts.render, name, data)
        return web.Response(text=svg, content_type="image/svg+xml", headers=HEADERS)

    async def documents(self, request: web.Request, message: str | None = None, ok: bool = True,
                        session: ConsoleSession | None = None, status: int = 200) -> web.Response:
        session = session or await self.signed_in(request)
        rows = await self.run(insights.documents, self.bot.runtime.sessions)
        return self.page("documents.html", session, status=status, documents=rows, message=message, ok=ok,
                         max_mb=self.settings.max_document_mb)

    async def upload(self, request: web.Request) -> web.Response:
        session = await self.signed_in(request)
        fields, file = await self._multipart(request)
        if not session.csrf_ok(fields.get("csrf")):
            return self.refused(403, "The form's security token was missing or wrong. Reload the page and try again.")
        if file is None:
            return await self.documents(request, "Choose a file to upload.", False, session, 400)
        filename, data = file
        if data is None:
            return await self.documents(request, f"{filename} is larger than {self.settings.max_document_mb:g} MB; "
                                                 "nothing was changed.", False, session, 413)
        link = (fields.get("link") or "").strip() or None
        if link and not link.lower().startswith(("https://", "http://")):
            return await self.documents(request, "The link must start with https://", False, session, 400)
        result = await self.run(self.bot.upload, session.user_id, filename, data,
                                (fields.get("title") or "").strip() or None, link)
        return await self.documents(request, result.message, result.ok, session, 200 if result.ok else 400)

    async def _multipart(self, request: web.Request) -> tuple[dict, tuple[str, bytes | None] | None]:
        """The upload form's fields, and its file read up to the document size limit (None past it). Read as a
        stream: the app's 2 MB body limit is for chat payloads, documents may be larger."""
        fields: dict[str, str] = {}
        file = None
        limit = self.settings.max_document_bytes
        try:
            reader = await request.multipart()
        except (AssertionError, ValueError, KeyError):
            return fields, None
        async for part in reader:
            if part.name == "file" and part.filename:
                data = bytearray()
                while chunk := await part.read_chunk(256 * 1024):
                    data.extend(chunk)
                    if len(data) > limit:
                        data = None
                        break
                file = (Path(part.filename).name, bytes(data) if data is not None else None)
            elif part.name and part.name != "file":
                fields[part.name] = (await part.text())[:2000]
        return fields, file

    async def remove(self, request: web.Request) -> web.Response:
        session, _ = await self.form(request)
        result = await self.run(self.bot.remove, session.user_id, request.match_info["id"])
        return await self.documents(request, result.message, result.ok, session, 200 if result.ok else 400)

    async def questions(self, request: web.Request) -> web.Response:
        session = await self.signed_in(request)
        search = request.query.get("q", "")
        turns = await self.run(insights.recent_turns, self.bot.runtime.sessions, search)
        return self.page("questions.html", session, turns=turns, search=search)

    async def escalations(self, request: web.Request, message: str | None = None,
                          session: ConsoleSession | None = None) -> web.Response:
        session = session or await self.signed_in(request)
        rows = await self.run(self.bot.escalations.recent)
        return self.page("escalations.html", session, escalations=rows, message=message)

    async def resolve(self, request: web.Request) -> web.Response:
        session, _ = await self.form(request)
        result = await self.run(self.bot.escalations.resolve, int(request.match_info["id"]), session.user_id)
        return await self.escalations(request, result.message, session)

    async def gaps(self, request: web.Request) -> web.Response:
        session = await self.signed_in(request)
        since = request.query.get("since", "30d")
        try:
            window = parse_since(since)
        except ValueError as err:
            return self.page("gaps.html", session, status=400, gaps=[], since=since, message=str(err))
        # The most recent CONSOLE_GAP_QUESTIONS: a first view embeds each question (benchmarks/gaps.py).
        found = await self.run(find_gaps, self.bot.runtime.sessions, self.bot.runtime.embedder, window,
                               limit=CONSOLE_GAP_QUESTIONS)
        return self.page("gaps.html", session, gaps=found, since=since, message=None, limit=CONSOLE_GAP_QUESTIONS)

    async def models(self, request: web.Request, message: str | None = None, ok: bool = True,
                     session: ConsoleSession | None = None) -> web.Response:
        session = session or await self.signed_in(request)
        versions = await self.run(registry.list_versions, self.bot.runtime.sessions)
        return self.page("models.html", session, models=versions, message=message, ok=ok,
                         base_model=self.settings.chat_model, promotable=registry.PROMOTABLE)

    async def promote(self, request: web.Request) -> web.Response:
        from bot.finetune.evaluation import promote

        session, _ = await self.form(request)
        try:
            outcome = await self.run(promote, self.bot.runtime, request.match_info["id"])
        except registry.RegistryError as err:
            return await self.models(request, str(err), False, session)
        log.info("admin console: %s promoted model %s: %s", session.user_id, request.match_info["id"], outcome.promoted)
        return await self.models(request, outcome.message, outcome.promoted, session)

    async def rollback(self, request: web.Request) -> web.Response:
        session, _ = await self.form(request)
        try:
            result = await self.run(registry.rollback, self.bot.runtime.sessions)
        except registry.RegistryError as err:
            return await self.models(request, str(err), False, session)
        now = result.now_active.label if result.now_active else f"the base model {self.settings.chat_model}"
        return await self.models(request, f"Rolled back {result.rolled_back.label}; {now} answers now.", True, session)


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location, **HEADERS})


def mount(app: web.Application, mounting: Mounting) -> Console:
    """The console on the app (adapters.server.Mount): always; nothing is reachable without a sign-in link."""
    console = Console(mounting)
    app.router.add_routes(console.routes())
    return console

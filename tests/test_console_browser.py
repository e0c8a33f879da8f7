"""The admin console in a real browser: Debian's headless Chromium driven by Playwright (no browser download;
`make test` installs the `chromium` package when it is missing). Page scripts are switched off, as the console
must work without JavaScript. One browser for the module; the app runs on 127.0.0.1 with real PostgreSQL/Redis."""

from __future__ import annotations

import shutil

import pytest

from adapters.platforms import PLATFORMS
from adapters.server import build_app
from bot.core import PolicyBot
from bot.finetune import registry
from knowledge.ingest import ingest_file
from tests.helpers import LEAVE, write
from tests.test_teams import RunningApp

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (make test installs it)")
ADMIN = "UADMIN"
GOOD = {"citation_validity": 1.0, "grounded_rate": 1.0, "correct_refusal_rate": 1.0, "answer_key_hit_rate": 1.0,
        "document_hit_rate": 1.0, "fallbacks": 0, "errors": 0, "question_set": "qs1"}


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def served(runtime, tmp_path):
    runtime.settings = runtime.settings.model_copy(update={"admins": [ADMIN]})
    bot = PolicyBot(runtime)
    ingest_file(runtime.sessions, runtime.embedder, write(tmp_path / "leave.md", LEAVE), uploaded_by=ADMIN)
    for user, question, rating in (("U1", "How many vacation days do I get?", 1),
                                   ("U2", "When do I need a doctor's note?", -1)):
        answer = bot.answer(question, user, "slack")
        bot.feedback(answer.interaction_id, user, "slack", rating)
    bot.answer("Can I bring my parrot to work?", "U3", "slack")
    app = RunningApp(build_app(bot, PLATFORMS)).start()
    yield bot, app
    app.stop()


def test_sign_in_charts_upload_and_promote_in_chromium(browser, served):
    bot, app = served
    sessions = bot.runtime.sessions
    baseline = registry.baseline(sessions, bot.settings.chat_model, create_missing=True)
    registry.set_metrics(sessions, baseline.id, {**GOOD, "grounded_rate": 0.9})
    candidate = registry.create(sessions, provider="openai", model_id="ft:brand-1", base_model=bot.settings.chat_model,
                                job_id="ftjob-1", status="candidate", metrics=GOOD)

    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    svgs = []
    page.on("response", lambda r: svgs.append((r.url, r.status, r.headers.get("content-type")))
            if r.url.endswith(".svg") else None)
    page.goto(f"{app.url}/admin/login?token={bot.console.issue_link(ADMIN)}")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{app.url}/admin/")

    # The charts: five SVG images, each loaded and laid out at its size.
    images = page.locator("img[data-chart]")
    assert images.count() == 5
    page.wait_for_load_state("load")
    for i in range(5):
        image = images.nth(i)
        assert image.evaluate("img => img.complete && img.naturalWidth") == 800
        box = image.bounding_box()
        assert box and box["width"] > 100 and box["height"] > 50
    assert sorted(status for _, status, _ in svgs) == [200] * 5
    assert all(kind.startswith("image/svg+xml") for _, _, kind in svgs)

    # Upload a document through the form.
    page.get_by_role("link", name="Documents").click()
    page.locator("#upload input[name=file]").set_input_files(
        files=[{"name": "pets.md", "mimeType": "text/markdown", "buffer": b"# Pets\n\nDogs are welcome on Fridays.\n"}])
    page.locator("#upload input[name=title]").fill("Pets at work")
    page.locator("#upload button[type=submit]").click()
    assert "Added “Pets at work”" in page.get_by_role("status").inner_text()
    assert page.get_by_role("cell", name="Pets at work").count() == 1
    assert "Pets at work" in [d.title for d in bot.documents()]

    # Promote the candidate through the gate.
    page.get_by_role("link", name="Models").click()
    page.get_by_role("button", name=f"Promote #{candidate.id}").click()
    assert "promoted" in page.get_by_role("status").inner_text().lower()
    assert page.locator(f'td[data-status="{candidate.id}"]').inner_text() == "active"
    assert registry.active(sessions).id == candidate.id
    context.close()

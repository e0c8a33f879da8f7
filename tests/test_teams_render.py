"""Teams rendering, helpers and the app manifest: pure functions, no services."""

from __future__ import annotations

import json
import struct
import zipfile

import pytest
from botbuilder.core import InvokeResponse
from botbuilder.schema import Activity
from botframework.connector.models import ResourceResponse

from adapters.settings import Settings
from adapters.teams import render
from adapters.teams.bot import feedback_text, mentions_bot, message_ref, message_text, scope, user_of
from adapters.teams.http import BotFrameworkConfig, invoke_http_response
from adapters.teams.manifest import HERE, build_package, placeholders, render_manifest
from adapters.teams.uploads import FILE_DOWNLOAD_INFO, file_attachments
from bot.contract import Answer, Source


def _source(marker: int, **overrides) -> Source:
    values = dict(marker=marker, document=f"Policy {marker}", source=f"policy-{marker}.pdf", section="Scope",
                  page=None, link=f"https://intranet.example.com/p/{marker}", snippet=f"Passage {marker} text.")
    values.update(overrides)
    return Source(**values)


def _answer(text: str, sources: list[Source], kind: str = "extractive", **overrides) -> Answer:
    return Answer(interaction_id="i-1", text=text, sources=sources, grounded=True, cached=False, model="extractive",
                  kind=kind, **overrides)


def _wire(activity: Activity) -> dict:
    """What the connector client puts on the wire."""
    return json.loads(json.dumps(activity.serialize()))


def test_answer_entity_and_feedback_loop_survive_serialization():
    answer = _answer("You get 25 days [1]. Carry-over ends March 31 [2].",
                     [_source(1, page=4), _source(2, link="file:///etc/passwd", source="leave.docx")])
    wire = _wire(render.answer_activity(answer))
    assert wire["type"] == "message" and wire["text"] == answer.text and wire["textFormat"] == "markdown"
    assert wire["channelData"] == {"feedbackLoop": {"type": "default"}}
    assert "feedbackLoopEnabled" not in wire["channelData"]  # Teams rejects both together
    [entity] = wire["entities"]
    assert {k: entity[k] for k in ("type", "@type", "@context", "@id", "additionalType")} == {
        "type": "https://schema.org/Message", "@type": "Message", "@context": "https://schema.org", "@id": "",
        "additionalType": ["AIGeneratedContent"]}
    first, second = entity["citation"]
    assert first == {"@type": "Claim", "position": 1, "appearance": {
        "@type": "DigitalDocument", "name": "Policy 1, p. 4", "abstract": "Scope: Passage 1 text.",
        "url": "https://intranet.example.com/p/1", "image": {"@type": "ImageObject", "name": "PDF"}}}
    assert "url" not in second["appearance"]  # only http(s) links
    assert second["appearance"]["image"]["name"] == "Microsoft Word"


def test_at_most_twenty_citations_and_dead_markers_removed():
    sources = [_source(n) for n in range(1, 26)]
    text = " ".join(f"Fact {n} [{n}]." for n in range(1, 26))
    wire = _wire(render.answer_activity(_answer(text, sources)))
    citations = wire["entities"][0]["citation"]
    assert [c["position"] for c in citations] == list(range(1, 21))
    assert "[20]" in wire["text"] and "[21]" not in wire["text"] and "Fact 25." in wire["text"]


def test_names_and_abstracts_are_cut_to_teams_limits():
    source = _source(1, document="A" * 30 + " " + "very long title " * 10, page=123,
                     section="Benefits › Paid Time Off › Sabbatical", snippet="word " * 100)
    appearance = render.citation(source)["appearance"]
    assert len(appearance["name"]) <= 80 and appearance["name"].endswith("…, p. 123")
    assert len(appearance["abstract"]) <= 160 and appearance["abstract"].endswith("…")
    assert appearance["abstract"].startswith("Benefits › Paid Time Off › Sabbatical: word")


def test_huge_answer_is_cut_to_fit_the_message_size_limit():
    text = ("Employees receive leave as described in the handbook [1]. " * 2000) + "Final sentence [2]."
    activity = render.answer_activity(_answer(text, [_source(1), _source(2)]))
    assert render.activity_bytes(activity) <= render.MAX_ACTIVITY_BYTES
    wire = _wire(activity)
    assert wire["text"].endswith("…") and "[1]" in wire["text"]
    # The citation whose marker was cut away is dropped with it.
    assert [c["position"] for c in wire["entities"][0]["citation"]] == [1]
    plain = render.text_activity("x" * 100_000)
    assert render.activity_bytes(plain) <= render.MAX_ACTIVITY_BYTES


@pytest.mark.parametrize("with_card", [False, True])
def test_an_answer_near_the_limit_is_measured_and_still_fits(with_card):
    """An answer whose text and the rest come close to the limit is serialized and cut; one well under it is
    sent as built (render._fit's bound: the rest of the activity, every citation kept, plus ENVELOPE_BYTES)."""
    from adapters.teams.escalation import escalate_card

    card = escalate_card("0b6f1c1e-5e0a-4d59-9d6b-1f2e3d4c5b6a") if with_card else None
    sources = [_source(n, snippet="word " * 60) for n in range(1, 21)]
    markers = " ".join(f"[{n}]" for n in range(1, 21))
    for words in (10, *range(1_500, 4_500, 10)):  # every 60 bytes across the limit: no size slips through
        text = ("leave " * words) + markers
        activity = render.answer_activity(_answer(text, sources), ask_hr=card)
        assert render.activity_bytes(activity) <= render.MAX_ACTIVITY_BYTES, words
        if words == 10:
            assert _wire(activity)["text"].startswith("leave") and not _wire(activity)["text"].endswith("…")


@pytest.mark.parametrize("kind", ["smalltalk", "error", "limited"])
def test_fixed_replies_get_no_entity_or_feedback(kind):
    wire = _wire(render.answer_activity(_answer("Hi! Ask me about our policies.", [], kind=kind)))
    assert not wire.get("entities") and not wire.get("channelData")


def test_refusal_gets_feedback_and_ai_label_but_no_citations():
    wire = _wire(render.answer_activity(_answer("I couldn't find that in our policies.", [], kind="refusal")))
    assert wire["channelData"] == {"feedbackLoop": {"type": "default"}}
    assert "citation" not in wire["entities"][0] and wire["entities"][0]["additionalType"] == ["AIGeneratedContent"]


def test_notice_and_markup_from_documents_are_safe():
    answer = _answer("Ask <at>Everyone</at> or <a href='x'>here</a>; note 3 < 5 [1].", [_source(1)],
                     notice="Your message was long.")
    text = _wire(render.answer_activity(answer))["text"]
    assert text.startswith("_Your message was long._\n\n")
    assert "<at>" not in text and "<a " not in text and "&lt;at>" in text and "3 < 5" in text


def test_document_list():
    assert "No documents yet" in render.document_list([])
    from bot.contract import DocumentInfo

    listing = render.document_list([DocumentInfo(1, "Leave Policy", "leave.md", "https://x.example/leave", 2, 9,
                                                 "2025-01-15T10:00:00+00:00"),
                                    DocumentInfo(2, "Travel", "travel.md", None, 1, 3, None)])
    assert "- [Leave Policy](https://x.example/leave) — version 2, 9 passages, updated 2025-01-15" in listing
    assert "- Travel — version 1, 3 passages" in listing


# --------------------------------------------------------------------------------------------- activity helpers


def _incoming(text: str, *, entities=None, conversation_type="channel", conversation_id="19:c@thread.tacv2",
              aad: str | None = "aad-1") -> Activity:
    return Activity().deserialize({
        "type": "message", "text": text, "entities": entities or [],
        "from": {"id": "29:user", "aadObjectId": aad} if aad else {"id": "29:user"},
        "recipient": {"id": "28:bot", "name": "Policy Bot (HR)"},
        "conversation": {"id": conversation_id, "conversationType": conversation_type},
    })


def test_mention_of_the_bot_is_detected_and_stripped():
    bot_mention = {"type": "mention", "text": "<at>Policy Bot (HR)</at>", "mentioned": {"id": "28:bot", "name": "x"}}
    other = {"type": "mention", "text": "<at>Ann</at>", "mentioned": {"id": "29:ann", "name": "Ann"}}
    activity = _incoming("<at>Policy Bot (HR)</at> can <at>Ann</at> carry over&nbsp;days?",
                         entities=[bot_mention, other])
    assert mentions_bot(activity)
    assert message_text(activity) == "can Ann carry over days?"
    assert not mentions_bot(_incoming("<at>Ann</at> hi", entities=[other]))
    assert not mentions_bot(_incoming("no entities"))


def test_scope_user_and_message_ref():
    channel = _incoming("x", conversation_id="19:c@thread.tacv2;messageid=1700000000001")
    assert scope(channel) == "channel" and user_of(channel) == "aad-1"
    assert message_ref(channel, "1700000000009") == "teams:19:c@thread.tacv2:1700000000009"
    emulator = _incoming("x", conversation_type=None, aad=None)
    assert scope(emulator) == "personal" and user_of(emulator) == "29:user"
    group = _incoming("x", conversation_type="groupChat")
    assert scope(group) == "groupChat"


def test_feedback_text_shapes():
    assert feedback_text(json.dumps({"feedbackText": "  too long  "})) == "too long"
    assert feedback_text(json.dumps({"feedbackText": ""})) is None
    assert feedback_text({"feedbackText": "dict form"}) == "dict form"
    assert feedback_text("plain words") == "plain words"
    assert feedback_text(None) is None


def test_file_attachments_are_found_and_names_made_safe():
    activity = Activity().deserialize({"type": "message", "attachments": [
        {"contentType": "text/html", "content": "<p>hi</p>"},
        {"contentType": FILE_DOWNLOAD_INFO, "name": "../../etc/Leave Policy",
         "content": {"downloadUrl": "https://x.sharepoint.com/dl", "fileType": "pdf"}},
        {"contentType": FILE_DOWNLOAD_INFO, "name": "C:\\Users\\ann\\travel.docx", "content": {}},
    ]})
    first, second = file_attachments(activity)
    assert (first.filename, first.download_url, first.file_type) == ("Leave Policy.pdf", "https://x.sharepoint.com/dl",
                                                                     "pdf")
    assert second.filename == "travel.docx" and second.download_url == ""


# --------------------------------------------------------------------------------------------- HTTP pieces


def test_invoke_responses_are_written_with_their_own_status_and_json_body():
    empty = invoke_http_response(InvokeResponse(status=200, body=None))
    assert empty.status == 200 and empty.body is None
    as_dict = invoke_http_response(InvokeResponse(status=400, body={"error": "x"}))  # 500 with CloudAdapter.process
    assert as_dict.status == 400 and json.loads(as_dict.text) == {"error": "x"}
    model = invoke_http_response(InvokeResponse(status=200, body=ResourceResponse(id="r1")))
    assert json.loads(model.text) == {"id": "r1"}
    assert invoke_http_response(None).status == 200


def test_bot_framework_config_from_settings():
    anonymous = BotFrameworkConfig.from_settings(Settings())
    assert anonymous.anonymous and anonymous.APP_TYPE == "MultiTenant"
    single = BotFrameworkConfig.from_settings(Settings(microsoft_app_id="id", microsoft_app_password="pw",
                                                       microsoft_app_type="singletenant",
                                                       microsoft_app_tenant_id="tenant"))
    assert (single.APP_ID, single.APP_PASSWORD, single.APP_TYPE, single.APP_TENANTID) == ("id", "pw", "SingleTenant",
                                                                                          "tenant")
    with pytest.raises(ValueError, match="MICROSOFT_APP_TENANT_ID"):
        BotFrameworkConfig.from_settings(Settings(microsoft_app_id="id", microsoft_app_password="pw",
                                                  microsoft_app_type="SingleTenant"))
    with pytest.raises(ValueError, match="MICROSOFT_APP_TYPE"):
        BotFrameworkConfig.from_settings(Settings(microsoft_app_type="Federated"))


# --------------------------------------------------------------------------------------------- manifest


def _png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_manifest_template_declares_the_bot():
    manifest = json.loads((HERE / "manifest.json").read_text(encoding="utf-8"))
    major, minor = map(int, manifest["manifestVersion"].split("."))
    assert (major, minor) >= (1, 17) and manifest["manifestVersion"] in manifest["$schema"]
    [bot] = manifest["bots"]
    assert bot["botId"] == "${{MICROSOFT_APP_ID}}" and manifest["id"] == "${{MICROSOFT_APP_ID}}"
    assert bot["supportsFiles"] is True and sorted(bot["scopes"]) == ["groupChat", "personal", "team"]
    personal = next(c for c in bot["commandLists"] if c["scopes"] == ["personal"])
    assert {"ask", "upload", "list", "help", "remove"} <= {c["title"] for c in personal["commands"]}
    for command_list in bot["commandLists"]:
        for command in command_list["commands"]:
            assert len(command["title"]) <= 32 and len(command["description"]) <= 128
    assert len(manifest["name"]["short"]) <= 30 and len(manifest["description"]["short"]) <= 80
    assert _png_size(HERE / manifest["icons"]["color"]) == (192, 192)
    assert _png_size(HERE / manifest["icons"]["outline"]) == (32, 32)
    assert placeholders() == {"MICROSOFT_APP_ID", "COMPANY_NAME", "COMPANY_WEBSITE"}


def test_manifest_package_is_filled_in_and_zipped(tmp_path):
    app_id = "3f1c2b4a-1111-4a2b-9c3d-123456789abc"
    out = build_package({"MICROSOFT_APP_ID": app_id, "COMPANY_NAME": 'Contoso "HR"',
                         "COMPANY_WEBSITE": "https://intranet.contoso.com/hr"}, tmp_path / "pkg.zip")
    with zipfile.ZipFile(out) as package:
        assert sorted(package.namelist()) == ["color.png", "manifest.json", "outline.png"]
        manifest = json.loads(package.read("manifest.json"))
    assert manifest["id"] == app_id and manifest["bots"][0]["botId"] == app_id
    assert manifest["developer"]["name"] == 'Contoso "HR"' and "${{" not in json.dumps(manifest)
    with pytest.raises(ValueError, match="GUID"):
        render_manifest({"MICROSOFT_APP_ID": "not-a-guid", "COMPANY_NAME": "x", "COMPANY_WEBSITE": "https://x"})
    with pytest.raises(ValueError, match="https"):
        render_manifest({"MICROSOFT_APP_ID": app_id, "COMPANY_NAME": "x", "COMPANY_WEBSITE": "http://x"})

"""Document audiences end to end: a restricted document never reaches a non-member (search in every mode,
answers, citations, cached answers, feedback stats, fine-tuning exports), a member reads it in a DM but not in
a public channel (Slack and Teams, through their fakes), membership follows the platform within the TTL, and
a failed group lookup falls back to `everyone`. Real PostgreSQL, Redis and e5; Slack and Graph are local fakes."""

from __future__ import annotations

import json
import time

import pytest
from sqlalchemy import text

from adapters import memberships
from adapters.cli import main
from adapters.slack.membership import SlackGroups
from adapters.slack.uploads import parse_upload_submission
from adapters.teams.graph import GraphGroups
from adapters.teams.uploads import upload_text
from bot.audiences import AudienceConfigError, AudienceResolver, Directory, shown_audiences
from bot.core import ASK_PRIVATELY, PolicyBot
from bot.finetune.dataset import DatasetTooSmall, build_dataset
from bot.finetune.stats import feedback_stats
from knowledge import index
from knowledge.audiences import AudienceError, parse_audiences, set_document_audiences
from knowledge.ingest import ingest_file
from knowledge.retrieval import MODES, search
from adapters.platforms import PLATFORMS
from adapters.server import build_app
from tests.fakes.graph import FakeGraph
from tests.fakes.slack_api import app_mention
from tests.fakes.slack_api import message as slack_message
from tests.test_slack import run_async, serving, slack_settings
from tests.helpers import LEAVE, write

PAY = """# Leadership Compensation

## Executive bonus pool
The Zephyr bonus pool for directors is 18 percent of base salary, paid every March after the board review.
Directors who joined after October receive a pro-rated Zephyr bonus.
"""
RESTRICTED_QUESTION = "How large is the Zephyr bonus pool for directors?"
SECRET_WORDS = ("Zephyr", "18 percent")
MEMBER, OUTSIDER = "U_LEAD", "U_STAFF"

AUDIENCES_YAML = """
audiences:
  leadership:
    slack_groups: [leads]
    entra_groups: [grp-leadership]
    users: [aad-ceo]
  payroll-de:
    users: [U_PAYROLL]
"""


def _load(runtime, tmp_path):
    ingest_file(runtime.sessions, runtime.embedder, write(tmp_path / "leave.md", LEAVE))
    ingest_file(runtime.sessions, runtime.embedder, write(tmp_path / "pay.md", PAY), audiences=["leadership"])


def _titles(passages) -> set[str]:
    return {p.title for p in passages}


def _leaks(answer) -> bool:
    return (any(s.document == "Leadership Compensation" for s in answer.sources)
            or any(word in answer.text + " ".join(s.snippet for s in answer.sources) for word in SECRET_WORDS))


@pytest.fixture
def audiences_file(tmp_path):
    return write(tmp_path / "audiences.yaml", AUDIENCES_YAML)


@pytest.fixture
def cli(monkeypatch, runtime):
    monkeypatch.setenv("DATABASE_URL", runtime.settings.database_url)
    monkeypatch.setenv("REDIS_URL", runtime.settings.redis_url)
    monkeypatch.setenv("POLICYBOT_HOME", str(runtime.settings.home))


# ------------------------------------------------------------------------------------------------- retrieval


def test_search_never_returns_a_restricted_passage_to_a_non_member_in_any_mode(runtime, tmp_path, cli, capsys):
    _load(runtime, tmp_path)
    with runtime.sessions() as session:
        permitted = session.execute(text(
            "SELECT count(*) FROM chunks c JOIN documents d ON d.id = c.document_id "
            "WHERE 'everyone' = ANY(d.audiences)")).scalar_one()
        for mode in MODES:
            outsider = search(session, runtime.embedder, RESTRICTED_QUESTION, k=3, mode=mode)
            member = search(session, runtime.embedder, RESTRICTED_QUESTION, k=3, mode=mode,
                            audiences=["leadership"])
            assert "Leadership Compensation" not in _titles(outsider), mode
            assert all("everyone" in p.audiences for p in outsider)
            assert member[0].title == "Leadership Compensation" and member[0].audiences == ("leadership",), mode
            if mode != "text":  # the filter is in the query: still k passages (the corpus has them), not fewer
                assert len(outsider) == min(3, permitted)
        # A rare restricted term: the full-text half's rescue only ever sees permitted chunks.
        rare = search(session, runtime.embedder, "Zephyr", k=5, mode="text")
        assert rare == []
        assert [p.title for p in search(session, runtime.embedder, "Zephyr", k=5, mode="text",
                                        audiences=["leadership"])] == ["Leadership Compensation"]

    assert main(["search", RESTRICTED_QUESTION, "--json"]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    assert results and all(r["document"]["title"] != "Leadership Compensation" for r in results)
    assert main(["search", RESTRICTED_QUESTION, "--json", "--audience", "leadership"]) == 0
    first = json.loads(capsys.readouterr().out)["results"][0]
    assert first["document"]["title"] == "Leadership Compensation" and first["audiences"] == ["leadership"]
    assert main(["search", "x", "--audience", "Not A Name!"]) == 1
    assert "not an audience name" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------- answers


def test_answers_citations_and_cache_keep_restricted_text_from_non_members(policybot, runtime, tmp_path, cli,
                                                                          capsys):
    _load(runtime, tmp_path)
    member = policybot.answer(RESTRICTED_QUESTION, MEMBER, "slack", private=True, audiences=["leadership"])
    assert member.kind == "extractive" and member.sources[0].document == "Leadership Compensation"
    assert member.audiences == ("everyone", "leadership")

    # Same question, same words, right after: the member's cached answer must not reach a non-member.
    outsider = policybot.answer(RESTRICTED_QUESTION, OUTSIDER, "slack", private=True)
    assert not outsider.cached and not _leaks(outsider) and outsider.audiences == ("everyone",)
    again = policybot.answer(RESTRICTED_QUESTION, "U_OTHER", "slack", private=True)
    assert again.cached and not _leaks(again)
    member_again = policybot.answer(RESTRICTED_QUESTION, "U_LEAD2", "slack", private=True, audiences=["leadership"])
    assert member_again.cached and member_again.sources[0].document == "Leadership Compensation"

    # In a channel the member's answer is everyone's: no restricted text, and a pointer to the DM.
    channel = policybot.answer(RESTRICTED_QUESTION, MEMBER, "slack", "C1:1", audiences=["leadership"])
    assert not _leaks(channel) and ASK_PRIVATELY in (channel.notice or "")
    assert ASK_PRIVATELY not in (outsider.notice or "")  # nothing the outsider could read in a DM either
    public = policybot.answer("How many vacation days do I get?", MEMBER, "slack", "C1:2", audiences=["leadership"])
    assert "25 days" in public.text and ASK_PRIVATELY not in (public.notice or "")

    with runtime.sessions() as session:
        rows = session.execute(text("SELECT user_id, audiences, retrieved FROM interactions ORDER BY created_at")).all()
    assert rows[0].audiences == ["everyone", "leadership"] and rows[1].audiences == ["everyone"]
    assert all("Zephyr" not in json.dumps(r.retrieved) for r in rows[1:3])

    assert main(["ask", RESTRICTED_QUESTION, "--json", "--audience", "leadership", "--user", "cli-lead"]) == 0
    asked = json.loads(capsys.readouterr().out)
    assert asked["audiences"] == ["everyone", "leadership"] and asked["citations"][0]["document"] == "Leadership Compensation"
    assert main(["ask", RESTRICTED_QUESTION, "--json", "--user", "cli-staff"]) == 0
    asked = json.loads(capsys.readouterr().out)
    assert asked["audiences"] == ["everyone"] and "Zephyr" not in asked["answer"]
    assert all(c["document"] != "Leadership Compensation" for c in asked["citations"])


def test_feedback_stats_and_exports_leave_restricted_answers_out(policybot, runtime, tmp_path):
    _load(runtime, tmp_path)
    secret = policybot.answer(RESTRICTED_QUESTION, MEMBER, "slack", private=True, audiences=["leadership"])
    cached_secret = policybot.answer(RESTRICTED_QUESTION, "U_LEAD2", "slack", private=True, audiences=["leadership"])
    public = policybot.answer("How many vacation days do I get?", OUTSIDER, "slack", private=True)
    assert cached_secret.cached and public.sources
    for answer, user in ((secret, MEMBER), (cached_secret, "U_LEAD2"), (public, OUTSIDER)):
        assert policybot.feedback(answer.interaction_id, user, "slack", 1).recorded

    everything = feedback_stats(runtime.sessions)
    assert {r["document"] for r in everything["by_document"]} == {"Leadership Compensation", "Leave Policy"}
    everyone = feedback_stats(runtime.sessions, audiences=["everyone"])
    assert {r["document"] for r in everyone["by_document"]} == {"Leave Policy"}
    assert everyone["totals"]["up"] == 1 and "Zephyr" not in json.dumps(everyone)

    voice, contact = "Be kind.", "hr@example.com"
    dataset = build_dataset(runtime.sessions, "sft", voice, contact, min_examples=1)
    assert dataset.report["audiences"] == ["everyone"] and dataset.report["dropped"]["restricted_audience"] == 1
    assert "Zephyr" not in json.dumps([e.record for e in dataset.examples])
    leaders = build_dataset(runtime.sessions, "sft", voice, contact, min_examples=1, audiences=["leadership"])
    prompts = json.dumps([e.record for e in leaders.examples])
    assert "Zephyr" in prompts and 'audience=\\"leadership\\"' in prompts

    # Made public later: the current audiences count, and the example is usable for an everyone export.
    set_document_audiences(runtime.sessions, "Leadership Compensation", ["everyone"])
    assert "Zephyr" in json.dumps([e.record for e in build_dataset(runtime.sessions, "sft", voice, contact,
                                                                    min_examples=1).examples])
    # And restricted again: gone from an everyone export, even though the snapshot said everyone.
    set_document_audiences(runtime.sessions, "Leadership Compensation", ["leadership"])
    with pytest.raises(DatasetTooSmall):
        build_dataset(runtime.sessions, "sft", voice, contact, min_examples=2)


# ------------------------------------------------------------------------------------------------- documents


def test_ingest_and_docs_audience_commands(runtime, tmp_path, cli, capsys):
    path = write(tmp_path / "pay.md", PAY)
    assert main(["ingest", str(path), "--audience", "Leadership, payroll-de", "--json"]) == 0
    [result] = json.loads(capsys.readouterr().out)["results"]
    assert result["audiences"] == ["leadership", "payroll-de"]
    assert main(["ingest", str(path), "--audience", "bad name"]) == 1
    assert "not an audience name" in capsys.readouterr().err

    assert main(["docs", "list", "--json"]) == 0
    [doc] = json.loads(capsys.readouterr().out)["documents"]
    assert doc["audiences"] == ["leadership", "payroll-de"]
    with runtime.sessions() as session:
        before = index.corpus_version(session)
    assert main(["docs", "audience", "Leadership Compensation", "everyone"]) == 0
    assert "readable by everyone" in capsys.readouterr().out
    with runtime.sessions() as session:
        assert index.corpus_version(session) == before + 1  # cached answers of the old audiences are gone
        assert [p.title for p in search(session, runtime.embedder, RESTRICTED_QUESTION, k=1)] == [
            "Leadership Compensation"]
    assert main(["docs", "list"]) == 0
    assert "[everyone]" in capsys.readouterr().out
    assert main(["docs", "audience", "No Such Doc", "leadership"]) == 1
    # Same content, new audiences: updated without re-embedding, the passages keep their ids.
    with runtime.sessions() as session:
        ids = session.execute(text("SELECT array_agg(id ORDER BY id) FROM chunks")).scalar_one()
    again = ingest_file(runtime.sessions, runtime.embedder, path, audiences=["leadership"])
    assert again.status == "updated" and again.audiences == ("leadership",)
    with runtime.sessions() as session:
        assert session.execute(text("SELECT array_agg(id ORDER BY id) FROM chunks")).scalar_one() == ids


def test_chat_uploads_set_audiences(runtime, tmp_path):
    runtime.settings = runtime.settings.model_copy(update={"admins": ["UADMIN"]})
    bot = PolicyBot(runtime)
    result = bot.upload("UADMIN", "pay.md", PAY.encode(), audiences="leadership")
    assert result.ok and "readable by leadership only" in result.message
    refused = bot.upload("UADMIN", "pay2.md", PAY.encode(), title="Other", audiences="no way!")
    assert not refused.ok and "not an audience name" in refused.message
    assert [d.audiences for d in bot.documents()] == [("leadership",)]
    assert bot.documents_for("slack", "U_STAFF") == [] and len(bot.documents_for("slack", "UADMIN")) == 1

    view = {"state": {"values": {"file": {"file": {"files": [{"id": "F1", "name": "pay.md"}]}},
                                 "audiences": {"audiences": {"value": " leadership, payroll-de "}}}}}
    assert parse_upload_submission(view).audiences == "leadership, payroll-de"
    known = ("leadership", "payroll-de")
    assert upload_text("Executive Pay for leadership, payroll-de", known) == ("Executive Pay", "leadership,payroll-de")
    assert upload_text("for leadership", known) == (None, "leadership")
    assert upload_text("Allowance for travel", known) == ("Allowance for travel", None)  # not an audience


# ------------------------------------------------------------------------------------------------- membership


def test_audiences_file_is_validated(tmp_path):
    directory = Directory.load(write(tmp_path / "a.yaml", AUDIENCES_YAML))
    assert directory.names == ("leadership", "payroll-de") and directory.groups("slack_groups") == ("leads",)
    for body, says in (("audiences: [a, b]", "mapping"), ("audiences:\n  everyone: {users: [U1]}", "everyone"),
                       ("audiences:\n  x: {teams: [U1]}", "slack_groups, entra_groups and users"),
                       ("audiences:\n  Bad Name: {users: [U1]}", "not an audience name"), (": [", "YAML")):
        with pytest.raises(AudienceConfigError, match=says):
            Directory.load(write(tmp_path / "bad.yaml", body))
    with pytest.raises(AudienceConfigError, match="cannot be read"):
        Directory.load(tmp_path / "missing.yaml")
    with pytest.raises(AudienceError):
        parse_audiences("a b")
    assert shown_audiences(("everyone", "leadership"), private=False) == ("everyone",)
    assert shown_audiences(("everyone", "leadership"), private=True) == ("everyone", "leadership")


def test_slack_membership_follows_the_group_within_the_ttl_and_fails_closed(fake_slack, redis_client, tmp_path):
    fake_slack.set_usergroup("S0LEADS", "leads", [MEMBER])
    from slack_sdk import WebClient

    lookup = SlackGroups(WebClient(token=fake_slack.token, base_url=fake_slack.api_url), ttl_s=0.5)
    resolver = AudienceResolver(Directory.load(write(tmp_path / "a.yaml", AUDIENCES_YAML)), redis_client, ttl_s=1)
    resolver.register("slack", lookup)
    assert resolver.audiences_of("slack", MEMBER) == ("everyone", "leadership")
    assert resolver.audiences_of("slack", OUTSIDER) == ("everyone",)
    assert resolver.audiences_of("slack", "U_PAYROLL") == ("everyone", "payroll-de")  # explicit id

    fake_slack.set_usergroup("S0LEADS", "leads", [OUTSIDER])  # an admin moves people between groups
    assert resolver.audiences_of("slack", MEMBER) == ("everyone", "leadership")  # cached, within the TTL
    time.sleep(1.1)
    assert resolver.audiences_of("slack", MEMBER) == ("everyone",)
    assert resolver.audiences_of("slack", OUTSIDER) == ("everyone", "leadership")

    redis_client.flushdb()
    time.sleep(0.6)  # past the lookup's own member-list cache
    fake_slack.fail("usergroups.users.list", "internal_error", times=5)
    assert resolver.audiences_of("slack", OUTSIDER) == ("everyone",)  # failed lookup: everyone only
    assert redis_client.ttl(f"policybot:audiences:slack:{OUTSIDER}") <= 30


def test_graph_check_member_groups_and_failure(redis_client, tmp_path):
    graph = FakeGraph().start()
    try:
        graph.set_groups("aad-lead", {"grp-leadership", "grp-other"})
        graph.set_groups("aad-staff", {"grp-other"})
        resolver = AudienceResolver(Directory.load(write(tmp_path / "a.yaml", AUDIENCES_YAML)), redis_client)
        resolver.register("teams", GraphGroups(lambda: graph.token, graph.url))
        assert resolver.audiences_of("teams", "aad-lead") == ("everyone", "leadership")
        assert resolver.audiences_of("teams", "aad-staff") == ("everyone",)
        assert json.loads(graph.calls[0]["body"]) == {"groupIds": ["grp-leadership"]}
        graph.fail_next(3)
        assert resolver.audiences_of("teams", "aad-new-lead") == ("everyone",)
        assert resolver.audiences_of("teams", "aad-ceo") == ("everyone", "leadership")  # explicit: no lookup
        wrong_token = GraphGroups(lambda: "expired", graph.url)
        with pytest.raises(Exception):
            wrong_token.member_of("aad-lead", ["grp-leadership"])
    finally:
        graph.stop()


# ------------------------------------------------------------------------------------------------- platforms


@run_async
async def test_slack_member_reads_restricted_documents_in_a_dm_but_not_in_a_channel(runtime, fake_slack, tmp_path,
                                                                                    audiences_file):
    fake_slack.set_usergroup("S0LEADS", "leads", [MEMBER])
    runtime.settings = slack_settings(runtime.settings, fake_slack, audiences_file=audiences_file)
    bot = PolicyBot(runtime)
    memberships.install(bot)  # what `policybot serve` and the answer workers do
    _load(runtime, tmp_path)
    async with serving(bot) as slack:
        assert (await slack.event(slack_message(RESTRICTED_QUESTION, user=MEMBER, channel="D1"))).status == 200
        [dm] = await fake_slack.wait_for("chat.postMessage")
        await slack.event(app_mention(RESTRICTED_QUESTION, user=MEMBER, channel="C1"))
        channel = (await fake_slack.wait_for("chat.postMessage", 2))[1]
        await slack.event(slack_message(RESTRICTED_QUESTION, user=OUTSIDER, channel="D2"))
        outsider = (await fake_slack.wait_for("chat.postMessage", 3))[2]
        await slack.event(slack_message(RESTRICTED_QUESTION, user=MEMBER, channel="G1", channel_type="mpim"))
        await slack.event(app_mention(RESTRICTED_QUESTION, user=MEMBER, channel="G1"))  # a group DM is not private
        group = (await fake_slack.wait_for("chat.postMessage", 4))[3]

    assert dm.args["channel"] == "D1" and "Zephyr" in json.dumps(dm.args["blocks"])
    for post in (channel, outsider, group):
        assert "Zephyr" not in json.dumps(post.args) and "Leadership Compensation" not in json.dumps(post.args)
    assert ASK_PRIVATELY.split(".")[0] in json.dumps(channel.args["blocks"])
    assert ASK_PRIVATELY.split(".")[0] not in json.dumps(outsider.args["blocks"])
    assert [c.args["usergroup"] for c in fake_slack.calls_to("usergroups.users.list")] == ["S0LEADS"]  # cached
    assert fake_slack.calls_to("usergroups.list")  # the handle `leads` was looked up


def test_teams_member_reads_restricted_documents_in_personal_chat_but_not_in_a_channel(runtime, connector, tmp_path,
                                                                                      audiences_file):
    from tests.test_teams import CHANNEL, RunningApp, _ask

    graph = FakeGraph().start()
    graph.set_groups("aad-lead", {"grp-leadership"})
    runtime.settings = runtime.settings.model_copy(update={"audiences_file": audiences_file})
    core = PolicyBot(runtime)
    core.audiences.register("teams", GraphGroups(lambda: graph.token, graph.url))
    _load(runtime, tmp_path)
    teams = RunningApp(build_app(core, PLATFORMS)).start()
    try:
        _, personal = _ask(teams, connector, RESTRICTED_QUESTION, user="aad-lead")
        _, explicit = _ask(teams, connector, RESTRICTED_QUESTION, user="aad-ceo")  # named in the file
        _, staff = _ask(teams, connector, RESTRICTED_QUESTION, user="aad-staff")
        _, channel = _ask(teams, connector, RESTRICTED_QUESTION, user="aad-lead", conversation=CHANNEL,
                          kind="channel", mention=True)
        _, listed = _ask(teams, connector, "list", user="aad-staff")
    finally:
        teams.stop()
        graph.stop()
    assert "Zephyr" in personal.text and "Zephyr" in explicit.text
    for reply in (staff, channel, listed):
        assert "Zephyr" not in json.dumps(reply.activity) and "Leadership Compensation" not in json.dumps(reply.activity)
    assert ASK_PRIVATELY.split(".")[0] in json.dumps(channel.activity)
    assert "Leave Policy" in listed.text


def test_a_filter_that_thins_the_hnsw_scan_still_returns_k_passages(runtime, tmp_path):
    """pgvector's HNSW scan finds hnsw.ef_search (40) rows before the audience filter: when restricted chunks
    crowd all of them out, the search widens the scan rather than answering from fewer than k passages. (On a
    graph this small pgvector 0.6.2 happened to return every row, so the thinning itself is not shown here.)"""
    from tests.helpers import HashEmbedder

    embedder = HashEmbedder(dim=16, name="test:hash")
    # 60 restricted passages that all sit nearer the question than any public one.
    crowd = "# Bonus plan\n\n" + "\n\n".join(f"## Bonus plan\nbonus rules for the bonus plan {'!' * i}"
                                             for i in range(60))
    ingest_file(runtime.sessions, embedder, write(tmp_path / "crowd.md", crowd), audiences=["leadership"])
    for name in ("one", "two"):
        body = f"# Canteen {name}\n\n" + "\n\n".join(f"## Dish {i}\nlentil soup on day {i}" for i in range(3))
        ingest_file(runtime.sessions, embedder, write(tmp_path / f"{name}.md", body))
    with runtime.sessions() as session:
        assert session.execute(text("SELECT count(*) FROM chunks")).scalar_one() >= 66
        session.execute(text("SET LOCAL enable_seqscan = off; SET LOCAL enable_sort = off"))  # HNSW, as at scale
        found = search(session, embedder, "bonus rules for the bonus plan", k=5, mode="vector")
        assert len(found) == 5 and {p.title for p in found} == {"Canteen one", "Canteen two"}

"""Content gaps: refused, 👎 and escalated questions grouped by meaning (real embeddings, real PostgreSQL)."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from adapters.cli import main
from bot import interactions
from bot.gaps import find_gaps, parse_since
from bot.records import Escalation
from knowledge.ingest import ingest_file
from tests.helpers import LEAVE, write

GYM = ["How do I claim my gym membership?", "Can I expense a gym subscription?",
       "Is fitness club membership reimbursed?"]
PETS = ["What is the policy on bringing dogs to the office?", "Can I bring my dog to work?",
        "Are pets allowed in the office?"]
PARKING = ["How do I get a parking spot?", "Where can I park my car at the office?"]
SINGLES = ["What is the company's stance on crypto payroll?", "Who approves sabbaticals longer than 6 months?"]


def _turn(runtime, question, kind="refusal", platform="slack", age=timedelta(0)) -> str:
    interaction_id = str(uuid.uuid4())
    interactions.record(runtime.engine, dict(
        id=interaction_id, platform=platform, user_id="U1", conversation_id=None, question=question,
        retrieved=[], answer="I couldn't find that in our policies.", citations=[], grounded=False, cached=False,
        kind=kind, timings={"total": 12.0}, created_at=datetime.now(timezone.utc) - age))
    return interaction_id


@pytest.fixture
def asked(policybot, runtime, tmp_path):
    ingest_file(runtime.sessions, runtime.embedder, write(tmp_path / "leave.md", LEAVE))
    for q in GYM + SINGLES + PETS[:2] + PARKING[:1]:
        _turn(runtime, q)
    disliked = _turn(runtime, PETS[2], kind="extractive")
    policybot.feedback(disliked, "U2", "slack", -1)
    escalated = _turn(runtime, PARKING[1], kind="extractive")
    with runtime.sessions.begin() as s:
        s.add(Escalation(interaction_id=escalated, platform="slack", user_id="U3", reply_to={}))
    # Not gaps: a liked answer, an evaluation run, and a refusal older than the window.
    liked = _turn(runtime, "How many vacation days do I get?", kind="extractive")
    policybot.feedback(liked, "U2", "slack", 1)
    _turn(runtime, "Can I expense a gym subscription?", platform="eval")
    _turn(runtime, "Can I bring my cat to work?", age=timedelta(days=45))
    return runtime


def test_known_duplicates_are_grouped_and_others_stay_apart(asked):
    gaps = find_gaps(asked.sessions, asked.embedder, timedelta(days=30))
    groups = sorted(sorted(q.question for q in g.questions) for g in gaps)
    assert groups == sorted([sorted(GYM), sorted(PETS), sorted(PARKING)] + [[q] for q in SINGLES])
    assert [g.count for g in gaps] == [3, 3, 2, 1, 1]  # largest first
    pets = next(g for g in gaps if PETS[0] in [q.question for q in g.questions])
    assert pets.reasons == {"refused": 2, "thumbs_down": 1}
    parking = next(g for g in gaps if g.count == 2)
    assert parking.reasons == {"refused": 1, "escalated": 1}
    assert all(g.nearest_document == "Leave Policy" for g in gaps)  # the only document
    assert len(pets.examples) == 3 and set(pets.examples) == set(PETS)


def test_gaps_cli_json_and_since(asked, settings, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("REDIS_URL", settings.redis_url)
    monkeypatch.setenv("POLICYBOT_HOME", str(settings.home))
    capsys.readouterr()
    assert main(["gaps", "--since", "60d", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert sum(g["count"] for g in report["gaps"]) == 11  # the 45-day-old refusal is in a 60-day window
    first = report["gaps"][0]  # the old cat question joins the pets: 4
    assert first["count"] == 4 and first["nearest_document"] == "Leave Policy"
    assert set(first["examples"]) == set(PETS) and len(first["interactions"]) == 4  # newest examples first
    assert main(["gaps", "--since", "30d"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("10 questions in 5 groups") and "“Can I bring my dog to work?”" in out
    assert main(["gaps", "--since", "soon"]) == 1
    assert "--since takes a number and a unit" in capsys.readouterr().err


def test_parse_since():
    assert parse_since("30d") == timedelta(days=30) and parse_since("12h") == timedelta(hours=12)
    assert parse_since("2w") == timedelta(weeks=2)
    for bad in ("", "0d", "d", "30", "3y", "-1d"):
        with pytest.raises(ValueError):
            parse_since(bad)


def test_clustering_is_average_linkage():
    """cluster() gives what merging the pair of groups with the highest mean similarity, one at a time, gives."""
    import numpy as np

    from bot.gaps import cluster

    rng = np.random.default_rng(3)
    centers = rng.normal(size=(8, 32))
    vectors = centers[rng.integers(0, 8, 40)] + rng.normal(size=(40, 32)) * 0.7
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    sims = unit @ unit.T
    groups = [[i] for i in range(40)]
    while len(groups) > 1:
        score, a, b = max((sims[np.ix_(groups[a], groups[b])].mean(), a, b)
                          for a in range(len(groups)) for b in range(a + 1, len(groups)))
        if score < 0.5:
            break
        groups[a] += groups.pop(b)
    expected = sorted(sorted(g) for g in groups)
    assert 1 < len(expected) < 40  # the threshold matters on this set
    assert sorted(sorted(g) for g in cluster(vectors, 0.5)) == expected

import pytest

from bot.followup import heuristic_rewrite, looks_like_follow_up, rewrite
from bot.router import route


@pytest.mark.parametrize("text,kind", [
    ("hi", "greeting"), ("Hello there!", "greeting"), ("good morning", "greeting"),
    ("thanks!", "thanks"), ("thank you so much", "thanks"), ("help", "help"), ("", "help"),
    ("hi, how many vacation days do I get?", None), ("Can I expense a coworking desk?", None),
    ("thanks, and what about sick leave?", None),
])
def test_route(text, kind):
    assert route(text) == kind


def test_follow_up_detection():
    assert looks_like_follow_up("and for part-timers?")
    assert looks_like_follow_up("what about contractors?")
    assert not looks_like_follow_up("How many days of parental leave does a second parent get?")


def test_rewrite_without_llm_uses_previous_question():
    history = [("How many vacation days do I get?", "25 days [1]")]
    assert rewrite(history, "and for part-timers?") == heuristic_rewrite(history[0][0], "and for part-timers?")
    assert "vacation" in rewrite(history, "and for part-timers?")
    assert rewrite([], "and for part-timers?") == "and for part-timers?"
    standalone = "How do I report a lost laptop?"
    assert rewrite(history, standalone) == standalone

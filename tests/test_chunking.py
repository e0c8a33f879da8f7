"""Chunking: bounded, heading-aware, sentence-respecting, overlapping."""

from __future__ import annotations

import re

import pytest

from knowledge.chunking import chunk_document, split_sentences
from knowledge.loaders import LoadedDocument, Section, load_bytes


def _sentence(n: int) -> str:
    return f"Rule {n} says that employees in team {n} must file form {n} before the end of each month."


def _doc(*sections: Section) -> LoadedDocument:
    return LoadedDocument(title="Handbook", doc_type="text", sections=list(sections), content_hash="0" * 64)


def _prose(first: int, count: int, per_paragraph: int = 4) -> str:
    sentences = [_sentence(n) for n in range(first, first + count)]
    return "\n\n".join(" ".join(sentences[i:i + per_paragraph]) for i in range(0, count, per_paragraph))


# ---------------------------------------------------------------------------------------------------------
# split_sentences


def test_split_sentences_keeps_abbreviations_decimals_and_list_numbers():
    text = (
        "Bring supporting documents, e.g. a doctor's note, i.e. something official, forms etc. to HR. "
        "Mr. Jones and Dr. Patel approve Form No. 7 requests. Leave accrues at 2.5 days per month! "
        "Is that clear? Yes."
    )
    assert split_sentences(text) == [
        "Bring supporting documents, e.g. a doctor's note, i.e. something official, forms etc. to HR.",
        "Mr. Jones and Dr. Patel approve Form No. 7 requests.",
        "Leave accrues at 2.5 days per month!",
        "Is that clear?",
        "Yes.",
    ]


def test_split_sentences_list_numbers_and_bullets():
    text = "Steps to follow:\n1. Submit the form. Keep a copy.\n2. Wait for approval\n- Bullet one\n- Bullet two"
    assert split_sentences(text) == [
        "Steps to follow:", "1. Submit the form.", "Keep a copy.", "2. Wait for approval", "- Bullet one", "- Bullet two",
    ]


def test_split_sentences_joins_wrapped_lines_and_paragraphs_split():
    assert split_sentences("This sentence was\nwrapped. Next one.\n\nNew paragraph") == [
        "This sentence was wrapped.", "Next one.", "New paragraph",
    ]


# ---------------------------------------------------------------------------------------------------------
# chunk_document


def test_chunks_are_bounded_sequential_and_end_on_sentences():
    body = _prose(1, 40)
    drafts = chunk_document(_doc(Section(("Leave", "Annual"), body)), max_chars=400, overlap_chars=120)
    assert len(drafts) > 5
    assert [d.position for d in drafts] == list(range(len(drafts)))
    for draft in drafts:
        assert len(draft.text) <= 400
        assert draft.section_path == "Leave › Annual"
        assert draft.page is None
        assert draft.text.endswith(".") and draft.text[0].isupper()  # never cut mid-sentence
        # Every chunk is made of whole sentences of the source.
        for sentence in split_sentences(draft.text):
            assert re.fullmatch(r"Rule (\d+) says that employees in team \1 must file form \1 before the end of each month\.",
                                sentence), sentence
    covered = {s for d in drafts for s in split_sentences(d.text)}
    assert covered == {_sentence(n) for n in range(1, 41)}  # nothing lost


def test_consecutive_chunks_overlap_by_whole_trailing_sentences():
    drafts = chunk_document(_doc(Section(("Leave",), _prose(1, 30))), max_chars=400, overlap_chars=200)
    assert len(drafts) >= 3
    for before, after in zip(drafts, drafts[1:]):
        prev_sentences = split_sentences(before.text)
        next_sentences = split_sentences(after.text)
        shared = 0
        while shared < len(next_sentences) and next_sentences[shared] in prev_sentences:
            shared += 1
        assert shared >= 1, "expected overlap"
        # The overlap is the previous chunk's tail, in order, within the overlap budget.
        assert next_sentences[:shared] == prev_sentences[-shared:]
        assert len(" ".join(next_sentences[:shared])) <= 200
        assert next_sentences[shared:], "each chunk must bring new text"


def test_no_overlap_or_chunk_across_sections_and_pages():
    doc = _doc(
        Section(("Leave",), _prose(1, 12), page=1),
        Section(("Leave",), _prose(100, 12), page=2),
        Section(("Benefits", "Dental"), _prose(200, 3), page=2),
    )
    drafts = chunk_document(doc, max_chars=500, overlap_chars=150)
    numbers = [{int(n) for n in re.findall(r"Rule (\d+)", d.text)} for d in drafts]
    for draft, found in zip(drafts, numbers):
        if draft.page == 1:
            assert draft.section_path == "Leave" and max(found) < 100
        elif draft.section_path == "Leave":
            assert draft.page == 2 and 100 <= min(found) and max(found) < 200
        else:
            assert draft.section_path == "Benefits › Dental" and min(found) >= 200
    assert [d.page for d in drafts] == sorted(d.page for d in drafts)
    assert drafts[-1].text == _prose(200, 3)  # a small section is one chunk, no overlap from before


def test_whole_paragraphs_are_preferred_over_filling_up():
    first = " ".join(_sentence(n) for n in range(1, 7))  # ~560 chars
    second = " ".join(_sentence(n) for n in range(7, 13))
    drafts = chunk_document(_doc(Section((), f"{first}\n\n{second}")), max_chars=800, overlap_chars=100)
    assert drafts[0].text == first  # not first + two sentences of the second paragraph
    assert drafts[1].text.endswith(second)


def test_overlong_sentence_is_cut_between_words_only():
    words = [f"clause{n}" for n in range(300)]
    sentence = " ".join(words) + "."
    drafts = chunk_document(_doc(Section(("Terms",), sentence)), max_chars=300, overlap_chars=50)
    assert len(drafts) > 1
    assert all(len(d.text) <= 300 for d in drafts)
    for draft in drafts:
        assert all(re.fullmatch(r"clause\d+\.?", w) for w in draft.text.split())  # no word cut in half
    seen = [w.rstrip(".") for d in drafts for w in d.text.split()]
    assert set(seen) == set(words)


def test_abbreviations_survive_chunking_and_letterless_chunks_are_dropped():
    text = "Bring documents, e.g. a note from Dr. Patel. " * 30
    doc = _doc(Section(("Sick",), text.strip()), Section(("Appendix",), "12 | 14\n16 | 18"))
    drafts = chunk_document(doc, max_chars=300, overlap_chars=60)
    assert drafts and all(d.section_path == "Sick" for d in drafts)
    for draft in drafts:
        assert not draft.text.endswith(("e.g.", "Dr."))
        assert draft.text.startswith("Bring documents, e.g. a note from Dr. Patel.")


def test_lists_keep_their_lines():
    doc = _doc(Section(("Perks",), "You may claim:\n- Gym membership\n- Cycle to work"))
    assert [d.text for d in chunk_document(doc)] == ["You may claim:\n- Gym membership\n- Cycle to work"]


def test_chunking_a_loaded_markdown_document():
    markdown = "# Leave\n\n## Annual\n\n" + _prose(1, 20) + "\n\n## Sick\n\nCall your manager.\n"
    drafts = chunk_document(load_bytes(markdown.encode(), "leave.md"), max_chars=500, overlap_chars=100)
    assert {d.section_path for d in drafts} == {"Annual", "Sick"}
    assert drafts[-1].section_path == "Sick" and drafts[-1].text == "Call your manager."
    assert all(len(d.text) <= 500 for d in drafts)


@pytest.mark.parametrize("max_chars, overlap", [(10, 0), (400, 300), (400, -1)])
def test_bad_sizes_are_rejected(max_chars, overlap):
    with pytest.raises(ValueError):
        chunk_document(_doc(Section((), "Text.")), max_chars=max_chars, overlap_chars=overlap)

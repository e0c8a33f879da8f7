#!/usr/bin/env python3
"""Check the real-handbook question sets against their materialized corpora (stdlib only).

    python3 benchmarks/corpora/materialize.py all      # once: writes benchmarks/corpora/build/<name>/
    python3 benchmarks/corpora/check.py                # every corpus that has questions here
    python3 benchmarks/corpora/check.py 18f --build benchmarks/corpora/build

For every question file (questions_*.jsonl) and conversations.jsonl under benchmarks/corpora/<name>/:
  * answerable rows: `document` is a file of build/<name>/ (its ingest `source`), `section` is contained in a
    heading of that file, and every `answer_key` phrase occurs (case-insensitive, whitespace-normalized) in the
    text under such a heading (down to the next heading of the same or a higher level);
  * unanswerable rows: document, section null, answer_key empty, and every `absent_terms` entry occurs nowhere
    in the corpus (case-insensitive, on word boundaries, a plural -s/-es counted as the same word);
  * the dev/blind split: no question in both, sizes and unanswerable shares about even.
Warnings (not failures): a question that repeats its section heading word for word.
Prints counts per file; exits 1 on any error.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ATX = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)[ \t]*#*[ \t]*$")
FENCE = re.compile(r"^\s*(```|~~~)")


def norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().casefold()


@dataclass
class Section:
    level: int
    heading: str
    body: str  # the heading's text through the next heading of the same or a higher level


def sections(markdown: str) -> list[Section]:
    lines = markdown.splitlines()
    heads: list[tuple[int, int, str]] = []  # (line index, level, text)
    in_fence = False
    for i, line in enumerate(lines):
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        if in_fence:
            continue
        m = ATX.match(line)
        if m:
            heads.append((i, len(m.group(1)), m.group(2)))
        elif (line.strip() and i + 1 < len(lines) and re.match(r"^ {0,3}(=+|-+)\s*$", lines[i + 1])
              and not re.match(r"^ {0,3}([-*_]\s*){3,}$", line) and not line.lstrip().startswith(("-", "*", "|", ">"))):
            heads.append((i, 1 if "=" in lines[i + 1] else 2, line.strip()))
    found = []
    for n, (start, level, text) in enumerate(heads):
        end = next((s for s, lv, _ in heads[n + 1:] if lv <= level), len(lines))
        found.append(Section(level, text, "\n".join(lines[start:end])))
    return found


class Corpus:
    def __init__(self, folder: Path):
        self.folder = folder
        self.files = {p.relative_to(folder).as_posix(): p.read_text(encoding="utf-8")
                      for p in sorted(folder.rglob("*.md"))}
        self.sections = {name: sections(text) for name, text in self.files.items()}
        self.all_text = "\n".join(self.files.values())

    def term_hits(self, term: str) -> list[str]:
        words = [re.escape(w) for w in term.split()]
        pattern = re.compile(r"(?<!\w)" + r"\s+".join(words) + r"(?:s|es)?(?!\w)", re.I)
        return [name for name, text in self.files.items() if pattern.search(text)]


def check_answer(corpus: Corpus, row: dict, where: str, errors: list[str], warnings: list[str]) -> None:
    doc, section, keys = row.get("document"), row.get("section"), row.get("answer_key") or []
    if doc not in corpus.files:
        errors.append(f"{where}: document {doc!r} is not a file of {corpus.folder}")
        return
    if not section:
        errors.append(f"{where}: answerable question without a section")
        return
    if not keys:
        errors.append(f"{where}: answerable question without answer_key")
    matching = [s for s in corpus.sections[doc] if norm(section) in norm(s.heading)]
    if not matching:
        errors.append(f"{where}: section {section!r} is no heading of {doc}")
        return
    for key in keys:
        if norm(key) not in norm(corpus.files[doc]):
            errors.append(f"{where}: answer_key {key!r} not in {doc}")
        elif not any(norm(key) in norm(s.body) for s in matching):
            errors.append(f"{where}: answer_key {key!r} is in {doc} but not under heading {section!r}")
    question = row.get("question") or (row.get("turns") or [""])[-1]
    if len(section.split()) > 1 and norm(section) in norm(question):
        warnings.append(f"{where}: question repeats its heading {section!r}")


def check_unanswerable(corpus: Corpus, row: dict, where: str, errors: list[str]) -> None:
    if row.get("section") is not None or row.get("answer_key"):
        errors.append(f"{where}: unanswerable question must have section null and answer_key []")
    terms = row.get("absent_terms")
    if not terms:
        errors.append(f"{where}: unanswerable question without absent_terms")
        return
    for term in terms:
        hits = corpus.term_hits(term)
        if hits:
            errors.append(f"{where}: absent term {term!r} occurs in {', '.join(hits[:3])}")


def read_jsonl(path: Path, errors: list[str]) -> list[dict]:
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except ValueError as err:
            errors.append(f"{path.name}:{number}: not JSON ({err})")
    return rows


def counts(rows: list[dict]) -> dict:
    unanswerable = [r for r in rows if not r.get("document")]
    return {"total": len(rows), "answerable": len(rows) - len(unanswerable), "unanswerable": len(unanswerable),
            "near_topic": sum(1 for r in unanswerable if r.get("near_topic")),
            "documents": len({r["document"] for r in rows if r.get("document")})}


def check_corpus(name: str, build: Path) -> tuple[list[str], list[str]]:
    errors: list[str] = []
    warnings: list[str] = []
    folder = HERE / name
    corpus_dir = build / name
    if not corpus_dir.is_dir():
        return [f"{name}: no corpus at {corpus_dir}; run: python3 {HERE / 'materialize.py'} {name}"], []
    corpus = Corpus(corpus_dir)
    print(f"{name}: corpus {corpus_dir} — {len(corpus.files)} files")
    splits: dict[str, list[dict]] = {}
    for path in sorted(folder.glob("questions_*.jsonl")):
        rows = read_jsonl(path, errors)
        splits[path.stem] = rows
        for number, row in enumerate(rows, 1):
            where = f"{name}/{path.name}:{number}"
            if not isinstance(row.get("question"), str) or not row["question"].strip():
                errors.append(f"{where}: no question")
                continue
            if row.get("document"):
                if "absent_terms" in row:
                    errors.append(f"{where}: answerable question with absent_terms")
                check_answer(corpus, row, where, errors, warnings)
            else:
                check_unanswerable(corpus, row, where, errors)
        c = counts(rows)
        print(f"  {path.name}: {c['total']} questions — {c['answerable']} answerable over {c['documents']} documents, "
              f"{c['unanswerable']} unanswerable ({c['near_topic']} near-topic)")
    all_rows = [r for rows in splits.values() for r in rows]
    seen: dict[str, int] = {}
    for row in all_rows:
        key = norm(row.get("question", ""))
        seen[key] = seen.get(key, 0) + 1
    for question, n in seen.items():
        if n > 1:
            errors.append(f"{name}: question asked {n} times across the splits: {question[:60]!r}")
    if {"questions_dev", "questions_blind"} <= splits.keys():
        dev, blind = counts(splits["questions_dev"]), counts(splits["questions_blind"])
        if abs(dev["total"] - blind["total"]) > 2 or abs(dev["unanswerable"] - blind["unanswerable"]) > 1:
            errors.append(f"{name}: dev/blind split is uneven ({dev} vs {blind})")
    if all_rows:
        c = counts(all_rows)
        print(f"  all: {c['total']} questions — {c['answerable']} answerable over {c['documents']} documents, "
              f"{c['unanswerable']} unanswerable ({c['near_topic']} near-topic)")
    conversations = folder / "conversations.jsonl"
    if conversations.exists():
        rows = read_jsonl(conversations, errors)
        for number, row in enumerate(rows, 1):
            where = f"{name}/conversations.jsonl:{number}"
            turns = row.get("turns")
            if not (isinstance(turns, list) and len(turns) == 2 and all(isinstance(t, str) and t for t in turns)):
                errors.append(f"{where}: turns must be two questions")
                continue
            if not isinstance(row.get("second_is_followup"), bool):
                errors.append(f"{where}: second_is_followup must be true or false")
            if row.get("document"):
                check_answer(corpus, row, where, errors, warnings)
            else:
                check_unanswerable(corpus, row, where, errors)
        followups = sum(1 for r in rows if r.get("second_is_followup") is True)
        print(f"  conversations.jsonl: {len(rows)} two-turn cases — {followups} follow-ups, "
              f"{len(rows) - followups} standalone topic changes")
    return errors, warnings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="check question sets against the materialized corpora")
    parser.add_argument("corpora", nargs="*", help="corpus names (default: every folder here with questions)")
    parser.add_argument("--build", type=Path, default=HERE / "build")
    args = parser.parse_args(argv)
    names = args.corpora or sorted(p.parent.name for p in HERE.glob("*/questions_*.jsonl"))
    names = list(dict.fromkeys(names))
    failures = 0
    for name in names:
        errors, warnings = check_corpus(name, args.build)
        for warning in warnings:
            print(f"  warning: {warning}")
        for error in errors:
            print(f"  ERROR: {error}")
        failures += len(errors)
    print("OK" if not failures else f"{failures} error(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Split a corpus's questions into questions_dev.jsonl and questions_blind.jsonl, seeded and stratified.

    python3 benchmarks/corpora/split.py 18f                      # re-split the current dev + blind files
    python3 benchmarks/corpora/split.py 18f --from all.jsonl     # split a fresh set

The questions are pooled (dev + blind, or --from), sorted by text so the input order does not matter, put in
three strata (answerable, near-topic unanswerable, other unanswerable), each stratum shuffled with
random.Random(SEED) and dealt alternately to dev and blind; so the split is reproducible and the
unanswerable questions are spread evenly. Use dev to tune; report blind numbers only, and never tune on them.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEED = 11  # issue #11


def load(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def split(rows: list[dict], seed: int = SEED) -> tuple[list[dict], list[dict]]:
    rows = sorted({r["question"]: r for r in rows}.values(), key=lambda r: r["question"])
    strata = [
        [r for r in rows if r.get("document")],
        [r for r in rows if not r.get("document") and r.get("near_topic")],
        [r for r in rows if not r.get("document") and not r.get("near_topic")],
    ]
    rng = random.Random(seed)
    dev: list[dict] = []
    blind: list[dict] = []
    for stratum in strata:
        rng.shuffle(stratum)
        for row in stratum:  # deal alternately, starting with whichever half is smaller
            (dev if len(dev) <= len(blind) else blind).append(row)
    return dev, blind


def write(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("corpus")
    parser.add_argument("--from", dest="source", type=Path, help="JSONL with all questions (default: dev + blind)")
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    folder = HERE / args.corpus
    dev_path, blind_path = folder / "questions_dev.jsonl", folder / "questions_blind.jsonl"
    if args.source:
        rows = load(args.source)
    else:
        rows = [r for p in (dev_path, blind_path) if p.exists() for r in load(p)]
    if not rows:
        print(f"no questions for {args.corpus}", file=sys.stderr)
        return 2
    dev, blind = split(rows, args.seed)
    folder.mkdir(parents=True, exist_ok=True)
    write(dev_path, dev)
    write(blind_path, blind)
    for name, part in (("dev", dev), ("blind", blind)):
        unanswerable = [r for r in part if not r.get("document")]
        print(f"{args.corpus} {name}: {len(part)} questions, {len(part) - len(unanswerable)} answerable, "
              f"{len(unanswerable)} unanswerable ({sum(1 for r in unanswerable if r.get('near_topic'))} near-topic)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

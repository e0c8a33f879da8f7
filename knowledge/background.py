"""How close each passage sits to *every* question: its background similarity, and the hubs it reveals.

Some passages are near everything in e5's space: a link-only line ("[Yes: Get travel authorization]()"), a
"Questions? Ask in Slack" footer, a table of links. On a real 185-page handbook such hubs filled top-5 slots
for unrelated questions. The probes — questions no handbook answers — measure it: a passage's mean cosine
similarity to them is its background similarity (one dot product with the probes' mean vector). Retrieval
ranks the corpus's top 10% by background similarity lower, by how far they stand out.

The same probes calibrate the relevance gate (bot/relevance.py): how similar is the best passage for a
question the corpus cannot answer.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
from pgvector.sqlalchemy import Vector
from sqlalchemy import bindparam, text
from sqlalchemy.orm import Session

from knowledge.embeddings import Embedder

PROBES = (
    "What is the capital of Australia?", "How do I bake sourdough bread?", "Who won the football world cup in 2018?",
    "What is the boiling point of water at sea level?", "Recommend a good science fiction novel.",
    "How do I change a car tyre?", "What's the distance from the Earth to the Moon?",
    "Write a haiku about autumn leaves.", "How many legs does a spider have?",
    "What is the best way to learn to play the guitar?", "Explain how photosynthesis works.",
    "What time does the sun set in Iceland in June?", "Which programming language should I learn first?",
    "How do I get red wine out of a carpet?", "What are the rules of chess castling?",
    "Tell me a joke about penguins.", "How tall is Mount Everest?", "What is the plot of Hamlet?",
    "How do I grow tomatoes on a balcony?", "What's a good name for a goldfish?",
)
# Passages above this quantile of background similarity count as hubs.
HUB_QUANTILE = 0.9

_VECTORS: dict[str, list[np.ndarray]] = {}  # per embedding model; the probes never change
_LOCK = threading.Lock()


@dataclass(frozen=True)
class Background:
    direction: list[float]  # mean of the probe vectors: a passage's dot product with it is its background
    hub_cut: float  # background similarity above which a passage is a hub (the corpus's HUB_QUANTILE)

    @classmethod
    def none(cls, dim: int) -> "Background":
        """No correction: every passage's background is 0, below the cut."""
        return cls([0.0] * dim, 1.0)


def probe_vectors(embedder: Embedder) -> list[np.ndarray]:
    with _LOCK:
        if embedder.name not in _VECTORS:
            _VECTORS[embedder.name] = [np.asarray(embedder.embed_query(p), dtype=np.float32) for p in PROBES]
        return _VECTORS[embedder.name]


def direction(embedder: Embedder) -> list[float]:
    """The mean of the probe vectors: a passage's dot product with it is its mean similarity to the probes."""
    return np.mean(probe_vectors(embedder), axis=0).astype(np.float32).tolist()


def measure(session: Session, embedder: Embedder) -> Background:
    """The corpus's background: the probes' direction and its hub cut (one scan of the chunks' vectors)."""
    vector = direction(embedder)
    statement = text(
        "SELECT percentile_cont(:q) WITHIN GROUP (ORDER BY -(embedding <#> :direction)) FROM chunks"
    ).bindparams(bindparam("direction", type_=Vector(len(vector))))
    cut = session.execute(statement, {"q": HUB_QUANTILE, "direction": vector}).scalar()
    return Background(vector, float(cut) if cut is not None else 1.0)

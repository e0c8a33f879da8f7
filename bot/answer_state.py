"""What the answer core reads before each uncached question: the corpus version and the active chat model
(the model registry's read side; the registry itself is bot/finetune/registry.py)."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

_STATE = text(
    "SELECT c.version AS corpus_version, "
    "(SELECT model_id FROM model_versions WHERE status = 'active' LIMIT 1) AS active_model "
    "FROM corpus_state c WHERE c.id = 1"
)


def answer_state(session: Session) -> tuple[int, str | None]:
    """Corpus version and active fine-tuned model (None: use the configured base model), in one round trip."""
    row = session.execute(_STATE).one()
    return int(row.corpus_version), row.active_model

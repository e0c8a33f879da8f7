"""The model registry's write side: fine-tuning jobs, candidate models, promotion and rollback.

Every job and model is a row of `model_versions`:

    training ──► candidate ──► active ──► retired        (promote: the old active model is retired)
        │            ▲            │
        ├► failed    │            └► rolled_back         (rollback: the most recently retired model, or the
        └► cancelled └─ (promote again)                    base model when there is none, becomes current)

`baseline` is the configured base model's row (provider "base"), which only holds its evaluation metrics for
the gate. The answer core reads the active row (`bot.answer_state`, kept in memory until PostgreSQL
notifies a change) and the answer cache keys on it, so a promotion or rollback takes effect on the next
question, without a restart.
At most one row is active (a unique partial index); promotions are serialized by an advisory lock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from bot.records import ModelVersion

TRAINING, FAILED, CANCELLED, CANDIDATE, ACTIVE, RETIRED, ROLLED_BACK, BASELINE = (
    "training", "failed", "cancelled", "candidate", "active", "retired", "rolled_back", "baseline",
)
PROMOTABLE = (CANDIDATE, RETIRED, ROLLED_BACK)
_PROMOTION_LOCK = 7_201_338


class RegistryError(ValueError):
    """A registry operation that cannot be done; the message says why and what to do."""


@dataclass(frozen=True)
class ModelInfo:
    id: int
    model_id: str
    provider: str
    base_model: str | None
    job_id: str | None
    dataset_hash: str | None
    metrics: dict
    status: str
    details: dict
    created_at: datetime | None
    promoted_at: datetime | None

    @classmethod
    def of(cls, row: ModelVersion) -> "ModelInfo":
        return cls(row.id, row.model_id, row.provider, row.base_model, row.job_id, row.dataset_hash,
                   dict(row.metrics or {}), row.status, dict(row.details or {}), row.created_at, row.promoted_at)

    @property
    def label(self) -> str:
        return f"#{self.id} {self.model_id or '(no model yet)'} ({self.provider}, {self.status})"

    def as_json(self) -> dict:
        return {
            "id": self.id, "model_id": self.model_id, "provider": self.provider, "base_model": self.base_model,
            "job_id": self.job_id, "dataset_hash": self.dataset_hash, "metrics": self.metrics, "status": self.status,
            "details": self.details,
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "promoted_at": self.promoted_at.isoformat() if self.promoted_at else None,
        }


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _event(details: dict, event: str, **extra) -> dict:
    details = dict(details or {})
    details["history"] = [*details.get("history", []), {"event": event, "at": _now().isoformat(), **extra}]
    return details


# ------------------------------------------------------------------------------------------------ records


def create(sessions: sessionmaker, *, provider: str, model_id: str = "", base_model: str | None = None,
           job_id: str | None = None, dataset_hash: str | None = None, status: str = TRAINING,
           details: dict | None = None, metrics: dict | None = None) -> ModelInfo:
    with sessions.begin() as session:
        row = ModelVersion(model_id=model_id, provider=provider, base_model=base_model, job_id=job_id,
                           dataset_hash=dataset_hash, status=status, details=_event(details or {}, status),
                           metrics=metrics or {})
        session.add(row)
        session.flush()
        return ModelInfo.of(row)


def update_record(sessions: sessionmaker, version_id: int, *, details: dict | None = None,
                  **fields) -> ModelInfo:
    """Set columns; `details` is merged into the stored details. A status change is added to the history."""
    with sessions.begin() as session:
        row = session.get(ModelVersion, version_id, with_for_update=True)
        if row is None:
            raise RegistryError(f"no model version #{version_id}")
        merged = {**(row.details or {}), **(details or {})}
        if "status" in fields and fields["status"] != row.status:
            merged = _event(merged, fields["status"])
        for name, value in fields.items():
            setattr(row, name, value)
        row.details = merged
        session.flush()
        return ModelInfo.of(row)


def find(sessions: sessionmaker, ref: str | int) -> ModelInfo | None:
    """A model version by registry id (#12 or 12), provider job id, or model id (newest first)."""
    key = str(ref).strip().lstrip("#")
    with sessions() as session:
        if key.isdigit():
            row = session.get(ModelVersion, int(key))
            if row is not None:
                return ModelInfo.of(row)
        for column in (ModelVersion.job_id, ModelVersion.model_id):
            row = session.scalars(select(ModelVersion).where(column == key).order_by(ModelVersion.id.desc())).first()
            if row is not None:
                return ModelInfo.of(row)
    return None


def get(sessions: sessionmaker, ref: str | int) -> ModelInfo:
    found = find(sessions, ref)
    if found is None:
        raise RegistryError(f"no model version or job {ref!r}; see `policybot model list` or `policybot finetune list`")
    return found


def list_versions(sessions: sessionmaker, statuses: tuple[str, ...] | None = None,
                  jobs_only: bool = False) -> list[ModelInfo]:
    query = select(ModelVersion).order_by(ModelVersion.id)
    if statuses:
        query = query.where(ModelVersion.status.in_(statuses))
    if jobs_only:
        query = query.where(ModelVersion.job_id.is_not(None))
    with sessions() as session:
        return [ModelInfo.of(row) for row in session.scalars(query)]


def active(sessions: sessionmaker) -> ModelInfo | None:
    with sessions() as session:
        row = session.scalars(select(ModelVersion).where(ModelVersion.status == ACTIVE)).first()
        return ModelInfo.of(row) if row else None


def baseline(sessions: sessionmaker, base_model: str, create_missing: bool = False) -> ModelInfo | None:
    """The base model's row (metrics only). Created on demand when `create_missing`."""
    with sessions() as session:
        row = session.scalars(
            select(ModelVersion).where(ModelVersion.provider == "base", ModelVersion.model_id == base_model)
            .order_by(ModelVersion.id.desc())
        ).first()
        if row is not None:
            return ModelInfo.of(row)
    if not create_missing:
        return None
    return create(sessions, provider="base", model_id=base_model, base_model=base_model, status=BASELINE)


def set_metrics(sessions: sessionmaker, version_id: int, metrics: dict) -> ModelInfo:
    with sessions.begin() as session:
        row = session.get(ModelVersion, version_id, with_for_update=True)
        if row is None:
            raise RegistryError(f"no model version #{version_id}")
        row.metrics = dict(metrics)
        session.flush()
        return ModelInfo.of(row)


# ------------------------------------------------------------------------------------------------ promotion


def _lock(session: Session) -> None:
    session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PROMOTION_LOCK})


def activate(sessions: sessionmaker, version_id: int, reason: str = "promoted") -> tuple[ModelInfo, ModelInfo | None]:
    """Make a model the active one; the active one (if any) is retired. No gate here: see evaluation.promote.
    Returns (new active, previously active)."""
    with sessions.begin() as session:
        _lock(session)
        target = session.get(ModelVersion, version_id, with_for_update=True)
        if target is None:
            raise RegistryError(f"no model version #{version_id}")
        if target.status == ACTIVE:
            raise RegistryError(f"{ModelInfo.of(target).label} is already active")
        if target.status not in PROMOTABLE:
            raise RegistryError(
                f"{ModelInfo.of(target).label} cannot be promoted: only a {', '.join(PROMOTABLE)} model can "
                + ("(the job is still training; see `policybot finetune status`)" if target.status == TRAINING else "")
            )
        if not target.model_id:
            raise RegistryError(f"model version #{version_id} has no model id to serve")
        previous = session.scalars(select(ModelVersion).where(ModelVersion.status == ACTIVE).with_for_update()).first()
        previous_info = None
        if previous is not None:
            previous.status = RETIRED
            previous.details = _event({**(previous.details or {}), "retired_at": _now().isoformat()}, RETIRED,
                                      replaced_by=target.id)
            session.flush()  # the unique index on the active row is checked per statement
            previous_info = ModelInfo.of(previous)
        target.status = ACTIVE
        target.promoted_at = _now()
        target.details = _event(target.details or {}, ACTIVE, reason=reason,
                                replaced=previous.id if previous is not None else None)
        session.flush()
        return ModelInfo.of(target), previous_info


@dataclass(frozen=True)
class Rollback:
    rolled_back: ModelInfo
    now_active: ModelInfo | None  # None: back to the configured base model


def rollback(sessions: sessionmaker) -> Rollback:
    """Undo the last promotion: the active model becomes rolled_back and the most recently retired model is
    active again; with none retired, the configured base model answers."""
    with sessions.begin() as session:
        _lock(session)
        current = session.scalars(select(ModelVersion).where(ModelVersion.status == ACTIVE).with_for_update()).first()
        if current is None:
            raise RegistryError("no fine-tuned model is active: the base model already answers; nothing to roll back")
        retired = session.scalars(select(ModelVersion).where(ModelVersion.status == RETIRED)).all()
        previous = max(retired, key=lambda r: ((r.details or {}).get("retired_at") or "", r.promoted_at or _now(), r.id),
                       default=None)
        current.status = ROLLED_BACK
        current.details = _event(current.details or {}, ROLLED_BACK,
                                 back_to=previous.id if previous is not None else "base")
        session.flush()
        if previous is not None:
            previous.status = ACTIVE
            previous.promoted_at = _now()
            previous.details = _event(previous.details or {}, ACTIVE, reason="rollback", replaced=current.id)
            session.flush()
        return Rollback(ModelInfo.of(current), ModelInfo.of(previous) if previous is not None else None)


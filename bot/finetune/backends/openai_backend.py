"""An OpenAI-compatible fine-tuning API: OpenAI itself, Azure OpenAI (its v1 endpoint, via OPENAI_BASE_URL), or
any server that implements /files and /fine_tuning/jobs.

start: upload train.jsonl (and validation.jsonl) with purpose "fine-tune", create the job with
method {"type": "supervised" | "dpo"}, record it (status training). status: retrieve the job and its recent
events; on success the fine-tuned model id becomes a candidate model version, on failure the error is kept.
"""

from __future__ import annotations

from pathlib import Path

from bot.finetune import formats, registry
from bot.finetune.registry import ModelInfo
from bot.finetune.validate import validate_file

PROVIDER = "openai"
EVENTS_KEPT = 20


class FineTuneError(RuntimeError):
    pass


def _status_of(provider_status: str) -> str:
    if provider_status == "succeeded":
        return registry.CANDIDATE
    if provider_status == "failed":
        return registry.FAILED
    if provider_status == "cancelled":
        return registry.CANCELLED
    return registry.TRAINING


class OpenAIBackend:
    name = PROVIDER

    def __init__(self, sessions, client) -> None:
        self.sessions = sessions
        self.client = client

    @classmethod
    def from_runtime(cls, runtime) -> "OpenAIBackend":
        from bot.runtime import make_openai_client

        if not runtime.settings.openai_api_key:
            raise FineTuneError("the openai backend needs OPENAI_API_KEY (and OPENAI_BASE_URL for Azure OpenAI or "
                                "another OpenAI-compatible fine-tuning API)")
        # Uploads and job calls can take longer than a chat completion.
        return cls(runtime.sessions, make_openai_client(runtime.settings, timeout=120.0))

    # ------------------------------------------------------------------------------------------ interface

    def start(self, dataset_dir: Path, kind: str | None, base_model: str, suffix: str | None = None, *,
              epochs: int | None = None, learning_rate_multiplier: float | None = None,
              batch_size: int | None = None, beta: float | None = None, seed: int | None = None,
              **_ignored) -> ModelInfo:
        dataset_dir = Path(dataset_dir)
        manifest = formats.read_manifest(dataset_dir)
        kind = kind or manifest.get("kind")
        if manifest.get("kind") != kind:
            raise FineTuneError(f"{dataset_dir} holds a {manifest.get('kind')} dataset, not {kind}")
        train_path = dataset_dir / formats.TRAIN_FILE
        validation_path = dataset_dir / formats.VALIDATION_FILE
        for path in (train_path, validation_path):
            if path.exists() and path.stat().st_size:
                report = validate_file(path, kind=kind)
                if not report.ok:
                    raise FineTuneError(f"{path} is not a valid {kind} file: " + "; ".join(report.errors[:5]))

        with train_path.open("rb") as handle:
            training_file = self.client.files.create(file=(train_path.name, handle), purpose="fine-tune")
        validation_file = None
        if validation_path.exists() and validation_path.stat().st_size:
            with validation_path.open("rb") as handle:
                validation_file = self.client.files.create(file=(validation_path.name, handle), purpose="fine-tune")

        hyperparameters = {k: v for k, v in {
            "n_epochs": epochs, "learning_rate_multiplier": learning_rate_multiplier, "batch_size": batch_size,
            **({"beta": beta} if kind == "dpo" else {}),
        }.items() if v is not None}
        method_type = "supervised" if kind == "sft" else "dpo"
        method = {"type": method_type, method_type: {"hyperparameters": hyperparameters}}
        options = {"method": method}
        if validation_file is not None:
            options["validation_file"] = validation_file.id
        if suffix:
            options["suffix"] = suffix
        if seed is not None:
            options["seed"] = seed
        job = self.client.fine_tuning.jobs.create(model=base_model, training_file=training_file.id, **options)
        record = registry.create(
            self.sessions, provider=PROVIDER, base_model=base_model, job_id=job.id,
            dataset_hash=manifest.get("dataset_hash"), status=registry.TRAINING,
            details={
                "kind": kind, "suffix": suffix, "dataset_dir": str(dataset_dir), "method": method,
                "training_file": training_file.id,
                "validation_file": validation_file.id if validation_file is not None else None,
                "provider_status": job.status, "prompt_version": manifest.get("prompt_version"),
                "examples": {"train": manifest.get("train"), "validation": manifest.get("validation")},
            },
        )
        return self._apply(record, job)

    def status(self, job: ModelInfo) -> ModelInfo:
        remote = self.client.fine_tuning.jobs.retrieve(job.job_id)
        try:
            page = self.client.fine_tuning.jobs.list_events(job.job_id, limit=EVENTS_KEPT)
            events = list(page.data)
        except Exception:  # events are a nicety; the job status is what matters
            events = None
        return self._apply(job, remote, events)

    def cancel(self, job: ModelInfo) -> ModelInfo:
        if job.status != registry.TRAINING:
            raise FineTuneError(f"{job.label} is not running; nothing to cancel")
        return self._apply(job, self.client.fine_tuning.jobs.cancel(job.job_id))

    def list(self, limit: int = 20) -> list[dict]:
        page = self.client.fine_tuning.jobs.list(limit=limit)
        return [{"job_id": j.id, "model": j.model, "status": j.status, "fine_tuned_model": j.fine_tuned_model,
                 "created_at": j.created_at} for j in page.data]

    # ------------------------------------------------------------------------------------------ records

    def _apply(self, record: ModelInfo, job, events=None) -> ModelInfo:
        details: dict = {"provider_status": job.status}
        if getattr(job, "trained_tokens", None) is not None:
            details["trained_tokens"] = job.trained_tokens
        if getattr(job, "result_files", None):
            details["result_files"] = list(job.result_files)
        if getattr(job, "estimated_finish", None):
            details["estimated_finish"] = job.estimated_finish
        error = getattr(job, "error", None)
        if error is not None and (getattr(error, "message", None) or getattr(error, "code", None)):
            details["error"] = {"code": getattr(error, "code", None), "message": getattr(error, "message", None),
                                "param": getattr(error, "param", None)}
        if events is not None:
            # the API lists newest first; oldest first here (ties keep the API's order, reversed)
            ordered = sorted(reversed(events), key=lambda e: e.created_at)
            details["events"] = [{"at": e.created_at, "level": e.level, "message": e.message}
                                 for e in ordered][-EVENTS_KEPT:]
        fields: dict = {}
        if record.status == registry.TRAINING:  # a promoted or retired model keeps its registry status
            new_status = _status_of(job.status)
            if new_status != record.status:
                fields["status"] = new_status
            if new_status == registry.CANDIDATE:
                if not job.fine_tuned_model:
                    fields.pop("status")  # succeeded without a model id yet: poll again
                else:
                    fields["model_id"] = job.fine_tuned_model
        return registry.update_record(self.sessions, record.id, details=details, **fields)

"""Training backends behind one interface.

    backend.start(dataset_dir, kind, base_model, suffix, **options) -> ModelInfo   (the job's registry row)
    backend.status(job) -> ModelInfo     (polls the provider; a finished job becomes a candidate model)
    backend.cancel(job) -> ModelInfo
    backend.list() -> list[dict]         (the provider's own view of its jobs)

Every job is a `model_versions` row (status training / failed / cancelled / candidate) with the provider's job
id, the dataset hash and, in `details`, the provider status, recent events and what is needed to serve it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from bot.finetune.registry import ModelInfo

BACKENDS = ("openai", "local")


class Backend(Protocol):
    name: str

    def start(self, dataset_dir: Path, kind: str, base_model: str, suffix: str | None = None,
              **options) -> ModelInfo: ...

    def status(self, job: ModelInfo) -> ModelInfo: ...

    def cancel(self, job: ModelInfo) -> ModelInfo: ...

    def list(self) -> list[dict]: ...


def get_backend(name: str, runtime) -> Backend:
    if name == "openai":
        from bot.finetune.backends.openai_backend import OpenAIBackend

        return OpenAIBackend.from_runtime(runtime)
    if name == "local":
        from bot.finetune.backends.local_backend import LocalBackend

        return LocalBackend(runtime.sessions, runtime.settings.home / "finetune")
    raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")


def backend_for(job: ModelInfo, runtime) -> Backend:
    """The backend that ran a recorded job."""
    return get_backend(job.provider, runtime)

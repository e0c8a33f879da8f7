"""The files and fine-tuning jobs endpoints of an OpenAI-compatible API, added to `FakeOpenAI` through its
`routes`. The real `openai` client talks to them over HTTP.

    POST /files (multipart)            POST /fine_tuning/jobs             GET /fine_tuning/jobs
    GET /fine_tuning/jobs/{id}         GET /fine_tuning/jobs/{id}/events  POST /fine_tuning/jobs/{id}/cancel

A job advances one step each time it is retrieved: validating_files -> running -> succeeded (with a
fine_tuned_model id), or validating_files -> failed (with an error) when the test queued a failure with
`finetuning.fail_next(...)`.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP


@dataclass
class FineTuningState:
    files: dict[str, dict] = field(default_factory=dict)
    jobs: dict[str, dict] = field(default_factory=dict)
    events: dict[str, list[dict]] = field(default_factory=dict)
    plans: dict[str, deque] = field(default_factory=dict)
    failures: deque = field(default_factory=deque)  # queued error dicts for the next jobs
    lock: threading.Lock = field(default_factory=threading.Lock)
    _counter: int = 0

    def fail_next(self, message: str = "Training file has too few valid examples", code: str = "invalid_training_file"):
        self.failures.append({"code": code, "message": message, "param": "training_file"})

    def _id(self, prefix: str) -> str:
        self._counter += 1
        return f"{prefix}-{self._counter:04d}"

    def _event(self, job_id: str, message: str, level: str = "info") -> None:
        self.events.setdefault(job_id, []).append({
            "object": "fine_tuning.job.event", "id": self._id("ftevent"), "created_at": int(time.time()),
            "level": level, "message": message, "type": "message", "data": {},
        })


def _error(status: int, message: str, kind: str = "invalid_request_error"):
    return status, {"error": {"message": message, "type": kind, "param": None, "code": None}}


def _multipart(handler, raw: bytes) -> dict:
    """Fields of a multipart/form-data body: name -> (filename, bytes) for files, name -> str otherwise."""
    content_type = handler.headers.get("Content-Type", "")
    message = BytesParser(policy=HTTP).parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + raw)
    fields: dict = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True) or b""
        filename = part.get_filename()
        fields[name] = (filename, payload) if filename else payload.decode()
    return fields


def add_finetuning_routes(fake) -> FineTuningState:
    state = FineTuningState()

    def upload(fake, handler, raw):
        fields = _multipart(handler, raw)
        if "file" not in fields or not isinstance(fields["file"], tuple):
            return _error(400, "'file' is required")
        purpose = fields.get("purpose")
        if purpose not in ("fine-tune", "batch", "assistants", "vision", "user_data", "evals"):
            return _error(400, f"invalid purpose {purpose!r}")
        filename, content = fields["file"]
        with state.lock:
            file_id = state._id("file")
            state.files[file_id] = {"id": file_id, "object": "file", "bytes": len(content), "created_at": int(time.time()),
                                    "filename": filename, "purpose": purpose, "status": "processed",
                                    "content": content}
        body = {k: v for k, v in state.files[file_id].items() if k != "content"}
        return 200, body

    def create_job(fake, handler, raw):
        body = json.loads(raw or b"{}")
        for name in ("model", "training_file"):
            if not body.get(name):
                return _error(400, f"'{name}' is required")
        if body["training_file"] not in state.files:
            return _error(400, f"file {body['training_file']} not found")
        if body.get("validation_file") and body["validation_file"] not in state.files:
            return _error(400, f"file {body['validation_file']} not found")
        method = body.get("method") or {"type": "supervised", "supervised": {}}
        if method.get("type") not in ("supervised", "dpo"):
            return _error(400, f"unsupported method {method.get('type')!r}")
        with state.lock:
            job_id = state._id("ftjob")
            failure = state.failures.popleft() if state.failures else None
            suffix = body.get("suffix") or "policybot"
            state.jobs[job_id] = {
                "object": "fine_tuning.job", "id": job_id, "model": body["model"], "created_at": int(time.time()),
                "finished_at": None, "fine_tuned_model": None, "organization_id": "org-test", "result_files": [],
                "status": "validating_files", "validation_file": body.get("validation_file"),
                "training_file": body["training_file"], "hyperparameters": {}, "trained_tokens": None,
                "error": None, "seed": body.get("seed") or 42, "method": method, "suffix": suffix,
                "estimated_finish": None, "integrations": [], "metadata": body.get("metadata"),
            }
            if failure:
                state.plans[job_id] = deque([("failed", failure)])
            else:
                state.plans[job_id] = deque([("running", None), ("succeeded", None)])
            state._event(job_id, f"Validating training file: {body['training_file']}")
        return 200, state.jobs[job_id]

    def _advance(job: dict) -> None:
        plan = state.plans.get(job["id"])
        if job["status"] in ("succeeded", "failed", "cancelled") or not plan:
            return
        status, error = plan.popleft()
        job["status"] = status
        if status == "running":
            state._event(job["id"], "Fine-tuning job started")
        elif status == "succeeded":
            job["fine_tuned_model"] = f"ft:{job['model']}:org-test:{job['suffix']}:{job['id'][-4:]}"
            job["finished_at"] = int(time.time())
            job["trained_tokens"] = 1234
            job["result_files"] = ["file-results"]
            state._event(job["id"], f"New fine-tuned model created: {job['fine_tuned_model']}")
            state._event(job["id"], "The job has successfully completed")
        elif status == "failed":
            job["error"] = error
            job["finished_at"] = int(time.time())
            state._event(job["id"], f"Training file validation failed: {error['message']}", level="error")

    def retrieve(fake, handler, raw):
        job_id = handler.path.split("?")[0].rstrip("/").split("/")[-1]
        with state.lock:
            job = state.jobs.get(job_id)
            if job is None:
                return _error(404, f"fine-tuning job {job_id} not found")
            _advance(job)
            return 200, dict(job)

    def events(fake, handler, raw):
        job_id = handler.path.split("?")[0].rstrip("/").split("/")[-2]
        with state.lock:
            if job_id not in state.jobs:
                return _error(404, f"fine-tuning job {job_id} not found")
            data = list(reversed(state.events.get(job_id, [])))  # newest first, like the real API
        return 200, {"object": "list", "data": data, "has_more": False}

    def cancel(fake, handler, raw):
        job_id = handler.path.split("?")[0].rstrip("/").split("/")[-2]
        with state.lock:
            job = state.jobs.get(job_id)
            if job is None:
                return _error(404, f"fine-tuning job {job_id} not found")
            if job["status"] in ("succeeded", "failed", "cancelled"):
                return _error(400, f"job {job_id} has already finished")
            job["status"] = "cancelled"
            job["finished_at"] = int(time.time())
            state._event(job_id, "Fine-tuning job cancelled")
            return 200, dict(job)

    def list_jobs(fake, handler, raw):
        with state.lock:
            data = sorted(state.jobs.values(), key=lambda j: j["id"], reverse=True)
        return 200, {"object": "list", "data": data, "has_more": False}

    job = r"/fine_tuning/jobs/[\w-]+"
    fake.routes[("POST", "/files")] = upload
    fake.routes[("POST", "/fine_tuning/jobs")] = create_job
    fake.routes[("GET", "/fine_tuning/jobs")] = list_jobs
    fake.routes[("GET", job)] = retrieve
    fake.routes[("GET", job + "/events")] = events
    fake.routes[("POST", job + "/cancel")] = cancel
    return state

"""The OpenAI-compatible fine-tuning backend against the local server (files + fine-tuning jobs endpoints),
through the real openai client."""

import json

import pytest

from adapters.cli import main
from bot.finetune import formats, registry
from bot.finetune.backends.openai_backend import FineTuneError, OpenAIBackend
from bot.prompt import PromptSource, build_messages
from bot.runtime import make_openai_client
from tests.fakes.openai_finetuning import add_finetuning_routes


def make_dataset(folder, kind="sft", count=12):
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    for n in range(count):
        prompt = build_messages(f"Question {n}?", [PromptSource("Leave Policy", "Vacation", f"Fact number {n}.")],
                                "Warm and plain.", "HR")
        records.append(formats.sft_record(prompt, f"Fact number {n} [1].") if kind == "sft"
                       else formats.dpo_record(prompt, f"Fact number {n} [1].", "No idea."))
    formats.write_jsonl(folder / formats.TRAIN_FILE, records[:-2])
    formats.write_jsonl(folder / formats.VALIDATION_FILE, records[-2:])
    (folder / formats.MANIFEST_FILE).write_text(json.dumps(
        {"kind": kind, "dataset_hash": "ab" * 32, "prompt_version": "answer-v1", "train": count - 2, "validation": 2}))
    return folder


@pytest.fixture
def finetuning(fake_openai):
    return add_finetuning_routes(fake_openai)


@pytest.fixture
def backend(runtime, fake_openai, finetuning):
    settings = runtime.settings.model_copy(update={"openai_api_key": "k", "openai_base_url": fake_openai.base_url,
                                                   "llm_max_retries": 0})
    return OpenAIBackend(runtime.sessions, make_openai_client(settings))


def test_job_lifecycle_to_a_candidate_model(backend, runtime, fake_openai, finetuning, tmp_path):
    dataset = make_dataset(tmp_path / "sft")
    job = backend.start(dataset, "sft", "gpt-4.1-mini-2025-04-14", "brand", epochs=2)
    assert job.status == "training" and job.provider == "openai" and job.job_id.startswith("ftjob-")
    assert job.details["provider_status"] == "validating_files" and job.dataset_hash == "ab" * 32

    # what reached the server: two multipart uploads, then the job with the method and both files
    uploads = [r for r in fake_openai.requests if r["path"] == "/files"]
    assert len(uploads) == 2 and b'name="purpose"' in uploads[0]["raw"] and b"fine-tune" in uploads[0]["raw"]
    assert {f["filename"] for f in finetuning.files.values()} == {"train.jsonl", "validation.jsonl"}
    train_file = next(f for f in finetuning.files.values() if f["filename"] == "train.jsonl")
    assert train_file["content"] == (dataset / "train.jsonl").read_bytes()
    created = next(r["json"] for r in fake_openai.requests if r["path"] == "/fine_tuning/jobs" and r["method"] == "POST")
    assert created["method"] == {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2}}}
    assert created["suffix"] == "brand" and created["validation_file"] and created["model"] == "gpt-4.1-mini-2025-04-14"

    job = backend.status(job)  # one step per poll
    assert job.status == "training" and job.details["provider_status"] == "running"
    assert [e["message"] for e in job.details["events"]][-1] == "Fine-tuning job started"
    job = backend.status(job)
    assert job.status == "candidate" and job.details["provider_status"] == "succeeded"
    assert job.model_id.startswith("ft:gpt-4.1-mini-2025-04-14:org-test:brand:")
    assert job.details["trained_tokens"] == 1234
    assert "successfully completed" in job.details["events"][-1]["message"]
    assert [h["event"] for h in job.details["history"]] == ["training", "candidate"]

    # polling a finished job changes nothing; the registry finds it by job id or model id
    assert backend.status(job).status == "candidate"
    assert registry.get(runtime.sessions, job.job_id).id == job.id
    assert registry.get(runtime.sessions, job.model_id).id == job.id
    assert [j["job_id"] for j in backend.list()] == [job.job_id]


def test_failed_job_keeps_the_error(backend, finetuning, tmp_path):
    finetuning.fail_next("Training file has 3 examples with no assistant message")
    job = backend.start(make_dataset(tmp_path / "dpo", "dpo"), "dpo", "gpt-4.1-mini", None, beta=0.2)
    job = backend.status(job)
    assert job.status == "failed" and not job.model_id
    assert job.details["error"]["code"] == "invalid_training_file"
    assert "no assistant message" in job.details["error"]["message"]
    assert job.details["events"][-1]["level"] == "error"
    assert job.details["method"] == {"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.2}}}


def test_cancel_a_running_job(backend, tmp_path):
    job = backend.start(make_dataset(tmp_path / "sft"), "sft", "gpt-4.1-mini", None)
    job = backend.cancel(job)
    assert job.status == "cancelled"
    with pytest.raises(FineTuneError, match="not running"):
        backend.cancel(job)


def test_invalid_dataset_is_refused_before_upload(backend, fake_openai, tmp_path):
    dataset = make_dataset(tmp_path / "sft")
    with (dataset / "train.jsonl").open("a") as f:
        f.write('{"messages": [{"role": "user", "content": "no answer"}]}\n')
    with pytest.raises(FineTuneError, match="missing role 'assistant'"):
        backend.start(dataset, "sft", "gpt-4.1-mini", None)
    assert not [r for r in fake_openai.requests if r["path"] == "/files"]


def test_cli_start_status_list_cancel(runtime, settings, fake_openai, finetuning, monkeypatch, tmp_path, capsys):
    for name, value in (("DATABASE_URL", settings.database_url), ("REDIS_URL", settings.redis_url),
                        ("POLICYBOT_HOME", str(settings.home)), ("OPENAI_API_KEY", "k"),
                        ("OPENAI_BASE_URL", fake_openai.base_url)):
        monkeypatch.setenv(name, value)
    dataset = make_dataset(tmp_path / "sft")
    assert main(["finetune", "start", "--backend", "openai", "--dataset", str(dataset), "--base-model",
                 "gpt-4.1-mini", "--suffix", "hr", "--json"]) == 0
    job = json.loads(capsys.readouterr().out)
    assert job["status"] == "training"
    assert main(["finetune", "status", job["job_id"], "--wait", "--interval", "0", "--json"]) == 0
    done = json.loads(capsys.readouterr().out)
    assert done["status"] == "candidate" and done["model_id"].startswith("ft:gpt-4.1-mini:org-test:hr:")
    assert main(["finetune", "list"]) == 0
    assert "candidate" in capsys.readouterr().out
    assert main(["finetune", "list", "--remote", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["jobs"][0]["status"] == "succeeded"
    assert main(["finetune", "cancel", str(done["id"])]) == 1
    assert "not running" in capsys.readouterr().err

"""The local backend: real TRL (SFT, DPO) + PEFT LoRA training of a tiny causal LM the test builds itself (random
weights, a word-level tokenizer trained on the test's text, a chat template; no download), then the adapter is
loaded back with peft and generates. Skipped only when the train extra (torch, transformers, trl, peft) is
not installed."""

import json
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("trl")
pytest.importorskip("peft")
pytest.importorskip("datasets")
pytest.importorskip("tokenizers")

from adapters.cli import main  # noqa: E402
from bot.finetune import formats, registry  # noqa: E402
from bot.finetune.backends.local_backend import LocalBackend, LocalTrainingError  # noqa: E402
from bot.prompt import PromptSource, build_messages, default_brand_voice  # noqa: E402

CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
SPECIAL = ["<pad>", "<unk>", "<s>", "</s>", "<|system|>", "<|user|>", "<|assistant|>"]
FACTS = [
    ("How many vacation days do I get?", "Full-time employees receive 25 days of paid vacation per year.",
     "You get 25 days of paid vacation a year [1]."),
    ("When do I report sick?", "Tell your manager before 10:00 on the first day of illness.",
     "Tell your manager before 10:00 on your first sick day [1]."),
    ("Can I expense a coworking desk?", "Coworking desks are reimbursed up to 250 EUR per month.",
     "Yes, up to 250 EUR a month [1]."),
    ("What is the client meal limit?", "Client meals are reimbursed up to 60 EUR per person.",
     "Up to 60 EUR per person [1]."),
    ("Do I need a doctor's note?", "A doctor's note is needed from the fourth day of absence.",
     "Yes, from your fourth day off sick [1]."),
    ("Can I carry over vacation?", "Unused vacation can be carried over until March 31.",
     "Yes, until March 31 of the next year [1]."),
]
REJECTED = "I am not sure, maybe ask someone."


def _prompt(question, passage):
    return build_messages(question, [PromptSource("Handbook", "Policy", passage)], default_brand_voice(),
                          "the People team (hr@example.com)")


def _dataset(folder, kind):
    records = [formats.sft_record(_prompt(q, p), a) if kind == "sft" else formats.dpo_record(_prompt(q, p), a, REJECTED)
               for q, p, a in FACTS]
    folder.mkdir(parents=True)
    formats.write_jsonl(folder / formats.TRAIN_FILE, records[:4])
    formats.write_jsonl(folder / formats.VALIDATION_FILE, records[4:5])
    (folder / formats.MANIFEST_FILE).write_text(json.dumps(
        {"kind": kind, "dataset_hash": kind * 16, "prompt_version": "answer-v1", "train": 4, "validation": 1}))
    return folder


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A 2-layer Llama with random weights and a word-level tokenizer over the examples' own text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    texts = [m["content"] for q, p, a in FACTS for m in _prompt(q, p)] + [a for _, _, a in FACTS] + [REJECTED]
    core = Tokenizer(models.WordLevel(unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    core.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=SPECIAL))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", unk_token="<unk>",
                                        bos_token="<s>", eos_token="</s>")
    tokenizer.chat_template = CHAT_TEMPLATE
    folder = tmp_path_factory.mktemp("tiny-llama")
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=1024,
                         pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id)
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


def _generate(base, adapter_dir, messages):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(adapter_dir)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), adapter_dir)
    inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                           return_dict=True)
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=4, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    return output[0][inputs["input_ids"].shape[1]:]


def test_sft_lora_through_the_cli(runtime, settings, tiny_model, monkeypatch, tmp_path, capsys):
    for name, value in (("DATABASE_URL", settings.database_url), ("REDIS_URL", settings.redis_url),
                        ("POLICYBOT_HOME", str(settings.home))):
        monkeypatch.setenv(name, value)
    dataset = _dataset(tmp_path / "sft", "sft")
    out = tmp_path / "run"
    code = main(["finetune", "start", "--backend", "local", "--dataset", str(dataset), "--base-model", str(tiny_model),
                 "--suffix", "brand", "--max-steps", "3", "--batch-size", "2", "--lora-r", "4", "--lora-alpha", "8",
                 "--max-length", "1024", "--output", str(out), "--merge", "--json"])
    job = json.loads(capsys.readouterr().out)
    assert code == 0, job
    assert job["status"] == "candidate" and job["provider"] == "local" and job["model_id"].startswith("brand-")
    assert job["dataset_hash"] == "sft" * 16
    details = job["details"]
    assert (out / "adapter" / "adapter_config.json").exists() and (out / "merged" / "config.json").exists()
    assert details["training_metrics"]["train_loss"] > 0 and "eval_loss" in details["training_metrics"]
    serving = (out / "SERVING.md").read_text()
    assert f"--lora-modules {job['model_id']}={out.resolve() / 'adapter'}" in serving
    assert "--enable-lora" in details["serving"]["lora_command"]
    assert details["serving"]["merged_command"].endswith(f"--served-model-name {job['model_id']}")
    assert f"--alias {job['model_id']}" in serving and "transformers serve" in serving
    options = details["options"]  # sized for this (CPU) machine, the given options kept
    assert options["gradient_checkpointing"] and options["precision"] == "fp32"
    assert (options["lora_r"], options["max_length"], options["batch_size"]) == (4, 1024, 2)
    assert options["gradient_accumulation"] == 8
    assert registry.get(runtime.sessions, job["model_id"]).status == "candidate"

    adapter_config = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert adapter_config["r"] == 4 and adapter_config["peft_type"] == "LORA"
    new_tokens = _generate(tiny_model, out / "adapter", _prompt(*FACTS[0][:2]))
    assert 1 <= len(new_tokens) <= 4


def test_dpo_lora(runtime, tiny_model, tmp_path):
    backend = LocalBackend(runtime.sessions, tmp_path / "work")
    job = backend.start(_dataset(tmp_path / "dpo", "dpo"), "dpo", str(tiny_model), "pref", max_steps=1,
                        gradient_accumulation=2, lora_r=4, lora_alpha=8, beta=0.1)
    assert job.status == "candidate", job.details.get("error")
    # the max length comes from the data: the longest row with its longer answer, rounded up to 64
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    longest = max(len(tokenizer.apply_chat_template(_prompt(q, p) + [{"role": "assistant", "content": a}],
                                                    tokenize=True, return_dict=True)["input_ids"])
                  for q, p, a in FACTS[:5])
    options = job.details["options"]
    assert options["max_length"] == -(-longest // 64) * 64 and options["batch_size"] == 1
    metrics = job.details["training_metrics"]
    assert "train_loss" in metrics and "eval_rewards/margins" in metrics
    adapter = job.details["adapter_dir"]
    assert adapter.startswith(str(tmp_path / "work" / job.job_id))
    assert len(_generate(tiny_model, adapter, _prompt(*FACTS[1][:2]))) >= 1
    assert backend.status(job).status == "candidate"
    assert [j["job_id"] for j in backend.list()] == [job.job_id]


def test_local_failures_are_clear(runtime, tiny_model, tmp_path):
    backend = LocalBackend(runtime.sessions, tmp_path / "work")
    with pytest.raises(LocalTrainingError, match="not a local folder"):
        backend.start(_dataset(tmp_path / "a", "sft"), "sft", "Qwen/Qwen2.5-0.5B-Instruct", None)
    with pytest.raises(LocalTrainingError, match="--served-name path needs --merge"):
        backend.start(tmp_path / "a", "sft", str(tiny_model), None, served_name="path")
    with pytest.raises(LocalTrainingError, match="holds a sft dataset, not dpo"):
        backend.start(tmp_path / "a", "dpo", str(tiny_model), None)
    # a failure inside training is recorded on the job, with the error
    broken = _dataset(tmp_path / "b", "sft")
    (broken / formats.TRAIN_FILE).write_text("")
    job = backend.start(broken, "sft", str(tiny_model), None)
    assert job.status == "failed" and "has no examples" in job.details["error"]["message"]


def test_options_are_sized_for_the_hardware():
    from bot.finetune.backends.local_backend import LocalOptions, resolve_options

    gpu = resolve_options(LocalOptions(), cuda=True, bf16_supported=True, longest=700, model_limit=2048)
    assert (gpu.precision, gpu.lora_r, gpu.batch_size, gpu.max_length) == ("bf16", 16, 4, 704)
    old_gpu = resolve_options(LocalOptions(lora_r=32), cuda=True, bf16_supported=False, longest=5000, model_limit=2048)
    assert (old_gpu.precision, old_gpu.lora_r, old_gpu.max_length) == ("fp16", 32, 2048)
    cpu = resolve_options(LocalOptions(max_length=512), cuda=False, bf16_supported=False, longest=900, model_limit=None)
    assert (cpu.precision, cpu.lora_r, cpu.batch_size, cpu.gradient_accumulation, cpu.max_length) == (
        "fp32", 8, 1, 8, 512)


def test_serving_by_path(tmp_path):
    from bot.finetune.backends.local_backend import LocalOptions, write_serving_instructions

    merged = str(tmp_path / "merged")
    result = {"adapter_dir": str(tmp_path / "adapter"), "merged_dir": merged}
    serving = write_serving_instructions(tmp_path, merged, "/models/base", result, "sft", LocalOptions(lora_r=8))
    text = (tmp_path / "SERVING.md").read_text()
    assert serving["served_name"] == merged and "registered under that path" in text
    named = write_serving_instructions(tmp_path, "brand-1", "/models/base", result, "sft", LocalOptions(lora_r=8))
    text = (tmp_path / "SERVING.md").read_text()
    assert "--served-name path" in text and named["llama_cpp_command"].endswith("--alias brand-1 --port 8000")


HANDBOOK = "# Handbook\n\n" + "\n\n".join(f"## Policy {i}\n{passage}" for i, (_, passage, _) in enumerate(FACTS, 1)) + "\n"


def _served_by(model_dir, served_name):
    """A chat handler for the local OpenAI-compatible server: `served_name` is generated by the real model in
    `model_dir` (greedy, up to the request's max_tokens, finish_reason "length" when cut off), like a server that
    loads it; any other model name answers like the default fake (a capable base model that cites)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tests.fakes.openai_server import _chat, _completion

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()

    def handler(fake, http, raw):
        body = json.loads(raw)
        if body["model"] != served_name:
            return _chat(fake, http, raw)
        inputs = tokenizer.apply_chat_template(body["messages"], add_generation_prompt=True, return_tensors="pt",
                                               return_dict=True)
        limit = int(body.get("max_tokens") or 16)
        with torch.no_grad():
            output = model.generate(**inputs, max_new_tokens=limit, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        new = output[0][inputs["input_ids"].shape[1]:]
        finished = len(new) < limit or (len(new) and int(new[-1]) == tokenizer.eos_token_id)
        return 200, _completion(body, tokenizer.decode(new, skip_special_tokens=True), "stop" if finished else "length")

    return handler


def test_the_loop_on_a_real_tiny_model_the_gate_refuses_what_never_cites(runtime, settings, embedder, tiny_model,
                                                                        fake_openai, tmp_path):
    """finetune start (merged) → served → eval answers → model promote: the real model's replies are measured,
    not the extractive answers standing in for them, and the gate refuses a model that never cites."""
    from bot.finetune.evaluation import evaluate_model, promote, resolve_model
    from bot.runtime import build_runtime
    from knowledge.evaluation import load_questions
    from knowledge.ingest import ingest_file

    job = LocalBackend(runtime.sessions, tmp_path / "work").start(
        _dataset(tmp_path / "sft", "sft"), "sft", str(tiny_model), "brand", max_steps=1, lora_r=4, lora_alpha=8,
        merge=True)
    assert job.status == "candidate", job.details.get("error")
    fake_openai.routes[("POST", "/chat/completions")] = _served_by(job.details["merged_dir"], job.model_id)
    llm = build_runtime(settings.model_copy(update={
        "openai_api_key": "x", "openai_base_url": fake_openai.base_url, "chat_model": "base-model",
        "llm_max_tokens": 16, "llm_max_retries": 0, "llm_timeout_s": 20}))
    llm.embedder = embedder
    try:
        (tmp_path / "handbook.md").write_text(HANDBOOK)
        ingest_file(llm.sessions, embedder, tmp_path / "handbook.md")
        questions = tmp_path / "questions.jsonl"
        questions.write_text("\n".join(json.dumps({"question": q, "document": "handbook.md"}) for q, _, _ in FACTS[:3]))
        base = evaluate_model(llm, resolve_model(llm, "base"), load_questions(questions))
        assert base.model == "base-model" and base.metrics["grounded_rate"] == 1.0

        outcome = promote(llm, str(job.id), questions_path=questions)
        metrics = registry.get(llm.sessions, job.id).metrics
        served = [r for r in fake_openai.chat_requests() if r["model"] == job.model_id]
        assert len(served) == 3 and all(r["max_tokens"] == 16 for r in served)  # the real model answered each
        assert metrics["model"] == job.model_id and metrics["model_replies"] == 3
        assert metrics["grounded_rate"] == 0.0 and metrics["fallbacks"] == 3 and metrics["citation_validity"] is None
        assert set(metrics["fallback_reasons"]) <= {"truncated", "no_citation", "repetition", "empty"}
        assert not outcome.promoted and "grounded_rate dropped from 1.000 to 0.000" in outcome.message
        assert registry.active(llm.sessions) is None
    finally:
        llm.close()

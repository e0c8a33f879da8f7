"""Local LoRA fine-tuning with TRL + PEFT on a Hugging Face causal LM from a local folder.

`start` trains in this process, synchronously (fine for the few hundred to few thousand examples feedback
gives), saves the LoRA adapter (and, with merge=True, a merged full model), writes SERVING.md on how to serve
it from an OpenAI-compatible server, and records a candidate model version whose model id is the name the
server will serve it under.

    sft: TRL SFTTrainer on conversational prompt-completion rows (loss on the answer only)
    dpo: TRL DPOTrainer on conversational prompt / chosen / rejected rows (reference = the base model, i.e.
         the adapter disabled)

Sized to fit: gradient checkpointing on, bf16 where the GPU has it (fp16 on an older GPU, fp32 on a CPU), the
max length from the data (the longest tokenized example, rounded up to 64, not a fixed 4,096), and LoRA defaults
per hardware (`DEFAULTS`): on a CPU machine with ~24 GB of memory, rank 8, one example a step with 8 steps of
gradient accumulation; on a GPU, rank 16, four a step with 4 steps of accumulation. Any option given wins.

torch, transformers, trl, peft and datasets are imported inside the functions only (`pip install
'policybot[train]'`, torch first from the index for your CPU/GPU): the bot itself never needs them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from bot.finetune import formats, registry
from bot.finetune.registry import ModelInfo

log = logging.getLogger(__name__)

PROVIDER = "local"
BY_PATH = "path"  # --served-name path: the model id is the merged folder's absolute path
TRAIN_EXTRA = "pip install 'policybot[train]' (install torch first, from the index for your CPU or GPU)"


class LocalTrainingError(RuntimeError):
    pass


@dataclass
class LocalOptions:
    """None: sized for the hardware (DEFAULTS) or, for max_length, from the data."""

    epochs: float = 3.0
    max_steps: int = -1  # > 0 overrides epochs
    learning_rate: float = 2e-4
    batch_size: int | None = None
    gradient_accumulation: int | None = None
    max_length: int | None = None
    lora_r: int | None = None
    lora_alpha: int | None = None
    lora_dropout: float = 0.05
    gradient_checkpointing: bool = True
    precision: str | None = None  # bf16 | fp16 | fp32; None: the best the hardware has
    target_modules: str | list[str] = "all-linear"
    beta: float = 0.1  # dpo
    seed: int = 42
    merge: bool = False
    served_name: str | None = None
    output_dir: str | None = None


# Per hardware: a CPU machine with ~24 GB (a 1.5B model's fp32 weights are ~6 GB; with checkpointing and one example
# a step the activations stay small) and a GPU (a 24 GB card fits a 1.5B-3B model in bf16 at four a step).
DEFAULTS = {
    "cpu": {"batch_size": 1, "gradient_accumulation": 8, "lora_r": 8, "lora_alpha": 16},
    "gpu": {"batch_size": 4, "gradient_accumulation": 4, "lora_r": 16, "lora_alpha": 32},
}
LENGTH_STEP = 64
MAX_LENGTH_CEILING = 8192  # beyond this an example is not a brand-voice answer; it is truncated with a warning


def resolve_options(opts: LocalOptions, cuda: bool, bf16_supported: bool, longest: int,
                    model_limit: int | None) -> LocalOptions:
    """Fill the options left unset: hardware defaults, precision, and the max length from the longest example."""
    filled = {k: v for k, v in DEFAULTS["gpu" if cuda else "cpu"].items() if getattr(opts, k) is None}
    if opts.precision is None:
        filled["precision"] = ("bf16" if bf16_supported else "fp16") if cuda else "fp32"
    if opts.max_length is None:
        ceiling = min(MAX_LENGTH_CEILING, model_limit or MAX_LENGTH_CEILING)
        rounded = -(-longest // LENGTH_STEP) * LENGTH_STEP
        if rounded > ceiling:
            log.warning("the longest example has %d tokens; truncating to %d", longest, ceiling)
        filled["max_length"] = max(LENGTH_STEP, min(rounded, ceiling))
    return LocalOptions(**{**asdict(opts), **filled})


def longest_example(tokenizer, rows: list[dict], kind: str) -> int:
    """Tokens in the longest row as the trainer sees it (chat template applied; dpo: the longer answer)."""
    longest = 0
    for row in rows:
        answers = [row["completion"]] if kind == "sft" else [row["chosen"], row["rejected"]]
        for answer in answers:
            ids = tokenizer.apply_chat_template(row["prompt"] + answer, tokenize=True)
            ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
            longest = max(longest, len(ids))
    return longest


def _require_training_stack():
    try:
        import peft  # noqa: F401
        import torch  # noqa: F401
        import transformers  # noqa: F401
        import trl  # noqa: F401
        import datasets  # noqa: F401
    except ImportError as err:
        raise LocalTrainingError(f"the local backend needs the training extra ({err.name} is missing): "
                                 f"{TRAIN_EXTRA}") from err


def _served_name(suffix: str | None, short: str) -> str:
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", suffix or "brand").strip("-") or "brand"
    return f"{base}-{short}"


class LocalBackend:
    name = PROVIDER

    def __init__(self, sessions, work_dir: Path) -> None:
        self.sessions = sessions
        self.work_dir = Path(work_dir)

    def start(self, dataset_dir: Path, kind: str | None, base_model: str, suffix: str | None = None,
              **options) -> ModelInfo:
        """Train now, in this process. Returns the job's row: candidate on success, failed (with the error)."""
        known = {k: v for k, v in options.items() if k in LocalOptions.__dataclass_fields__ and v is not None}
        opts = LocalOptions(**known)
        dataset_dir = Path(dataset_dir)
        manifest = formats.read_manifest(dataset_dir)
        kind = kind or manifest.get("kind")
        if manifest.get("kind") != kind:
            raise LocalTrainingError(f"{dataset_dir} holds a {manifest.get('kind')} dataset, not {kind}")
        if not Path(base_model).is_dir():
            raise LocalTrainingError(
                f"base model {base_model!r} is not a local folder; download it first (e.g. "
                "`huggingface-cli download Qwen/Qwen2.5-0.5B-Instruct --local-dir models/qwen`) and pass that path"
            )
        _require_training_stack()

        short = time.strftime("%Y%m%d%H%M%S") + "-" + uuid.uuid4().hex[:6]
        job_id = f"local-{short}"
        out = Path(opts.output_dir) if opts.output_dir else self.work_dir / job_id
        if opts.served_name == BY_PATH:  # servers that load a model by the path in the request (transformers serve)
            if not opts.merge:
                raise LocalTrainingError("--served-name path needs --merge: such servers load a full model folder")
            served = str((out / "merged").resolve())
        else:
            served = opts.served_name or _served_name(suffix, short.split("-")[-1])
        record = registry.create(
            self.sessions, provider=PROVIDER, model_id=served, base_model=str(Path(base_model).resolve()),
            job_id=job_id, dataset_hash=manifest.get("dataset_hash"), status=registry.TRAINING,
            details={"kind": kind, "suffix": suffix, "dataset_dir": str(dataset_dir), "output_dir": str(out),
                     "options": asdict(opts), "prompt_version": manifest.get("prompt_version"),
                     "provider_status": "running"},
        )
        started = time.perf_counter()
        try:
            result = train(dataset_dir, kind, base_model, out, opts)
        except Exception as err:
            log.exception("local fine-tuning %s failed", job_id)
            return registry.update_record(
                self.sessions, record.id, status=registry.FAILED,
                details={"provider_status": "failed", "error": {"message": f"{type(err).__name__}: {err}"},
                         "seconds": round(time.perf_counter() - started, 1)},
            )
        instructions = write_serving_instructions(out, served, str(Path(base_model).resolve()), result, kind,
                                                  LocalOptions(**result["options"]))
        return registry.update_record(
            self.sessions, record.id, status=registry.CANDIDATE,
            details={"provider_status": "succeeded", "adapter_dir": result["adapter_dir"],
                     "merged_dir": result.get("merged_dir"), "serving": instructions,
                     "training_metrics": result["metrics"], "seconds": round(time.perf_counter() - started, 1),
                     "options": result["options"],
                     **({"peak_gpu_memory_gb": result["peak_gpu_memory_gb"]} if "peak_gpu_memory_gb" in result else {})},
        )

    def status(self, job: ModelInfo) -> ModelInfo:
        return registry.get(self.sessions, job.id)  # training ran synchronously: the record is the status

    def cancel(self, job: ModelInfo) -> ModelInfo:
        if job.status != registry.TRAINING:
            raise LocalTrainingError(f"{job.label} is not running; nothing to cancel")
        # A local job runs inside the `finetune start` process; one still "training" here was interrupted.
        return registry.update_record(self.sessions, job.id, status=registry.CANCELLED,
                                      details={"provider_status": "cancelled"})

    def list(self) -> list[dict]:
        return [{"job_id": j.job_id, "model": j.base_model, "status": j.status, "fine_tuned_model": j.model_id}
                for j in registry.list_versions(self.sessions, jobs_only=True) if j.provider == PROVIDER]


# ----------------------------------------------------------------------------------------------- training


def load_rows(dataset_dir: Path, kind: str) -> tuple[list[dict], list[dict]]:
    """train and validation rows in TRL's conversational format (converted from the OpenAI JSONL)."""
    convert = formats.to_trl_sft if kind == "sft" else formats.to_trl_dpo
    train_rows = [convert(r) for r in formats.read_jsonl(Path(dataset_dir) / formats.TRAIN_FILE)]
    validation_rows = [convert(r) for r in formats.read_jsonl(Path(dataset_dir) / formats.VALIDATION_FILE)]
    if not train_rows:
        raise LocalTrainingError(f"{dataset_dir}/{formats.TRAIN_FILE} has no examples")
    return train_rows, validation_rows


def train(dataset_dir: Path, kind: str, base_model: str, out: Path, opts: LocalOptions) -> dict:
    """Run TRL with a LoRA adapter; returns {"adapter_dir", "merged_dir"?, "metrics"}."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer

    train_rows, validation_rows = load_rows(dataset_dir, kind)
    torch.manual_seed(opts.seed)
    tokenizer = AutoTokenizer.from_pretrained(base_model, local_files_only=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not getattr(tokenizer, "chat_template", None):
        raise LocalTrainingError(f"{base_model} has no chat template; use an instruct/chat model")
    cuda = torch.cuda.is_available()
    limit = getattr(tokenizer, "model_max_length", None)
    opts = resolve_options(opts, cuda, cuda and torch.cuda.is_bf16_supported(),
                           longest_example(tokenizer, train_rows + validation_rows, kind),
                           limit if isinstance(limit, int) and limit < 1_000_000 else None)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float32, "fp32": torch.float32}[opts.precision]  # fp16: AMP
    model = AutoModelForCausalLM.from_pretrained(base_model, local_files_only=True, dtype=dtype)
    lora = LoraConfig(r=opts.lora_r, lora_alpha=opts.lora_alpha, lora_dropout=opts.lora_dropout,
                      target_modules=opts.target_modules, task_type="CAUSAL_LM")
    common = dict(
        output_dir=str(out / "checkpoints"), num_train_epochs=opts.epochs, max_steps=opts.max_steps,
        learning_rate=opts.learning_rate, per_device_train_batch_size=opts.batch_size,
        per_device_eval_batch_size=opts.batch_size, gradient_accumulation_steps=opts.gradient_accumulation,
        max_length=opts.max_length, logging_steps=1, save_strategy="no", eval_strategy="no", report_to="none",
        seed=opts.seed, bf16=opts.precision == "bf16", fp16=opts.precision == "fp16",
        gradient_checkpointing=opts.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False} if opts.gradient_checkpointing else None,
        use_cpu=not cuda, dataloader_num_workers=0, disable_tqdm=True,
    )
    train_set = Dataset.from_list(train_rows)
    eval_set = Dataset.from_list(validation_rows) if validation_rows else None
    if kind == "sft":
        from trl import SFTConfig, SFTTrainer

        trainer = SFTTrainer(model=model, args=SFTConfig(**common), train_dataset=train_set, eval_dataset=eval_set,
                             processing_class=tokenizer, peft_config=lora)
    else:
        from trl import DPOConfig, DPOTrainer

        trainer = DPOTrainer(model=model, ref_model=None, args=DPOConfig(beta=opts.beta, **common),
                             train_dataset=train_set, eval_dataset=eval_set, processing_class=tokenizer,
                             peft_config=lora)
    # The trainer prints its logs; they go to stderr so that stdout stays clean (e.g. `--json` output).
    with contextlib.redirect_stdout(sys.stderr):
        result = trainer.train()
        evaluation = trainer.evaluate() if eval_set is not None else {}
    metrics = {k: float(v) for k, v in {**(result.metrics or {}), **evaluation}.items() if isinstance(v, (int, float))}

    adapter_dir = out / "adapter"
    trainer.model.save_pretrained(str(adapter_dir))
    tokenizer.save_pretrained(str(adapter_dir))
    outcome = {"adapter_dir": str(adapter_dir.resolve()), "metrics": metrics, "options": asdict(opts)}
    if cuda:
        outcome["peak_gpu_memory_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    if opts.merge:
        merged_dir = out / "merged"
        merged = trainer.model.merge_and_unload()
        merged.save_pretrained(str(merged_dir))
        tokenizer.save_pretrained(str(merged_dir))
        outcome["merged_dir"] = str(merged_dir.resolve())
    (out / "training_metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    return outcome


def write_serving_instructions(out: Path, served: str, base_model: str, result: dict, kind: str,
                               opts: LocalOptions) -> dict:
    """SERVING.md next to the adapter: how to serve it from vLLM, and from servers that load a model by path
    (transformers serve, llama.cpp). Whatever the server, the bot sends `model=<served>`: the registry's model id."""
    adapter = result["adapter_dir"]
    merged = result.get("merged_dir")
    by_path = merged is not None and served == merged
    rank = max(opts.lora_r or 8, 8)
    lora_command = f"vllm serve {base_model} --enable-lora --max-lora-rank {rank} --lora-modules {served}={adapter}"
    serving = {"served_name": served, "lora_command": lora_command}
    if merged:
        serving["merged_command"] = f"vllm serve {merged} --served-model-name {served}"
        serving["transformers_command"] = "transformers serve"
        serving["llama_cpp_command"] = f"llama-server -m {out.resolve() / 'model.gguf'} --alias {served} --port 8000"
    merged_part = ""
    if merged:
        transformers_note = (
            f"The candidate was registered under that path (`--served-name path`), so it works as is."
            if by_path else
            f"This candidate was registered as `{served}`, which transformers serve cannot resolve: train with "
            "`--served-name path` (the model id is then the merged folder's path), or use vLLM or llama.cpp, "
            "which serve a model under a name you choose.")
        merged_part = f"""
Or the merged model (no LoRA support needed):

```
{serving["merged_command"]}
```

## With a server that loads a model by path

### transformers serve

`transformers serve` loads whatever the request's `model` names, a Hugging Face id or a local folder: the served
name is the path, `{merged}`.

```
pip install 'transformers[serving]'
{serving["transformers_command"]}      # http://localhost:8000/v1
```

{transformers_note}

### llama.cpp

Convert the merged folder to GGUF, then serve it under the candidate's name with `--alias` (without it,
llama-server answers to any name, and reports the file's path as the model):

```
python convert_hf_to_gguf.py {merged} --outfile {out.resolve() / 'model.gguf'}
{serving["llama_cpp_command"]}
```
"""
    text = f"""# Serving `{served}`

A LoRA adapter ({kind}) trained by `policybot finetune start --backend local` on the base model
`{base_model}`. The bot calls the model as `{served}` (the registry's model id): whichever server you use, it must
answer to that name.

- adapter: `{adapter}`
{f"- merged model: `{merged}`" + chr(10) if merged else ""}
## With vLLM (OpenAI-compatible)

```
{lora_command}
```
{merged_part}
Other servers that load a PEFT LoRA adapter work like vLLM (for example SGLang `--lora-paths {served}={adapter}`).

## Point policybot at it

```
export OPENAI_BASE_URL=http://HOST:8000/v1   # the server above
export OPENAI_API_KEY=anything                # vLLM accepts any key unless started with --api-key
policybot eval answers QUESTIONS.jsonl --model {served}
policybot model promote {served} --questions QUESTIONS.jsonl
```

The bot sends `model="{served}"` once the candidate is promoted; `policybot model rollback` goes back.
"""
    (out / "SERVING.md").write_text(text, encoding="utf-8")
    serving["instructions"] = str((out / "SERVING.md").resolve())
    return serving

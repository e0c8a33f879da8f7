"""Fine-tuning commands: `finetune export|validate|start|status|list|cancel`, `model list|promote|rollback`,
`eval answers`, `feedback stats`.

Just over 400 lines: one thin function per command (parse arguments, call bot.finetune, print), kept together so
the fine-tuning CLI reads as one page; the work itself lives in bot/finetune/."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from adapters.cli import UserFacingError
from knowledge.audiences import AudienceError, parse_audiences
from bot.config import Settings
from bot.runtime import Runtime, build_runtime


def register(commands) -> None:
    commands.group("finetune", "build datasets from feedback, train and track fine-tuned models")
    p = commands.add("export", export, "write train/validation JSONL and a manifest from feedback", group="finetune")
    p.add_argument("--kind", choices=("sft", "dpo"), required=True,
                   help="sft: 👍 answers and corrections; dpo: preference pairs")
    p.add_argument("--out", type=Path, required=True, metavar="DIR")
    p.add_argument("--distractors", type=int, default=0, metavar="N",
                   help="add N retrieved passages the answer did not use to each prompt (retrieval-augmented fine-tuning)")
    p.add_argument("--min-examples", type=int, default=None, metavar="N",
                   help="refuse a dataset with fewer training examples (default 10, the hosted minimum)")
    p.add_argument("--accept-correction", action="append", default=[], metavar="INTERACTION_ID",
                   help="an admin confirms a flagged correction (its markers cite passages that do not support it); "
                        "repeatable; the id or its first 8 characters")
    p.add_argument("--validation-share", type=float, default=None, metavar="F", help="default 0.1")
    p.add_argument("--corrections-from", choices=("auto", "admins", "anyone"), default="auto",
                   help="whose corrections to use (auto: the admins when POLICYBOT_ADMINS is set, else anyone)")
    p.add_argument("--audience", default="everyone", metavar="NAME[,NAME]",
                   help="whose documents the examples may show (default: everyone only, so a model trained on it "
                        "cannot repeat restricted text)")
    p.add_argument("--json", action="store_true")

    p = commands.add("validate", validate, "check a dataset file: format, roles, token counts", group="finetune")
    p.add_argument("file", type=Path, metavar="FILE")
    p.add_argument("--max-tokens", type=int, default=None, help="per-example limit (default 16384)")
    p.add_argument("--epochs", type=int, default=None, help="for the training-token estimate (default 3)")
    p.add_argument("--json", action="store_true")

    p = commands.add("start", start, "start a fine-tuning job (local: trains now, in this process)", group="finetune")
    p.add_argument("--backend", choices=("openai", "local"), required=True)
    p.add_argument("--dataset", type=Path, required=True, metavar="DIR", help="a folder from `finetune export`")
    p.add_argument("--base-model", required=True,
                   help="openai: the model to fine-tune (e.g. gpt-4.1-mini-2025-04-14); local: a model folder")
    p.add_argument("--suffix", help="name suffix for the fine-tuned model")
    p.add_argument("--kind", choices=("sft", "dpo"), help="default: the dataset's kind")
    p.add_argument("--epochs", type=float)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--beta", type=float, help="dpo strength")
    p.add_argument("--seed", type=int)
    p.add_argument("--learning-rate-multiplier", type=float, help="openai")
    p.add_argument("--wait", action="store_true", help="openai: poll until the job finishes")
    p.add_argument("--interval", type=float, default=30.0, help="seconds between polls with --wait")
    p.add_argument("--output", type=Path, help="local: where to write the adapter (default POLICYBOT_HOME/finetune/JOB)")
    p.add_argument("--merge", action="store_true", help="local: also save the model with the adapter merged in")
    p.add_argument("--max-steps", type=int, help="local: stop after N optimizer steps")
    p.add_argument("--learning-rate", type=float, help="local")
    p.add_argument("--lora-r", type=int, help="local: LoRA rank (default 16 on a GPU, 8 on a CPU)")
    p.add_argument("--lora-alpha", type=int, help="local (default 2 x rank)")
    p.add_argument("--gradient-accumulation", type=int, help="local (default 4 on a GPU, 8 on a CPU)")
    p.add_argument("--max-length", type=int,
                   help="local: tokens per example (default: the longest example in the data, rounded up to 64)")
    p.add_argument("--served-name", help="local: the model name the server will serve the adapter under; 'path' "
                   "(with --merge): the merged folder's path, for servers that load by path (transformers serve)")
    p.add_argument("--json", action="store_true")

    p = commands.add("status", status, "poll a job; a finished one becomes a candidate model", group="finetune")
    p.add_argument("job", metavar="JOB", help="registry id or provider job id")
    p.add_argument("--wait", action="store_true", help="poll until the job finishes")
    p.add_argument("--interval", type=float, default=30.0)
    p.add_argument("--json", action="store_true")

    p = commands.add("list", list_jobs, "recorded fine-tuning jobs", group="finetune")
    p.add_argument("--remote", action="store_true", help="ask the provider for its jobs instead")
    p.add_argument("--backend", choices=("openai", "local"), default="openai")
    p.add_argument("--json", action="store_true")

    p = commands.add("cancel", cancel, "cancel a running job", group="finetune")
    p.add_argument("job", metavar="JOB")

    commands.group("model", "the model registry: list, promote, roll back")
    commands.add("list", model_list, "model versions and which one answers", group="model").add_argument(
        "--json", action="store_true")
    p = commands.add("promote", model_promote, "make a candidate the active model (after the evaluation gate)",
                     group="model")
    p.add_argument("model", metavar="ID", help="registry id, job id or model id")
    p.add_argument("--questions", type=Path, metavar="QUESTIONS.jsonl",
                   help="evaluate the candidate and the current model on this set first")
    p.add_argument("--tolerance", type=float, default=0.0, help="allowed drop per metric (default 0)")
    p.add_argument("--force", action="store_true", help="promote even if the gate refuses")
    p.add_argument("--json", action="store_true")
    commands.add("rollback", model_rollback, "re-activate the previously active model (or the base model)",
                 group="model")

    commands.group("eval", "evaluate retrieval and answers on a question set")
    p = commands.add("answers", eval_answers, "citation validity, grounded rate, refusals, answer keys", group="eval")
    p.add_argument("questions", type=Path, metavar="QUESTIONS.jsonl")
    p.add_argument("--model", metavar="ID", help="a registry model (id, job id, model id) or 'base'; its metrics are stored")
    p.add_argument("--json", action="store_true")

    commands.group("feedback", "feedback insight")
    p = commands.add("stats", feedback_stats, "👍/👎 by document and week, most 👎 answers", group="feedback")
    p.add_argument("--top", type=int, default=10)
    p.add_argument("--audience", default="everyone", metavar="NAME[,NAME]|all",
                   help="count only answers readers of these audiences may see (default: everyone; all: every answer)")
    p.add_argument("--json", action="store_true")


def _runtime(settings: Settings) -> Runtime:
    return build_runtime(settings)


def _print_json(data) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False, default=str))


# ----------------------------------------------------------------------------------------------- finetune


def export(settings: Settings, args: argparse.Namespace) -> int:
    from bot.finetune.dataset import (DEFAULT_MIN_EXAMPLES, DEFAULT_VALIDATION_SHARE, DatasetTooSmall, build_dataset,
                                      write_dataset)
    from bot.prompt import load_brand_voice

    if args.corrections_from == "anyone" or (args.corrections_from == "auto" and not settings.admins):
        authors = None
    else:
        if not settings.admins:
            raise UserFacingError("--corrections-from admins needs POLICYBOT_ADMINS")
        # HR members' answers to escalations (bot.escalation) count as admin corrections.
        authors = set(settings.admins) | set(settings.hr_members)
    try:
        audiences = parse_audiences(args.audience)
    except AudienceError as err:
        raise UserFacingError(str(err)) from err
    runtime = _runtime(settings)
    try:
        dataset = build_dataset(
            runtime.sessions, args.kind, load_brand_voice(settings.brand_voice_file), settings.hr_contact,
            embedder=runtime.embedder, distractors=max(0, args.distractors),
            min_examples=DEFAULT_MIN_EXAMPLES if args.min_examples is None else args.min_examples,
            validation_share=DEFAULT_VALIDATION_SHARE if args.validation_share is None else args.validation_share,
            correction_authors=authors, accepted_corrections=set(args.accept_correction), audiences=audiences,
        )
    except DatasetTooSmall as err:
        raise UserFacingError(str(err)) from err
    manifest = write_dataset(dataset, args.out)
    if args.json:
        _print_json(manifest)
        return 0
    scrubbed = ", ".join(f"{n} {kind.replace('_', ' ')}" for kind, n in manifest["scrubbed"].items() if n) or "nothing"
    dropped = ", ".join(f"{n} {why.replace('_', ' ')}" for why, n in sorted(manifest["dropped"].items())) or "none"
    print(f"wrote {args.out}: {manifest['train']} train + {manifest['validation']} validation {args.kind} examples "
          f"({', '.join(f'{n} {o}' for o, n in sorted(manifest['origins'].items()))})")
    print(f"dropped: {dropped}; scrubbed: {scrubbed}")
    print(f"dataset {manifest['dataset_hash'][:12]}, prompt {manifest['prompt_version']}")
    for flag in manifest["flagged_corrections"]:
        state = "accepted by --accept-correction" if flag["accepted"] else "left out"
        print(f"flagged correction on {flag['interaction_id'][:8]} ({state}): the cited passages do not support "
              + "; ".join(f"“{claim}”" for claim in flag["unsupported"]), file=sys.stderr)
    if any(not flag["accepted"] for flag in manifest["flagged_corrections"]):
        print("check them; to include one anyway: policybot finetune export ... --accept-correction ID", file=sys.stderr)
    if manifest["targets_without_citation"]:
        print(f"note: {manifest['targets_without_citation']} target answer(s) cite no source", file=sys.stderr)
    return 0


def validate(settings: Settings, args: argparse.Namespace) -> int:
    from bot.finetune.validate import DEFAULT_EPOCHS, DEFAULT_MAX_TOKENS, render, validate_file

    report = validate_file(args.file, max_tokens=args.max_tokens or DEFAULT_MAX_TOKENS,
                           epochs=args.epochs or DEFAULT_EPOCHS)
    if args.json:
        _print_json(report.as_json())
    else:
        print(render(report))
    return 0 if report.ok else 1


def _job_line(job) -> str:
    details = job.details
    line = f"#{job.id:<4} {job.provider:<7} {job.status:<11} {details.get('provider_status') or '':<16} " \
           f"{job.job_id or '':<28} {job.model_id or '-'}"
    error = (details.get("error") or {}).get("message")
    return line + (f"\n      error: {error}" if error else "")


def _show_job(job, as_json: bool) -> None:
    if as_json:
        _print_json(job.as_json())
        return
    print(_job_line(job))
    for event in (job.details.get("events") or [])[-5:]:
        print(f"      {event.get('level', '')}: {event.get('message', '')}")
    serving = job.details.get("serving") or {}
    if serving.get("lora_command"):
        print(f"      serve: {serving['lora_command']}")
        print(f"      then: policybot eval answers QUESTIONS.jsonl --model {job.id}; policybot model promote {job.id}")
    elif job.status == "candidate":
        print(f"      next: policybot eval answers QUESTIONS.jsonl --model {job.id}; policybot model promote {job.id}")


def _wait(backend, job, interval: float):
    from bot.finetune.registry import TRAINING

    while job.status == TRAINING:
        time.sleep(max(0.0, interval))
        job = backend.status(job)
        print(_job_line(job), file=sys.stderr)
    return job


def start(settings: Settings, args: argparse.Namespace) -> int:
    from bot.finetune.backends import get_backend

    runtime = _runtime(settings)
    options = {
        "epochs": args.epochs, "batch_size": args.batch_size, "beta": args.beta, "seed": args.seed,
        "learning_rate_multiplier": args.learning_rate_multiplier,
        "output_dir": str(args.output) if args.output else None, "merge": args.merge or None,
        "max_steps": args.max_steps, "learning_rate": args.learning_rate, "lora_r": args.lora_r,
        "lora_alpha": args.lora_alpha, "max_length": args.max_length,
        "gradient_accumulation": args.gradient_accumulation, "served_name": args.served_name,
    }
    if args.backend == "openai" and options["epochs"] is not None:
        options["epochs"] = int(options["epochs"])
    try:
        backend = get_backend(args.backend, runtime)
        job = backend.start(args.dataset, args.kind, args.base_model, args.suffix,
                            **{k: v for k, v in options.items() if v is not None})
    except (FileNotFoundError, RuntimeError, ValueError) as err:
        raise UserFacingError(str(err)) from err
    if args.wait and args.backend == "openai":
        job = _wait(backend, job, args.interval)
    _show_job(job, args.json)
    return 1 if job.status in ("failed", "cancelled") else 0


def status(settings: Settings, args: argparse.Namespace) -> int:
    from bot.finetune import registry
    from bot.finetune.backends import backend_for

    runtime = _runtime(settings)
    try:
        job = registry.get(runtime.sessions, args.job)
        if job.status == registry.TRAINING:  # a finished job's record is its status
            backend = backend_for(job, runtime)
            job = backend.status(job)
            if args.wait:
                job = _wait(backend, job, args.interval)
    except (RuntimeError, ValueError) as err:
        raise UserFacingError(str(err)) from err
    _show_job(job, args.json)
    return 1 if job.status == "failed" else 0


def list_jobs(settings: Settings, args: argparse.Namespace) -> int:
    from bot.finetune import registry
    from bot.finetune.backends import get_backend

    runtime = _runtime(settings)
    if args.remote:
        try:
            rows = get_backend(args.backend, runtime).list()
        except (RuntimeError, ValueError) as err:
            raise UserFacingError(str(err)) from err
        if args.json:
            _print_json({"jobs": rows})
        for row in rows if not args.json else []:
            print(f"{row['job_id']:<30} {row['status']:<16} {row['model']:<30} {row.get('fine_tuned_model') or '-'}")
        return 0
    jobs = registry.list_versions(runtime.sessions, jobs_only=True)
    if args.json:
        _print_json({"jobs": [j.as_json() for j in jobs]})
        return 0
    if not jobs:
        print("No fine-tuning jobs yet. Start one with: policybot finetune start --backend openai|local --dataset DIR ...")
    for job in jobs:
        print(_job_line(job))
    return 0


def cancel(settings: Settings, args: argparse.Namespace) -> int:
    from bot.finetune import registry
    from bot.finetune.backends import backend_for

    runtime = _runtime(settings)
    try:
        job = registry.get(runtime.sessions, args.job)
        job = backend_for(job, runtime).cancel(job)
    except (RuntimeError, ValueError) as err:
        raise UserFacingError(str(err)) from err
    print(_job_line(job))
    return 0


# ----------------------------------------------------------------------------------------------- model


def model_list(settings: Settings, args: argparse.Namespace) -> int:
    from bot.finetune import registry

    runtime = _runtime(settings)
    models = [m for m in registry.list_versions(runtime.sessions)]
    active = next((m for m in models if m.status == "active"), None)
    if args.json:
        _print_json({"base_model": settings.chat_model, "active": active.as_json() if active else None,
                     "models": [m.as_json() for m in models]})
        return 0
    print(f"answering now: {active.model_id + f' (#{active.id})' if active else settings.chat_model + ' (base model)'}")
    for m in models:
        metrics = m.metrics
        scores = " ".join(f"{key.split('_')[0]}={metrics[key]:.2f}" for key in
                          ("citation_validity", "grounded_rate", "correct_refusal_rate", "answer_key_hit_rate")
                          if metrics.get(key) is not None)
        marker = "*" if m.status == "active" else " "
        print(f"{marker} #{m.id:<4} {m.status:<11} {m.provider:<7} {m.model_id or '-':<40} {scores}")
    return 0


def model_promote(settings: Settings, args: argparse.Namespace) -> int:
    from bot.finetune.evaluation import promote
    from bot.finetune.registry import RegistryError

    runtime = _runtime(settings)
    try:
        outcome = promote(runtime, args.model, force=args.force, questions_path=args.questions,
                          tolerance=args.tolerance)
    except (RegistryError, ValueError) as err:
        raise UserFacingError(str(err)) from err
    if args.json:
        _print_json(outcome.as_json())
    else:
        print(outcome.message, file=sys.stdout if outcome.promoted else sys.stderr)
    return 0 if outcome.promoted else 1


def model_rollback(settings: Settings, args: argparse.Namespace) -> int:
    from bot.finetune import registry

    runtime = _runtime(settings)
    try:
        result = registry.rollback(runtime.sessions)
    except registry.RegistryError as err:
        raise UserFacingError(str(err)) from err
    now = (f"#{result.now_active.id} {result.now_active.model_id}" if result.now_active
           else f"the base model {settings.chat_model}")
    print(f"Rolled back #{result.rolled_back.id} {result.rolled_back.model_id}; {now} answers from the next question on.")
    return 0


# ----------------------------------------------------------------------------------------------- eval, feedback


def eval_answers(settings: Settings, args: argparse.Namespace) -> int:
    from bot.finetune.evaluation import evaluate_answers, evaluate_model, resolve_model
    from bot.finetune.registry import RegistryError
    from knowledge.evaluation import load_questions

    try:
        questions = load_questions(args.questions)
    except (OSError, ValueError) as err:
        raise UserFacingError(str(err)) from err
    runtime = _runtime(settings)
    try:
        if args.model:
            info = resolve_model(runtime, args.model)
            report = evaluate_model(runtime, info, questions, str(args.questions))
        else:
            info = None
            report = evaluate_answers(runtime, questions)
    except RegistryError as err:
        raise UserFacingError(str(err)) from err
    if args.json:
        _print_json({**report.as_json(), "stored_on": info.id if info else None})
        return 0
    m = report.metrics

    def show(value) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    print(f"model {report.model}: {m['questions']} questions ({m['answerable']} answerable, "
          f"{m['unanswerable']} not answered by the documents)")
    print(f"  citation validity    {show(m['citation_validity'])}  ({m['replies_with_markers']} of the model's "
          f"{m['model_replies']} replies had markers)")
    print(f"  grounded rate        {show(m['grounded_rate'])}  ({m['false_refusals']} wrongly refused, "
          f"{m['fallbacks']} fell back to extractive)")
    reasons = ", ".join(f"{why} {n}" for why, n in m["fallback_reasons"].items()) or "none"
    print(f"  fallbacks            {m['fallbacks']}  ({reasons}); errors {m['errors']}")
    print(f"  correct refusals     {show(m['correct_refusal_rate'])}")
    print(f"  answer-key hits      {show(m['answer_key_hit_rate'])}")
    print(f"  expected document    {show(m['document_hit_rate'])}")
    stages = m.get("failed_at") or {}
    print("  failed at            " + ", ".join(f"{stage} {n}" for stage, n in stages.items())
          + "  (--json: each question's stage)")
    if info is not None:
        print(f"stored on model version #{info.id} ({info.model_id})")
    return 0


def feedback_stats(settings: Settings, args: argparse.Namespace) -> int:
    from bot.finetune.stats import feedback_stats as compute, render

    try:
        audiences = None if args.audience == "all" else parse_audiences(args.audience)
    except AudienceError as err:
        raise UserFacingError(str(err)) from err
    stats = compute(_runtime(settings).sessions, top=args.top, audiences=audiences)
    if args.json:
        _print_json(stats)
    else:
        print(render(stats))
    return 0

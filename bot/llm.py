"""Generation through an OpenAI-compatible chat endpoint: bounded concurrency, bounded generation (max tokens, a
repetition penalty, stop sequences), retries on 429/5xx only, and a clear failure (with its reason) the core turns
into the extractive fallback."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass
from typing import Callable, Protocol

# A reply that starts writing one of the prompt's data blocks is copying the prompt, not answering: stop there.
STOP_SEQUENCES = ("<sources>", "<source id=", "<question>", "<conversation>")
MAX_RETRY_WAIT_S = 8.0


@dataclass(frozen=True)
class Generation:
    text: str
    model: str
    prompt_tokens: int | None
    completion_tokens: int | None
    finish_reason: str | None = None  # "length": cut off by max_tokens


class LLMError(RuntimeError):
    """A failed call. `reason` names it for the fallback record: timeout | rate_limited | server_error | error |
    busy | empty."""

    def __init__(self, message: str, reason: str = "error") -> None:
        super().__init__(message)
        self.reason = reason


class LLMProtocol(Protocol):
    """What the core needs of a chat model (PolicyBot's `llm` argument): LLM in production; evaluation wraps it
    to keep the raw reply. Raises LLMError on any failure, which the core answers extractively."""

    def complete(self, messages: list[dict], model: str, max_tokens: int | None = None) -> Generation: ...


@dataclass(frozen=True)
class GenerationLimits:
    """How far one reply may run, from Settings (POLICYBOT_LLM_MAX_TOKENS, _FREQUENCY_PENALTY, _RETRIES)."""

    max_tokens: int = 350
    frequency_penalty: float = 0.0
    stop: tuple[str, ...] = STOP_SEQUENCES
    retries: int = 2

    @classmethod
    def from_settings(cls, settings) -> "GenerationLimits":
        return cls(max_tokens=settings.llm_max_tokens, frequency_penalty=settings.llm_frequency_penalty,
                   retries=max(0, settings.llm_max_retries))


class StreamingLLMProtocol(LLMProtocol, Protocol):
    """A chat model that can also hand out its reply as it is written (LLM does; a wrapper may not, and then
    the core asks for the whole reply with complete())."""

    def stream(self, messages: list[dict], model: str, on_text: Callable[[str], None],
               max_tokens: int | None = None) -> Generation: ...


class LLM:
    """One per process. A burst of questions queues on the semaphore instead of overwhelming the endpoint.

    The client is built without retries (bot.runtime): the openai client would also retry timeouts and dropped
    connections, so one looping answer would run three times and keep the server busy. Retries here are for 429
    and 5xx only, as the README documents, with the server's Retry-After honoured up to MAX_RETRY_WAIT_S."""

    def __init__(self, client, concurrency: int = 16, queue_timeout_s: float = 30.0,
                 limits: GenerationLimits | None = None) -> None:
        self.client = client
        self._slots = threading.BoundedSemaphore(max(1, concurrency))
        self._queue_timeout_s = queue_timeout_s
        self.limits = limits or GenerationLimits()

    def request_args(self, max_tokens: int | None = None) -> dict:
        """The bounds every chat request carries (complete, and any streamed path, share them)."""
        args: dict = {"temperature": 0.2, "max_tokens": max_tokens or self.limits.max_tokens}
        if self.limits.frequency_penalty:
            args["frequency_penalty"] = self.limits.frequency_penalty
        if self.limits.stop:
            args["stop"] = list(self.limits.stop)
        return args

    def complete(self, messages: list[dict], model: str, max_tokens: int | None = None) -> Generation:
        if not self._slots.acquire(timeout=self._queue_timeout_s):
            raise LLMError("all LLM slots busy", "busy")
        try:
            response = self._create_with_retries(self.client.chat.completions.create, model=model, messages=messages,
                                                 **self.request_args(max_tokens))
        finally:
            self._slots.release()
        choice = response.choices[0] if response.choices else None
        text = (choice.message.content or "").strip() if choice else ""
        if not text:
            raise LLMError("empty completion", "empty")
        usage = getattr(response, "usage", None)
        return Generation(
            text=text,
            model=getattr(response, "model", None) or model,
            prompt_tokens=getattr(usage, "prompt_tokens", None),
            completion_tokens=getattr(usage, "completion_tokens", None),
            finish_reason=getattr(choice, "finish_reason", None),
        )

    def stream(self, messages: list[dict], model: str, on_text: Callable[[str], None],
               max_tokens: int | None = None) -> Generation:
        """The same request as complete() (request_args, retries on 429/5xx), streamed (`stream=True`): `on_text`
        gets each text delta as it arrives, and the whole reply comes back as a Generation at the end. A failure
        part way raises LLMError like any other (the caller replaces what was shown)."""
        import openai

        if not self._slots.acquire(timeout=self._queue_timeout_s):
            raise LLMError("all LLM slots busy", "busy")
        parts: list[str] = []
        usage = None
        finish_reason = None
        answered_model = model
        try:
            # Chunks as plain dicts (openai.Stream[object]): the SDK's typed chunk costs ~140 us of CPU each to
            # build, ~20 ms for a 150-token answer, as much as embedding the question (measured in
            # benchmarks/llm_stream.py). The SDK still makes the request, decodes the events and raises on an
            # error event; only the typing is skipped.
            raw = self._create_with_retries(self.client.chat.completions.with_raw_response.create, model=model,
                                            messages=messages, **self.request_args(max_tokens), stream=True,
                                            stream_options={"include_usage": True})
            with raw.parse(to=openai.Stream[object]) as response:  # closes the HTTP response however it ends
                for chunk in response:
                    answered_model = chunk.get("model") or answered_model
                    usage = chunk.get("usage") or usage
                    choice = (chunk.get("choices") or [None])[0] or {}
                    finish_reason = choice.get("finish_reason") or finish_reason
                    delta = (choice.get("delta") or {}).get("content")
                    if delta:
                        parts.append(delta)
                        on_text(delta)
        except LLMError:
            raise
        except openai.APITimeoutError as err:
            raise LLMError(f"timed out: {err}", "timeout") from err
        except Exception as err:  # openai's hierarchy, or the connection dropping mid-stream
            raise LLMError(f"{type(err).__name__}: {err}", "error") from err
        finally:
            self._slots.release()
        text = "".join(parts).strip()
        if not text:
            raise LLMError("empty completion", "empty")
        return Generation(
            text=text,
            model=answered_model,
            prompt_tokens=(usage or {}).get("prompt_tokens"),
            completion_tokens=(usage or {}).get("completion_tokens"),
            finish_reason=finish_reason,
        )

    def _create_with_retries(self, create: Callable, **request):
        import openai

        for attempt in range(self.limits.retries + 1):
            try:
                return create(**request)
            except (openai.RateLimitError, openai.InternalServerError) as err:
                if attempt >= self.limits.retries:
                    reason = "rate_limited" if isinstance(err, openai.RateLimitError) else "server_error"
                    raise LLMError(f"{type(err).__name__}: {err}", reason) from err
                time.sleep(_retry_wait(err, attempt))
            except openai.APITimeoutError as err:  # never retried: a slow model would only be slow again
                raise LLMError(f"timed out: {err}", "timeout") from err
            except Exception as err:  # openai raises its own hierarchy; the caller only needs "it failed, why"
                raise LLMError(f"{type(err).__name__}: {err}", "error") from err
        raise AssertionError("unreachable")


def _retry_wait(err, attempt: int) -> float:
    headers = getattr(getattr(err, "response", None), "headers", None) or {}
    try:
        after = float(headers.get("retry-after", ""))
    except ValueError:
        after = None
    if after is not None and after >= 0:
        return min(after, MAX_RETRY_WAIT_S)
    return min(0.25 * 2 ** attempt, MAX_RETRY_WAIT_S) * (0.75 + random.random() / 2)

"""Generation through an OpenAI-compatible chat endpoint: bounded concurrency, the client's own retries and
timeout, and a clear failure the core turns into the extractive fallback."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable, Protocol


@dataclass(frozen=True)
class Generation:
    text: str
    model: str
    prompt_tokens: int | None
    completion_tokens: int | None


class LLMError(RuntimeError):
    pass


class LLMProtocol(Protocol):
    """What the core needs of a chat model (PolicyBot's `llm` argument): LLM in production; evaluation wraps it
    to keep the raw reply. Raises LLMError on any failure, which the core answers extractively."""

    def complete(self, messages: list[dict], model: str, max_tokens: int = 600) -> Generation: ...


class StreamingLLMProtocol(LLMProtocol, Protocol):
    """A chat model that can also hand out its reply as it is written (LLM does; a wrapper may not, and then
    the core asks for the whole reply with complete())."""

    def stream(self, messages: list[dict], model: str, on_text: Callable[[str], None],
               max_tokens: int = 600) -> Generation: ...


class LLM:
    """One per process. A burst of questions queues on the semaphore instead of overwhelming the endpoint."""

    def __init__(self, client, concurrency: int = 16, queue_timeout_s: float = 30.0) -> None:
        self.client = client
        self._slots = threading.BoundedSemaphore(max(1, concurrency))
        self._queue_timeout_s = queue_timeout_s

    def complete(self, messages: list[dict], model: str, max_tokens: int = 600) -> Generation:
        if not self._slots.acquire(timeout=self._queue_timeout_s):
            raise LLMError("all LLM slots busy")
        try:
            response = self.client.chat.completions.create(
                model=model, messages=messages, temperature=0.2, max_tokens=max_tokens
            )
        except Exception as err:  # openai raises its own hierarchy; the caller only needs "it failed"
            raise LLMError(f"{type(err).__name__}: {err}") from err
        finally:
            self._slots.release()
        choice = response.choices[0] if response.choices else None
        text = (choice.message.content or "").strip() if choice else ""
        if not text:
            raise LLMError("empty completion")
        usage = getattr(response, "usage", None)
        return Generation(
            text=text,
            model=getattr(response, "model", None) or model,
            prompt_tokens=getattr(usage, "prompt_tokens", None),
            completion_tokens=getattr(usage, "completion_tokens", None),
        )

    def stream(self, messages: list[dict], model: str, on_text: Callable[[str], None],
               max_tokens: int = 600) -> Generation:
        """The same request as complete(), streamed (`stream=True`): `on_text` gets each text delta as it
        arrives, and the whole reply comes back as a Generation at the end. A failure part way raises
        LLMError like any other (the caller replaces what was shown)."""
        if not self._slots.acquire(timeout=self._queue_timeout_s):
            raise LLMError("all LLM slots busy")
        parts: list[str] = []
        usage = None
        answered_model = model
        try:
            response = self.client.chat.completions.create(
                model=model, messages=messages, temperature=0.2, max_tokens=max_tokens, stream=True,
                stream_options={"include_usage": True},
            )
            with response:  # closes the HTTP response however the loop ends
                for chunk in response:
                    answered_model = getattr(chunk, "model", None) or answered_model
                    usage = getattr(chunk, "usage", None) or usage
                    delta = chunk.choices[0].delta.content if chunk.choices else None
                    if delta:
                        parts.append(delta)
                        on_text(delta)
        except Exception as err:  # openai's hierarchy, or the connection dropping mid-stream
            raise LLMError(f"{type(err).__name__}: {err}") from err
        finally:
            self._slots.release()
        text = "".join(parts).strip()
        if not text:
            raise LLMError("empty completion")
        return Generation(
            text=text,
            model=answered_model,
            prompt_tokens=getattr(usage, "prompt_tokens", None),
            completion_tokens=getattr(usage, "completion_tokens", None),
        )

"""From 👍/👎 to a fine-tuned brand-voice model: datasets, validation, training backends, evaluation, promotion.

Everything here is provider-neutral: an OpenAI-compatible fine-tuning API (`backends.openai_backend`) or a local
LoRA adapter trained with TRL + PEFT (`backends.local_backend`) that any OpenAI-compatible server can serve.
Heavy imports (torch, transformers, trl, peft) happen only inside the local backend's functions.
"""

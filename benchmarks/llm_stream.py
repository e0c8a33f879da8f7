"""CPU that reading a streamed LLM answer costs the answering thread (a script, not a test).

bot.llm.LLM.stream (the openai client, chunks read as plain dicts: openai.Stream[object]) against the peer, the
same client used the documented way (`create(stream=True)`, one typed ChatCompletionChunk per event), on the same
streamed answers from the local OpenAI stub (tests/fakes/openai_server.py: one chunk per word, as the real API
sends one per token), interleaved. The figure is CPU seconds of the reading thread (time.thread_time: the stub's
own threads are not counted) per answer, and our share of the peer's, per answer length.

    .venv/bin/python benchmarks/llm_stream.py            # ~20 s
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.common import load_average, log, machine, print_table, write_results  # noqa: E402
from bot.llm import LLM  # noqa: E402
from tests.fakes.openai_server import FakeOpenAI, Scripted  # noqa: E402

MESSAGES = [{"role": "user", "content": "How many vacation days do I get?"}]


def peer_stream(client, model: str) -> str:
    """The SDK's documented streaming loop: typed chunks."""
    parts = []
    with client.chat.completions.create(model=model, messages=MESSAGES, stream=True,
                                        stream_options={"include_usage": True}) as stream:
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta and chunk.choices[0].delta.content:
                parts.append(chunk.choices[0].delta.content)
    return "".join(parts)


def ours_stream(llm: LLM, model: str) -> str:
    return llm.stream(MESSAGES, model, on_text=lambda _delta: None).text


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--words", type=int, nargs="+", default=[50, 150, 400], help="answer lengths (chunks)")
    p.add_argument("--answers", type=int, default=40, help="answers per length and side")
    args = p.parse_args(argv)
    import openai

    fake = FakeOpenAI().start()
    client = openai.OpenAI(base_url=fake.base_url, api_key="bench", max_retries=0)
    llm = LLM(client)
    result: dict = {"benchmark": "llm_stream", "machine": machine(), "load_average_start": load_average(),
                    "config": vars(args), "lengths": []}
    rows = []
    try:
        for words in args.words:
            text = " ".join(f"word{i}" for i in range(words))
            cpu = {"ours": [], "peer": []}
            for i in range(args.answers * 2):
                side = "ours" if i % 2 == 0 else "peer"  # interleaved: drift on a shared machine hits both
                fake.queue(Scripted(content=text))
                start = time.thread_time()
                got = ours_stream(llm, "bench") if side == "ours" else peer_stream(client, "bench")
                cpu[side].append(time.thread_time() - start)
                assert got.split() == text.split(), f"{side} read a different answer"
            ours, peer = (statistics.median(cpu[s]) * 1000 for s in ("ours", "peer"))
            entry = {"words": words, "ours_cpu_ms_median": round(ours, 2), "peer_cpu_ms_median": round(peer, 2),
                     "ratio_ours_to_peer": round(ours / peer, 3)}
            result["lengths"].append(entry)
            rows.append([words, entry["ours_cpu_ms_median"], entry["peer_cpu_ms_median"], entry["ratio_ours_to_peer"]])
            log(f"{words} words: ours {ours:.2f} ms, peer {peer:.2f} ms of CPU per answer")
    finally:
        fake.stop()
    result["load_average_end"] = load_average()
    print_table(f"CPU per streamed answer, reading thread (load average {result['load_average_end']})",
                ["words", "ours ms", "peer (typed chunks) ms", "ours / peer"], rows)
    log(f"wrote {write_results('llm-stream', result)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

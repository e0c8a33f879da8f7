"""CPU of one pooled check-out plus one statement (a script, not a test): knowledge.db.make_engine's socket check
against SQLAlchemy's pool_pre_ping (a SELECT 1 round trip per check-out), and a pool with no check at all as the
floor, on the same PostgreSQL (tests/services.py), interleaved in rounds. The figure is this process's CPU per
check-out (PostgreSQL's own CPU for the extra SELECT 1 is not counted, so the ping costs more than shown).

    .venv/bin/python benchmarks/checkout.py            # ~15 s
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.common import load_average, log, machine, print_table, write_results  # noqa: E402
from knowledge.db import make_engine, normalize_url  # noqa: E402
from tests.services import Postgres  # noqa: E402


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def engines(url: str) -> dict:
    from sqlalchemy import create_engine

    return {
        "ours (socket check)": make_engine(url, pool_size=2),
        "pool_pre_ping": create_engine(normalize_url(url), pool_pre_ping=True, pool_size=2),
        "no check (floor)": create_engine(normalize_url(url), pool_size=2),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkouts", type=int, default=2000, help="per engine and round")
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args(argv)
    result: dict = {"benchmark": "checkout", "machine": machine(), "load_average_start": load_average(),
                    "config": vars(args)}
    with Postgres(prefix="pbck", say=log).start() as pg:
        url = pg.create_database("checkout", migrated=False)
        per: dict[str, list[float]] = {}
        built = engines(url)
        try:
            for engine in built.values():  # connect first: the rounds time check-outs, not connecting
                with engine.connect() as conn:
                    conn.exec_driver_sql("SELECT 1")
            for _ in range(args.rounds):
                for name, engine in built.items():
                    start = _cpu_s()
                    for _ in range(args.checkouts):
                        with engine.connect() as conn:
                            conn.exec_driver_sql("SELECT 1")
                    per.setdefault(name, []).append((_cpu_s() - start) / args.checkouts * 1e6)
        finally:
            for engine in built.values():
                engine.dispose()
    medians = {name: round(statistics.median(values), 1) for name, values in per.items()}
    floor = medians["no check (floor)"]
    result["cpu_us_per_checkout_median"] = medians
    result["check_cost_us"] = {name: round(v - floor, 1) for name, v in medians.items()}
    result["ours_to_pre_ping"] = round(medians["ours (socket check)"] / medians["pool_pre_ping"], 3)
    result["load_average_end"] = load_average()
    print_table(f"CPU per check-out + SELECT 1, this process (load average {result['load_average_end']})",
                ["engine", "us (median of rounds)", "us above the floor"],
                [[name, v, result["check_cost_us"][name]] for name, v in medians.items()])
    log(f"ours / pool_pre_ping: {result['ours_to_pre_ping']}; wrote {write_results('checkout', result)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

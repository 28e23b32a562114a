"""Run the benchmarks: ``python -m bench`` for all, ``python -m bench NAME ...`` for some."""

from __future__ import annotations

import argparse
import importlib
import sys
import time

from .harness import ServerUnavailable

BENCHMARKS = (
    "memory",
    "redis_ops",
    "redis_batch",
    "priority",
    "pipeline",
    "timeout",
    "workers",
    "aio_worker",
    "cache",
    "cluster",
    "pack",
    "schedule",
    "aio",
)
"""One module of this package per benchmark, each with a ``run()`` that prints its table."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmarks of distqueue against a baseline measured in the same run.",
    )
    # (checked here: some Pythons hold an empty list of names against ``choices`` too)
    parser.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help=f"run only these benchmarks (default: all): {', '.join(BENCHMARKS)}",
    )
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in BENCHMARKS]
    if unknown:
        parser.error(
            f"no benchmark named {', '.join(unknown)} (choose from {', '.join(BENCHMARKS)})"
        )
    names = list(args.names) or list(BENCHMARKS)

    unavailable: list[str] = []
    started = time.perf_counter()
    for name in names:
        module = importlib.import_module(f"{__package__}.{name}")
        try:
            module.run()
        except ServerUnavailable as exc:
            print(f"\n{name}: not run: {exc}", file=sys.stderr)
            unavailable.append(name)
    ran = len(names) - len(unavailable)
    print(f"\n{ran} of {len(names)} benchmark(s) run in {time.perf_counter() - started:.1f} s")
    if unavailable:
        print(f"not run (no server): {', '.join(unavailable)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

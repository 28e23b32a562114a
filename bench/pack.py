"""pack: encoding one script call for the wire, hiredis's C encoder against distqueue's own.

distqueue's :class:`~distqueue.backends.scripts.Script` sends its calls pre-packed: the fixed
part (EVALSHA, the script's hash, its keys) is encoded once, and each call encodes only its own
arguments. Where hiredis is installed, its ``pack_command`` encodes the whole command instead;
this measures which is faster, on the arguments of a single FIFO put (five keys, a request key,
a small JSON payload). No server is involved: the figures are the client's CPU time alone.
"""

from __future__ import annotations

import time
from typing import Any

from distqueue.backends.scripts import _resp

from .harness import compare, print_comparisons, print_title

_PREFIX: tuple[str | int, ...] = (
    "EVALSHA",
    "0" * 40,
    6,
    *[f"dq:{{jobs}}:{role}" for role in ("items", "meta", "notfull", "joined", "avail")],
)
_ARGS: tuple[str | int | bytes, ...] = (
    "dq:{jobs}:r:0123456789abcdef1",
    "fifo",
    0,
    "",
    b'{"n": 12345, "payload": "hello world"}',
)


def _ours(count: int) -> float:
    packed = b"".join(_resp(part) for part in _PREFIX)
    argc = len(_PREFIX)
    args = _ARGS
    start = time.perf_counter()
    for _ in range(count):
        b"".join([b"*%d\r\n" % (argc + len(args)), packed, *[_resp(a) for a in args]])
    return time.perf_counter() - start


def run() -> None:
    print_title("pack: encoding a put's script call (client CPU only, no server)")
    try:
        from hiredis import pack_command
    except ImportError:
        print("hiredis is not installed: distqueue uses its own encoder (pip install hiredis)")
        return

    def hiredis_trial(count: int) -> float:
        command: Any = (*_PREFIX, *_ARGS)  # the stubs of hiredis type it as a 1-tuple
        start = time.perf_counter()
        for _ in range(count):
            pack_command(command)
        return time.perf_counter() - start

    # baseline: distqueue's own encoder; "distqueue" side: hiredis, which it uses when present
    comparison = compare("pack a put", 200_000, hiredis_trial, _ours, target=1.0)
    print_comparisons([comparison], "own encoder")

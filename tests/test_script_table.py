"""The script table (distqueue/backends/redis/table.py) and the scripts' own headers agree on
which key each script gets where, so a reader can trust either."""

from __future__ import annotations

import re
from importlib import resources

import pytest

from distqueue.backends.redis.keys import ROLES
from distqueue.backends.redis.table import SCRIPTS


def _source(file: str) -> str:
    return resources.files("distqueue.backends").joinpath("lua").joinpath(file).read_text("utf-8")


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_each_script_declares_the_keys_the_table_gives_it_in_the_same_order(name: str) -> None:
    spec = SCRIPTS[name]
    source = _source(spec.file)
    declared = re.findall(r"^-- KEYS\[(\d+)(\.\.)?\]\s+(\S+)", source, flags=re.MULTILINE)
    assert declared, f"{spec.file} declares no keys"
    roles: list[str] = []
    for position, (number, open_ended, role) in enumerate(declared, start=1):
        assert int(number) == position, f"{spec.file}: KEYS[{number}] out of order"
        if open_ended:
            # "KEYS[n..] every other key": the table lists the rest explicitly
            rest = spec.keys[position - 1 :]
            assert sorted(rest) == sorted(set(ROLES) - set(roles)), (spec.file, rest)
            roles.extend(rest)
            break
        roles.append(role)
    assert tuple(roles) == spec.keys, f"{spec.file} declares {roles}, the table {spec.keys}"


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_no_script_reads_a_key_beyond_those_it_is_given(name: str) -> None:
    spec = SCRIPTS[name]
    used = {int(n) for n in re.findall(r"KEYS\[(\d+)\]", _source(spec.file).split("\n", 1)[1])}
    assert max(used, default=0) <= len(spec.keys), (spec.file, sorted(used), spec.keys)


def test_every_role_in_the_table_is_a_key_of_the_layout() -> None:
    used = {role for spec in SCRIPTS.values() for role in spec.keys}
    assert used <= set(ROLES)


def test_the_own_encoder_and_hiredis_pack_a_call_alike() -> None:
    hiredis = pytest.importorskip("hiredis")
    from distqueue.backends.scripts import _resp

    for args in [
        ("EVALSHA", "0" * 40, 2, "dq:{q}:items", "dq:{q}:meta", "fifo", 0, ""),
        ("EVAL", "return 1", 0, b"\x00\xff\r\n", "\u00e9\u4e2d", -12, 10**20),
    ]:
        ours = b"".join([b"*%d\r\n" % len(args), *[_resp(a) for a in args]])
        assert ours == hiredis.pack_command(args)

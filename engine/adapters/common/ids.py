"""Engine client order ids.

An id is ``<prefix><time><counter><random>``: the prefix (letters, digits, ``-``/``_``), the epoch
milliseconds as 9 base-36 digits, a 4-digit base-36 per-process counter and 4 random base-36 digits.
Ids are therefore unique (time + counter within a process, random across processes), roughly sortable
by creation time, at most 36 characters, and use only ``[A-Za-z0-9_-]``: never ``:`` or ``/``, which
python-binance would sign and send differently (protocol notes 1.4).
"""

from __future__ import annotations

import itertools
import re
import secrets
import time

__all__ = ["CLIENT_ID_RE", "ClientIdGenerator", "is_valid_client_id"]

CLIENT_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,36}$")
_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
_MAX_PREFIX = 36 - 9 - 4 - 4


def _base36(value: int, width: int) -> str:
    out = []
    for _ in range(width):
        value, digit = divmod(value, 36)
        out.append(_DIGITS[digit])
    return "".join(reversed(out))


def is_valid_client_id(client_id: str) -> bool:
    return CLIENT_ID_RE.fullmatch(client_id) is not None


class ClientIdGenerator:
    """``next()`` gives a new id; ``prefix`` may name the strategy or the engine instance."""

    def __init__(self, prefix: str = "e") -> None:
        if len(prefix) > _MAX_PREFIX or (prefix and not CLIENT_ID_RE.fullmatch(prefix)):
            raise ValueError(f"client id prefix must be [A-Za-z0-9_-]{{0,{_MAX_PREFIX}}}, got {prefix!r}")
        self.prefix = prefix
        self._counter = itertools.count()

    def next(self, now_ms: int | None = None) -> str:
        ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
        n = next(self._counter) % 36**4
        return f"{self.prefix}{_base36(ms, 9)}{_base36(n, 4)}{_base36(secrets.randbelow(36**4), 4)}"

"""Byte layouts of LMDB keys. Every key component is UTF-8, separated by NUL."""

from __future__ import annotations

import struct

SEP = b"\x00"


def join(*parts: str) -> bytes:
    """Join string parts into one key."""
    return SEP.join(p.encode() for p in parts)


def split(key: bytes) -> list[str]:
    return [p.decode() for p in key.split(SEP)]


def prefix(*parts: str) -> bytes:
    """A key prefix that matches every key starting with these whole parts."""
    return join(*parts) + SEP


def u64(value: int) -> bytes:
    return struct.pack(">Q", value)


def from_u64(data: bytes) -> int:
    value: int = struct.unpack(">Q", data)[0]
    return value

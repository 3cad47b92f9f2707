"""Hash kinds, one class each (python-threatexchange's SignalType shape, trimmed).

A kind knows its name, validates a value, computes it and compares two values. Values are
always lower-case hex ``str``.
"""

from __future__ import annotations

import hashlib
import re
from typing import ClassVar, Protocol

import numpy as np

_HEX = re.compile(r"[0-9a-f]*")


class HashKind(Protocol):
    name: ClassVar[str]
    hex_length: ClassVar[int]

    @classmethod
    def validate(cls, value: str) -> str: ...

    @classmethod
    def distance(cls, a: str, b: str) -> int: ...


class _HexKind:
    name: ClassVar[str]
    hex_length: ClassVar[int]

    @classmethod
    def validate(cls, value: str) -> str:
        v = value.strip().lower()
        if len(v) != cls.hex_length:
            raise ValueError(f"{cls.name} must be {cls.hex_length} hex digits, got {len(v)}")
        # Not int(v, 16): it would accept "0x", a sign and underscores.
        if not _HEX.fullmatch(v):
            raise ValueError(f"{cls.name} is not hexadecimal")
        return v


class DigestKind(_HexKind):
    """Cryptographic digests match only when equal."""

    algorithm: ClassVar[str]

    @classmethod
    def hash_bytes(cls, data: bytes) -> str:
        return hashlib.new(cls.algorithm, data).hexdigest()

    @classmethod
    def distance(cls, a: str, b: str) -> int:
        return 0 if a == b else 1 << 30


class MD5(DigestKind):
    name = "md5"
    algorithm = "md5"
    hex_length = 32


class SHA1(DigestKind):
    name = "sha1"
    algorithm = "sha1"
    hex_length = 40


class SHA256(DigestKind):
    name = "sha256"
    algorithm = "sha256"
    hex_length = 64


class PDQ(_HexKind):
    """Meta's PDQ perceptual hash: 256 bits, compared by Hamming distance."""

    name = "pdq"
    hex_length = 64
    # Order of pdqhash.compute_dihedral's outputs (the C++ reference's order).
    VARIANTS: ClassVar[tuple[str, ...]] = (
        "original",
        "rot90",
        "rot180",
        "rot270",
        "flipx",
        "flipy",
        "flip_plus1",
        "flip_minus1",
    )

    @staticmethod
    def bits_to_hex(bits: np.ndarray) -> str:
        # pdqhash returns 256 ints, most significant bit first (as TE's hex).
        return np.packbits(np.asarray(bits, dtype=np.uint8)).tobytes().hex()

    @classmethod
    def distance(cls, a: str, b: str) -> int:
        return (int(a, 16) ^ int(b, 16)).bit_count()


DIGESTS: tuple[type[DigestKind], ...] = (MD5, SHA1, SHA256)
KINDS: dict[str, type[_HexKind]] = {k.name: k for k in (*DIGESTS, PDQ)}

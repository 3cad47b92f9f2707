"""Text hash lists: python-threatexchange / HMA ``<kind> <hex>`` lines and plain hex lists.

One hash per line, in either form (they may be mixed in one file)::

    # comment lines and blank lines are skipped
    pdq  f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22
    md5  d41d8cd98f00b204e9800998ecf8427e  some-category
    da39a3ee5e6b4b0d3255bfef95601890afd80709

A line is ``[kind] <hex> [category]``; ``kind`` is one of md5, sha1, sha256, pdq (any case).
The optional third field is taken as the entry's category (one word) rather than ignored,
because plain exports often carry a class label there; a fourth field is refused, since a
line we only half understand should not be imported. Text after `` #`` is a comment.

Bare hex takes its kind from the ``kind`` option when given (every bare line must then be
that kind). Otherwise 32 digits is MD5 and 40 is SHA-1; 64 digits may be SHA-256 or PDQ,
so the file name decides (it contains ``pdq`` or ``sha256``) and failing that the import is
refused with a message asking for ``--kind``: guessing wrong would make a list silently
never match.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from arachne.matcher.lists.base import (
    HASH_KINDS,
    MAX_CATEGORY,
    ListEntry,
    ListImporter,
    check_text,
    first_significant_line,
    iter_lines,
    normalise_hash,
)

# Kinds a bare hex string's length implies without help.
_KIND_BY_LENGTH = {32: "md5", 40: "sha1"}
_AMBIGUOUS_LENGTH = 64
_TEXT_SUFFIXES = {".txt", ".pdq", ".md5", ".sha1", ".sha256", ".hashes"}
_LINE = re.compile(r"(?:(?:md5|sha1|sha256|pdq)\s+)?[0-9a-f]{32,64}(?:\s.*)?", re.IGNORECASE)


@dataclass(frozen=True)
class TextListConfig:
    default_kind: str | None = None
    """Kind of every bare-hex line; None infers it from length and the file name."""

    def __post_init__(self) -> None:
        if self.default_kind is not None and self.default_kind not in HASH_KINDS:
            raise ValueError(
                f"unknown hash kind {self.default_kind!r} (known: {', '.join(HASH_KINDS)})"
            )


def kind_hint(path: Path) -> str | None:
    """``pdq`` or ``sha256`` when the file name names exactly one of them, else None."""
    name = path.name.lower()
    has_pdq = "pdq" in name
    has_sha256 = "sha256" in name or "sha-256" in name
    if has_pdq == has_sha256:  # neither, or both: no hint
        return None
    return "pdq" if has_pdq else "sha256"


class TextListImporter(ListImporter):
    name = "text"
    config_cls = TextListConfig
    config: TextListConfig

    @classmethod
    def from_options(cls, *, kind: str | None = None) -> TextListImporter:
        return cls(TextListConfig(default_kind=kind))

    @classmethod
    def sniff(cls, head: str, path: Path) -> bool:
        line = first_significant_line(head)
        if line is None:
            # An empty or comment-only .txt is still a (empty) text list.
            return path.suffix.lower() in _TEXT_SUFFIXES
        return bool(_LINE.fullmatch(line)) or path.suffix.lower() in _TEXT_SUFFIXES

    def parse(self, path: Path) -> list[ListEntry]:
        hint = kind_hint(path)
        entries: list[ListEntry] = []
        for number, line in iter_lines(path):
            content = line.split("#", 1)[0].strip() if "#" in line else line.strip()
            if not content:
                continue
            try:
                entries.append(self._parse_line(content, hint))
            except ValueError as exc:
                raise self.error(path, number, str(exc)) from None
        return entries

    def _parse_line(self, content: str, hint: str | None) -> ListEntry:
        fields = content.split()
        kind: str | None = None
        if fields[0].lower() in HASH_KINDS:
            kind = fields[0].lower()
            fields = fields[1:]
            if not fields:
                raise ValueError(f"{kind} line has no hash after the kind")
        if len(fields) > 2:
            raise ValueError(
                f"expected `[kind] <hex> [category]`, got {len(fields) + (kind is not None)} fields"
            )
        value = fields[0]
        category = check_text("category", fields[1], MAX_CATEGORY) if len(fields) > 1 else None
        if kind is None:
            kind = self._bare_kind(value, hint)
        return ListEntry(kind, normalise_hash(kind, value), category)

    def _bare_kind(self, value: str, hint: str | None) -> str:
        if self.config.default_kind is not None:
            return self.config.default_kind
        length = len(value)
        if length in _KIND_BY_LENGTH:
            return _KIND_BY_LENGTH[length]
        if length == _AMBIGUOUS_LENGTH:
            if hint is not None:
                return hint
            raise ValueError(
                "a bare 64-digit hash may be SHA-256 or PDQ: pass --kind sha256 or --kind pdq, "
                "name the file with 'pdq' or 'sha256' in it, or write `pdq <hex>` lines"
            )
        raise ValueError(
            f"a bare hash of {length} characters is none of MD5 (32 hex digits), "
            "SHA-1 (40), SHA-256 or PDQ (64)"
        )

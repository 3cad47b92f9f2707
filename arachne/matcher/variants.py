"""Every PDQ query of an image, packed into a few hundred bytes for the store.

A list imported after a crawl must be matched against the images already seen without
fetching any of them again (issue 9 §2): so each image keeps the exact queries the live
path made (``ImageHashes.pdq_queries``: 8 dihedral variants, ``up2``, the trimmed image's
8), as raw 32-byte hashes rather than hex text.

Layout (version 1): 4 header bytes (version, flags, quality, trimmed quality), then the
present groups in this order: 8 × 32 dihedral, 32 up2, 8 × 32 trimmed. Flags say which
groups are present. An image without a PDQ (too small, undecodable) stores nothing. Typical
sizes: 292 bytes (dihedral + up2), 260 (large image, no up2), 548 with a trimmed set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from operator import itemgetter

import numpy as np

from arachne.matcher.hashing import TRIM_PREFIX, UPSCALED_VARIANT, ImageHashes
from arachne.matcher.kinds import PDQ

VERSION = 1
_DIHEDRAL, _UP2, _TRIMMED = 1, 2, 4
_HASH = 32


@dataclass(frozen=True)
class StoredQueries:
    """An image's packed queries, unpacked: labels and (n, 4) uint64 words, with the
    qualities that decide which groups a query uses (``ImageHashes.pdq_queries``)."""

    quality: int
    trimmed_quality: int
    labels: tuple[str, ...]
    words: np.ndarray  # (len(labels), 4) uint64, big-endian order of the hash's bits
    trimmed: np.ndarray  # bool per label: from the trimmed set

    def usable(self, min_quality: int) -> np.ndarray:
        """Which queries a live match at ``min_quality`` would have made."""
        return np.where(
            self.trimmed, self.trimmed_quality >= min_quality, self.quality >= min_quality
        )


def pack(hashes: ImageHashes) -> bytes | None:
    """The image's queries as bytes; None when it has no PDQ."""
    flags, groups = 0, []
    if hashes.pdq_variants:
        flags |= _DIHEDRAL
        groups += hashes.pdq_variants
    if hashes.pdq_variants and hashes.pdq_upscaled:
        flags |= _UP2
        groups.append(hashes.pdq_upscaled)
    if hashes.pdq_trimmed_variants:
        flags |= _TRIMMED
        groups += hashes.pdq_trimmed_variants
    if not flags:
        return None
    header = bytes([VERSION, flags, _byte(hashes.pdq_quality), _byte(hashes.pdq_trimmed_quality)])
    return header + bytes.fromhex("".join(groups))


def unpack(blob: bytes) -> StoredQueries:
    if len(blob) < 4 or blob[0] != VERSION:
        raise ValueError(f"not a version-{VERSION} packed PDQ query set")
    labels = [LABELS[i] for i in _layout(blob[1])]
    trimmed = [label.startswith(TRIM_PREFIX) for label in labels]
    body = blob[4:]
    if len(body) != _HASH * len(labels):
        raise ValueError(f"packed PDQ query set of {len(blob)} bytes does not match its flags")
    words = np.frombuffer(body, dtype=">u8").reshape(-1, 4).astype(np.uint64)
    return StoredQueries(blob[2], blob[3], tuple(labels), words, np.array(trimmed, dtype=bool))


def unpack_many(
    blobs: Sequence[bytes], min_quality: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row index of each query, query words (n, 4), index into ``LABELS``) of the queries
    a live match at ``min_quality`` would make, for many images at once (rematch.py).

    Vectorised: blobs of one length (nearly all of them) are one (images, bytes) array
    whose hashes are a view, split by their flags; no Python work per image."""
    rows_out: list[np.ndarray] = []
    words_out: list[np.ndarray] = []
    labels_out: list[np.ndarray] = []
    lengths = np.fromiter(map(len, blobs), dtype=np.int64, count=len(blobs))
    for size in np.unique(lengths):
        members = np.flatnonzero(lengths == size)
        if len(members) == len(blobs):
            joined = b"".join(blobs)
        else:
            joined = b"".join(
                itemgetter(*members)(blobs) if len(members) > 1 else [blobs[members[0]]]
            )
        arr = np.frombuffer(joined, dtype=np.uint8).reshape(len(members), int(size))
        if size < 4 or (arr[:, 0] != VERSION).any():
            raise ValueError(f"not a version-{VERSION} packed PDQ query set")
        for flags in np.unique(arr[:, 1]):
            layout = _layout(int(flags))
            if not layout or size != 4 + _HASH * len(layout):
                raise ValueError("a packed PDQ query set does not match its flags")
            pick = np.flatnonzero(arr[:, 1] == flags)
            group = arr if len(pick) == len(arr) else arr[pick]  # one layout: no copy
            hashes = group[:, 4:].view(">u8").reshape(len(pick), len(layout), 4)
            gates = {False: group[:, 2] >= min_quality, True: group[:, 3] >= min_quality}
            for slot, label in enumerate(layout):
                keep = gates[LABELS[label].startswith(TRIM_PREFIX)]
                kept = int(keep.sum())
                if not kept:
                    continue
                chosen = hashes[:, slot] if kept == len(keep) else hashes[keep, slot]
                words_out.append(chosen.astype(np.uint64))
                rows_out.append(members[pick] if kept == len(keep) else members[pick[keep]])
                labels_out.append(np.full(kept, label, dtype=np.int8))
    if not rows_out:
        empty = np.zeros(0, dtype=np.int64)
        return empty, np.zeros((0, 4), dtype=np.uint64), empty.astype(np.int8)
    return np.concatenate(rows_out), np.concatenate(words_out), np.concatenate(labels_out)


def _layout(flags: int) -> list[int]:
    """Indexes into ``LABELS`` of the hashes a blob with these flags holds, in order."""
    out: list[int] = []
    if flags & _DIHEDRAL:
        out += range(8)
    if flags & _UP2:
        out.append(8)
    if flags & _TRIMMED:
        out += range(9, 17)
    return out


LABELS: tuple[str, ...] = (
    *PDQ.VARIANTS,
    UPSCALED_VARIANT,
    *(TRIM_PREFIX + v for v in PDQ.VARIANTS),
)
"""Every variant label, in packing order: ``unpack_many`` gives indexes into this."""


def _byte(value: int | None) -> int:
    return max(0, min(255, int(value or 0)))

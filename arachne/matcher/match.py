"""Match decisions: exact digests, and PDQ near matches within each list's threshold."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from arachne.matcher.hashing import ImageHashes
from arachne.matcher.index import ExactIndex, PDQIndex
from arachne.matcher.kinds import DIGESTS, PDQ
from arachne.matcher.mih import make_pdq_index

# (entry id, list id, kind, value, threshold or None for the default)
EntryRow = tuple[int, int, str, str, int | None]


@dataclass(frozen=True)
class MatchDecision:
    entry_id: int
    kind: str  # "exact" | "near" | "review" (a near miss, see Matcher.decide)
    hash_kind: str
    distance: int
    variant: str | None = None  # which dihedral variant of the image matched (PDQ)


class Matcher:
    def __init__(
        self,
        entries: Iterable[EntryRow],
        *,
        default_threshold: int = 31,
        min_quality: int = 50,
        pdq_index: PDQIndex | None = None,
        review_band: int = 0,
    ) -> None:
        self.default_threshold = default_threshold
        self.min_quality = min_quality
        self.review_band = review_band  # distances above a threshold, up to this: near misses
        self.exact = ExactIndex()
        # Only per-entry overrides are kept: a dict over 10M entries would cost ~1 GB.
        self._thresholds: dict[int, int] = {}
        rows = list(entries)
        n_pdq = sum(1 for row in rows if row[2] == PDQ.name)
        self.pdq: PDQIndex = pdq_index if pdq_index is not None else make_pdq_index(n_pdq)
        self.add_entries(rows)

    def add_entries(self, entries: Iterable[EntryRow]) -> None:
        """Add (or re-add) known entries; the index is updated in place, never rebuilt."""
        pdq_ids: list[int] = []
        pdq_values: list[str] = []
        for entry_id, _list_id, kind, value, threshold in entries:
            if kind == PDQ.name:
                pdq_ids.append(entry_id)
                pdq_values.append(value)
                if threshold is not None and threshold != self.default_threshold:
                    self._thresholds[entry_id] = threshold
                else:
                    self._thresholds.pop(entry_id, None)
            else:
                self.exact.add(entry_id, kind, value)
        if pdq_ids:
            self.pdq.add(pdq_ids, pdq_values)
        self._max_threshold = max([self.default_threshold, *self._thresholds.values()])

    def remove_entries(self, entries: Iterable[tuple[int, str, str]]) -> None:
        """Drop ``(entry_id, kind, value)`` entries (retracted or about to be re-added)."""
        pdq_ids: list[int] = []
        for entry_id, kind, value in entries:
            if kind == PDQ.name:
                pdq_ids.append(entry_id)
                self._thresholds.pop(entry_id, None)
            else:
                self.exact.remove(entry_id, kind, value)
        if pdq_ids:
            self.pdq.remove(pdq_ids)

    def __len__(self) -> int:
        return len(self.exact) + len(self.pdq)

    def match_hashes(self, queries: Sequence[tuple[str, str]]) -> list[list[MatchDecision]]:
        """Bare ``(hash kind, value)`` queries, each on its own (no image, so no variants and
        no quality floor): digests by equality, PDQ as in ``match_pdq``, the PDQ ones of the
        batch in one index query. Values are normalised hex (``HashKind.validate``)."""
        out: list[list[MatchDecision]] = [[] for _ in queries]
        pdq_at = [i for i, (kind, _) in enumerate(queries) if kind == PDQ.name]
        for i, (kind, value) in enumerate(queries):
            if kind != PDQ.name:
                out[i] = [
                    MatchDecision(e, "exact", kind, 0) for e in self.exact.lookup(kind, value)
                ]
        found = self.match_pdq([queries[i][1] for i in pdq_at])
        for i, decisions in zip(pdq_at, found, strict=True):
            out[i] = decisions
        return out

    def match_pdq(self, hashes: Sequence[str]) -> list[list[MatchDecision]]:
        """Per PDQ hash, as given: the entries within their own threshold (kind ``near``,
        variant ``original``), by entry id. One index query for the whole batch."""
        if not hashes:
            return []
        original = PDQ.VARIANTS[0]
        return [
            [
                MatchDecision(entry_id, "near", PDQ.name, dist, original)
                for entry_id, dist in sorted(hits)
                if dist <= self._thresholds.get(entry_id, self.default_threshold)
            ]
            for hits in self.pdq.query(hashes, self._max_threshold)
        ]

    def match(self, hashes: ImageHashes) -> list[MatchDecision]:
        """Exact and PDQ matches (distance within the entry's threshold)."""
        return self.decide(hashes, review=False)[0]

    def decide(
        self, hashes: ImageHashes, review: bool = True
    ) -> tuple[list[MatchDecision], list[MatchDecision]]:
        """(matches, near misses): near misses are PDQ distances above an entry's threshold
        up to ``review_band``, for an analyst (kind ``review``), never for a notice."""
        decisions: list[MatchDecision] = []
        for kind in DIGESTS:
            value = getattr(hashes, kind.name)
            for entry_id in self.exact.lookup(kind.name, value):
                decisions.append(MatchDecision(entry_id, "exact", kind.name, 0))
        # Low-quality hash sets are recorded but never matched; a border-trimmed crop
        # of good quality is still queried.
        queries = hashes.pdq_queries(self.min_quality)
        if not queries:
            return decisions, []
        radius = max(self._max_threshold, self.review_band if review else 0)
        best: dict[int, tuple[int, str]] = {}
        results = self.pdq.query([h for _, h in queries], radius)
        for (variant, _), hits in zip(queries, results, strict=True):
            for entry_id, dist in hits:
                if entry_id not in best or dist < best[entry_id][0]:
                    best[entry_id] = (dist, variant)
        near: list[MatchDecision] = []
        for entry_id, (dist, variant) in sorted(best.items()):
            threshold = self._thresholds.get(entry_id, self.default_threshold)
            if dist <= threshold:
                decisions.append(MatchDecision(entry_id, "near", PDQ.name, dist, variant))
            elif review and dist <= self.review_band:
                near.append(MatchDecision(entry_id, "review", PDQ.name, dist, variant))
        return decisions, near

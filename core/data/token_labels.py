"""Which tokens are trained, by `encode`'s rule: a token is trained when its first character lies inside a
trained span and it is not empty. `encode` applies the rule token by token; these give the same labels
faster, from a whole row's offsets or from its pieces (piece_tokenize.py)."""

from __future__ import annotations

from bisect import bisect_left

from core.data.piece_tokenize import Piece

IGNORE = -100


def by_offsets(ids: list[int], offsets: list[tuple[int, int]], spans: list[tuple[int, int]]) -> list[int]:
    """`encode`'s rule (a token is trained when it starts inside a span and is not empty), by bisection."""
    starts = [a for a, _ in offsets]
    if starts != sorted(starts):  # no tokenizer we know does this, but the rule must not depend on it
        return [t if any(s <= a < e for s, e in spans) and b > a else IGNORE for t, (a, b) in zip(ids, offsets)]
    labels = [IGNORE] * len(ids)
    for s, e in spans:
        for j in range(bisect_left(starts, s), bisect_left(starts, e)):
            a, b = offsets[j]
            if b > a:
                labels[j] = ids[j]
    return labels


def by_pieces(pieces: list[Piece], spans: list[tuple[int, int]]) -> tuple[list[int], list[int]]:
    """The row's ids, and its labels by `encode`'s rule worked out a piece at a time: a piece that no span
    meets has no token starting inside one; every token of a piece that a span covers does (so only
    emptiness counts); only a piece that span boundaries cut looks at where its tokens start."""
    ids: list[int] = []
    labels: list[int] = []
    at = 0
    untrained = 0  # tokens waiting to be labelled IGNORE, written in one go
    for p in pieces:
        end = at + len(p.text)
        for s, e in spans:
            if s < end and at < e:
                if untrained:
                    labels += [IGNORE] * untrained
                    untrained = 0
                if s <= at and end <= e:
                    labels += _trained(p)
                else:
                    labels += _cut(p, [(s - at, e - at) for s, e in spans if s < end and at < e])
                break
        else:
            untrained += len(p.ids)
        ids += p.ids
        at = end
    if untrained:
        labels += [IGNORE] * untrained
    return ids, labels


def _trained(p: Piece) -> list[int]:
    """A piece's labels when all of it is trained: every token but empty ones."""
    if p.trained is None:
        p.trained = [t if b > a else IGNORE for t, a, b in zip(p.ids, p.starts, p.ends)] if p.has_empty else p.ids
    return p.trained


def _cut(p: Piece, cuts: list[tuple[int, int]]) -> list[int]:
    """A piece's labels with only the tokens starting inside one of `cuts` (spans relative to the piece) trained."""
    trained = _trained(p)
    if not p.ordered:  # no tokenizer we know does this, but the rule must not depend on it
        return [t if any(s <= a < e for s, e in cuts) else IGNORE for t, a in zip(trained, p.starts)]
    if len(cuts) == 1:
        j = bisect_left(p.starts, cuts[0][0])
        k = max(j, bisect_left(p.starts, cuts[0][1]))  # a span may end before it starts: it trains nothing
        return [IGNORE] * j + trained[j:k] + [IGNORE] * (len(trained) - k)
    out = [IGNORE] * len(trained)
    for s, e in cuts:
        j, k = bisect_left(p.starts, s), bisect_left(p.starts, e)
        out[j:k] = trained[j:k]
    return out

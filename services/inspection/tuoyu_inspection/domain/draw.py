"""The random draw of a plan (双随机: targets and inspectors drawn at random), reproducible.

A draw is a pure function of what its plan records: the seed (recorded, and so fixed, before
the draw is made), the frame (every institution that could be drawn, with its credit grade,
as the service knew them when drawing), the weights of the grades, the departments' rosters
and the declared conflicts of interest. Anyone holding those (an auditor reading the plan's
events) runs :func:`draw_targets` and :func:`draw_inspectors` again and gets the same
institutions and the same inspectors.

Targets: weighted sampling without replacement (Efraimidis & Spirakis, "Weighted random
sampling with a reservoir", 2006): each institution gets the key ``u ** (1 / w)`` for a
uniform ``u`` from the seeded generator and its grade's weight ``w``, and the ``k`` largest
keys are drawn. With one target drawn, an institution is drawn with probability ``w / Σw``.

Inspectors: for each target and department, ``n`` inspectors drawn uniformly from the
department's roster without those who declared a conflict of interest with that institution
(回避), each from a generator seeded by the plan's seed, the institution and the department
(so one target's inspectors do not depend on the others').
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Mapping, Sequence

ALGORITHM = "es-weighted-v1"


def _rng(seed: str, *parts: str) -> random.Random:
    digest = hashlib.sha256("\x1f".join((seed, *parts)).encode()).digest()
    return random.Random(int.from_bytes(digest, "big"))


def frame_digest(frame: Sequence[Sequence[str]]) -> str:
    """The SHA-256 of the frame as recorded (sorted ``[institution_id, grade]`` pairs)."""
    return hashlib.sha256(json.dumps([list(row) for row in frame], separators=(",", ":"))
                          .encode()).hexdigest()


def draw_targets(seed: str, frame: Sequence[Sequence[str]], weights: Mapping[str, int],
                 count: int) -> list[str]:
    """The ``count`` institutions drawn from ``frame`` (``[institution_id, grade]`` pairs,
    sorted by id), in the order drawn (largest key first)."""
    rng = _rng(seed, "targets")
    keyed = []
    for institution_id, grade in sorted((str(r[0]), str(r[1])) for r in frame):
        u = rng.random() or 5e-324  # never 0: 0 ** (1/w) would tie every zero
        keyed.append((u ** (1.0 / weights[grade]), institution_id))
    keyed.sort(reverse=True)
    return [institution_id for _, institution_id in keyed[:count]]


def draw_inspectors(seed: str, institution_id: str, department: str, roster: Sequence[str],
                    conflicts: Sequence[str], count: int) -> list[str] | None:
    """``count`` inspectors of ``department`` for one institution, or None when the roster
    without the conflicted has fewer."""
    eligible = sorted(set(roster) - set(conflicts))
    if len(eligible) < count:
        return None
    return sorted(_rng(seed, "inspectors", institution_id, department).sample(eligible, count))

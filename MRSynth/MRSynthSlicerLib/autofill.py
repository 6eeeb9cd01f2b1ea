"""Guess the contrast of a volume from its name, to pre-fill the module's input selectors.

``"BraTS-GLI-00000-000-t1n"`` → ``t1``, ``"T2 FLAIR"`` → ``flair``, ``"T1_post_Gd"`` → ``t1ce``,
``"sub-01_T1w"`` → ``t1``. Names of MRSynth results (``"... (synthetic, <model>)"``) are never guesses.
"""

from __future__ import annotations

import re

from MRSynthLib.contrasts import canonical_contrast, is_contrast

_LONGEST_ALIAS_WORDS = 3
SYNTHETIC_MARK = "(synthetic,"


def guess_contrast(name: str) -> str | None:
    """The one contrast a volume name mentions, or None (no mention, several, or an MRSynth result).

    Words are matched greedily, longest first (up to three words joined: ``T2 FLAIR`` → ``t2flair``).
    """
    if not name or SYNTHETIC_MARK in name:
        return None
    words = [w for w in re.split(r"[^a-z0-9]+", name.lower()) if w]
    found: set[str] = set()
    index = 0
    while index < len(words):
        for size in range(min(_LONGEST_ALIAS_WORDS, len(words) - index), 0, -1):
            candidate = "".join(words[index:index + size])
            if is_contrast(candidate):
                found.add(canonical_contrast(candidate))
                index += size
                break
        else:
            index += 1
    return found.pop() if len(found) == 1 else None


def autofill(names: dict[str, str], accepted: tuple[str, ...] | list[str], taken: set[str] | None = None) -> dict[str, str]:
    """Pick a volume for each accepted contrast not in ``taken``, from ``names`` (node ID → node name).

    A contrast is filled only when exactly one volume's name points to it.

    Returns:
        contrast → node ID.
    """
    taken = set(taken or ())
    candidates: dict[str, list[str]] = {}
    for node_id, name in names.items():
        contrast = guess_contrast(name)
        if contrast in accepted and contrast not in taken:
            candidates.setdefault(contrast, []).append(node_id)
    return {contrast: ids[0] for contrast, ids in candidates.items() if len(ids) == 1}

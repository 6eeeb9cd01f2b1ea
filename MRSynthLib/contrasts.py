"""Canonical MRI contrast names and the aliases used by public datasets and scanners."""

from __future__ import annotations

from MRSynthLib.errors import ContrastError

CANONICAL_CONTRASTS: tuple[str, ...] = ("t1", "t1ce", "t2", "flair", "pd", "ct")
"""Every contrast MRSynth knows, in a fixed order (the order of model input channels)."""

MR_CONTRASTS: tuple[str, ...] = ("t1", "t1ce", "t2", "flair", "pd")

DESCRIPTIONS: dict[str, str] = {
    "t1": "T1-weighted (native, pre-contrast)",
    "t1ce": "T1-weighted after gadolinium (post-contrast)",
    "t2": "T2-weighted",
    "flair": "T2-FLAIR (fluid-attenuated inversion recovery)",
    "pd": "proton-density weighted",
    "ct": "computed tomography (Hounsfield units)",
}

_ALIASES: dict[str, str] = {
    # T1 native
    "t1": "t1", "t1n": "t1", "t1w": "t1", "t1native": "t1", "t1pre": "t1", "mprage": "t1",
    # T1 post-contrast
    "t1ce": "t1ce", "t1c": "t1ce", "t1gd": "t1ce", "t1post": "t1ce", "t1wce": "t1ce",
    "t1contrast": "t1ce", "t1gad": "t1ce", "t1wgd": "t1ce",
    # T2
    "t2": "t2", "t2w": "t2",
    # FLAIR
    "flair": "flair", "t2f": "flair", "fla": "flair", "t2flair": "flair", "t2wflair": "flair",
    # PD
    "pd": "pd", "pdw": "pd", "protondensity": "pd",
    # CT
    "ct": "ct",
}


def squash_name(name: str) -> str:
    """Lower-case alphanumerics only: ``"T1_Gd"`` -> ``"t1gd"`` (how names and aliases are compared)."""
    return "".join(ch for ch in name.lower() if ch.isalnum())


def canonical_contrast(name: str) -> str:
    """Map a contrast name or alias (``"T1c"``, ``"t2-flair"``, ``"t1_gd"``) to its canonical name.

    Raises:
        ContrastError: if the name is not a known contrast or alias.
    """
    if not isinstance(name, str) or not name.strip():
        raise ContrastError(f"Contrast name must be a non-empty string, not {name!r}.")
    key = squash_name(name)
    if key in _ALIASES:
        return _ALIASES[key]
    known = ", ".join(CANONICAL_CONTRASTS)
    raise ContrastError(
        f"Unknown contrast {name!r}: use one of {known} (aliases such as t1n, t1c, t2w, t2f also work)."
    )


def is_contrast(name: str) -> bool:
    """True when ``name`` is a canonical contrast or a known alias."""
    return squash_name(name) in _ALIASES if isinstance(name, str) else False


def aliases_of(contrast: str) -> list[str]:
    """All accepted spellings (squashed) of a canonical contrast, canonical first."""
    canonical = canonical_contrast(contrast)
    return [canonical] + sorted(k for k, v in _ALIASES.items() if v == canonical and k != canonical)

import pytest

from MRSynthLib.contrasts import CANONICAL_CONTRASTS, aliases_of, canonical_contrast, is_contrast
from MRSynthLib.errors import ContrastError


@pytest.mark.parametrize("alias, canonical", [
    ("t1n", "t1"), ("T1w", "t1"), ("t1c", "t1ce"), ("T1Gd", "t1ce"), ("t1post", "t1ce"), ("t1_gd", "t1ce"),
    ("t2w", "t2"), ("T2", "t2"), ("t2f", "flair"), ("FLAIR", "flair"), ("fla", "flair"), ("t2-flair", "flair"),
    ("PD", "pd"), ("pdw", "pd"), ("CT", "ct"),
])
def test_aliases_map_to_canonical(alias, canonical):
    assert canonical_contrast(alias) == canonical
    assert is_contrast(alias)


def test_canonical_names_are_fixed_points():
    assert all(canonical_contrast(c) == c for c in CANONICAL_CONTRASTS)
    assert aliases_of("t1ce")[0] == "t1ce" and "t1gd" in aliases_of("t1ce")


@pytest.mark.parametrize("bad", ["t3", "", "dwi", None])
def test_unknown_contrast_is_one_clear_error(bad):
    with pytest.raises(ContrastError, match="(?i)contrast"):
        canonical_contrast(bad)
    assert not is_contrast(bad)

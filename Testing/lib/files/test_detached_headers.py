"""Which voxel files MetaImage/NRRD headers name, and the rule that they stay beside the header."""

from __future__ import annotations

import pytest

from MRSynthLib.files.detached_headers import check_detached_data, referenced_files
from MRSynthLib.errors import InputImageError


@pytest.mark.parametrize("header, expected", [
    ("ObjectType = Image\nElementDataFile = LOCAL\n", []),
    ("ObjectType = Image\nElementDataFile = a.raw\n", ["a.raw"]),
    ("ObjectType = Image\nelementdatafile=sub/b.raw\n", ["sub/b.raw"]),
    ("ObjectType = Image\nElementDataFile = LIST 2D\ns1.raw\ns2.raw\n", ["s1.raw", "s2.raw"]),
    ("ObjectType = Image\nElementDataFile = slice%03d.raw 1 3 1\n", ["slice001.raw", "slice002.raw", "slice003.raw"]),
])
def test_metaimage_references(tmp_path, header, expected):
    path = tmp_path / "x.mhd"
    path.write_text(header)
    assert referenced_files(path) == expected


@pytest.mark.parametrize("header, expected", [
    ("NRRD0004\ntype: float\nencoding: raw\n\nBINARY", []),
    ("NRRD0004\ndata file: v.raw\n", ["v.raw"]),
    ("NRRD0004\ndatafile: ../v.raw\n", ["../v.raw"]),
    ("NRRD0004\ndata file: LIST\na.raw\nb.raw\n", ["a.raw", "b.raw"]),
    ("NRRD0004\ndata file: s%d.raw 3 1 -1 2\n", ["s3.raw", "s2.raw", "s1.raw"]),
])
def test_nrrd_references(tmp_path, header, expected):
    path = tmp_path / "x.nhdr"
    path.write_text(header)
    assert referenced_files(path) == expected


def test_every_listed_file_must_exist_beside_the_header(tmp_path):
    (tmp_path / "s1.raw").write_bytes(b"x")
    path = tmp_path / "x.mhd"
    path.write_text("ElementDataFile = LIST\ns1.raw\ns2.raw\n")
    with pytest.raises(InputImageError, match="'s2.raw', which does not exist"):
        check_detached_data(path, "input t1")
    link = tmp_path / "s2.raw"
    link.symlink_to("/etc/hostname")  # a symlink leading out of the folder counts as outside
    with pytest.raises(InputImageError, match="outside the header's folder"):
        check_detached_data(path, "input t1")

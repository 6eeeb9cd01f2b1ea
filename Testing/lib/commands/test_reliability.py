"""Bad-input corpus through the real ``mrsynth synthesize`` command line.

Every case is one row of :data:`CORPUS`: how the test builds the bad input (in a temporary folder), the exit
code it must give, and the words its message must contain (the culprit file or argument, and the fix).
For every failing case the test also checks: exactly one line on stderr, no traceback, and the output
folder untouched (same files, sizes, modification times and contents). Cases marked ``works`` are inputs
that look odd but are valid (integer pixel types, a negative spacing that ITK reads as a flipped axis):
they must synthesize onto the input's grid.

``python Testing/lib/commands/test_reliability.py --markdown`` runs the corpus and prints the table of
docs/RELIABILITY.md with the message each case returns.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import gzip
import hashlib
import io
import json
import os
import pickle
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # script mode (--markdown): Testing/, for support
from support.paths import REPO  # noqa: E402
from support.images import blob_array, make_image  # noqa: E402
from support.bundles import random_bundle  # noqa: E402

from MRSynthLib.files.atomic import atomic_path  # noqa: E402
from MRSynthLib.commands.cli import main  # noqa: E402
from MRSynthLib.errors import InputImageError, OutputError  # noqa: E402
from MRSynthLib.files.imageio import load_input, read_image  # noqa: E402

SHAPE = (24, 24, 24)  # (z, y, x)
SPACING = (5.0, 5.0, 5.0)
ERROR_PREFIX = "mrsynth synthesize: error: "


@dataclasses.dataclass(frozen=True)
class Workspace:
    """A good case (t1, t2 on one grid), a random-weight bundle and a folder for bad files."""

    root: Path
    t1: Path
    t2: Path
    bundle: Path

    def bad(self, name: str) -> Path:
        folder = self.root / "bad"
        folder.mkdir(exist_ok=True)
        return folder / name


def make_workspace(root: Path) -> Workspace:
    root.mkdir(parents=True, exist_ok=True)
    t1, t2 = root / "t1.nii.gz", root / "t2.nii.gz"
    sitk.WriteImage(make_image(blob_array(SHAPE, seed=0), spacing=SPACING, origin=(-60.0, -60.0, -60.0)), str(t1))
    sitk.WriteImage(make_image(blob_array(SHAPE, seed=1) * 0.7, spacing=SPACING, origin=(-60.0, -60.0, -60.0)), str(t2))
    return Workspace(root, t1, t2, random_bundle(root / "bundle"))


def synth(ws: Workspace, out: Path, *pairs: str, target="t1ce", model=None, output="syn.nii.gz", extra=()) -> list[str]:
    """argv of ``mrsynth synthesize`` writing ``out/output``."""
    argv = ["synthesize"]
    for pair in pairs:
        argv += ["--input", pair]
    return argv + ["--target", target, "--output", str(out / output), "--model", str(model or ws.bundle),
                   "--progress", "none", *extra]


# ---- builders of bad files: each returns the path it wrote -------------------------------------------


def _image_file(path: Path, array: np.ndarray, spacing=SPACING, **kw) -> Path:
    sitk.WriteImage(make_image(array, spacing=spacing, **kw), str(path))
    return path


def _typed(ws: Workspace, dtype) -> Path:
    array = (blob_array(SHAPE) / 2).astype(dtype)  # 0..~70 fits int8
    return _image_file(ws.bad(f"t1_{np.dtype(dtype).name}.nii.gz"), array)


def _folder(ws: Workspace) -> Path:
    path = ws.bad("empty-folder")
    path.mkdir(exist_ok=True)
    return path


def _empty(ws: Workspace) -> Path:
    path = ws.bad("empty.nii.gz")
    path.write_bytes(b"")
    return path


def _truncated_gzip(ws: Workspace) -> Path:
    data = ws.t1.read_bytes()
    path = ws.bad("cut.nii.gz")
    path.write_bytes(data[: len(data) // 2])
    return path


def _crc_damaged_gzip(ws: Workspace) -> Path:
    data = bytearray(ws.t1.read_bytes())
    data[-6] ^= 0xFF  # inside the CRC-32 / length trailer: every deflate block still decodes
    path = ws.bad("crc.nii.gz")
    path.write_bytes(bytes(data))
    return path


def _invalid_deflate(ws: Workspace) -> Path:
    # a valid gzip header followed by a deflate block of the reserved type 3 (zlib.error, not OSError)
    path = ws.bad("deflate.nii.gz")
    path.write_bytes(bytes.fromhex("1f8b0800000000000003") + b"\x07" + bytes(range(200)))
    return path


def _truncated_nii(ws: Workspace) -> Path:
    whole = _image_file(ws.bad("whole.nii"), blob_array(SHAPE))
    data = whole.read_bytes()
    path = ws.bad("cut.nii")
    path.write_bytes(data[: len(data) * 2 // 3])
    return path


def _text(ws: Workspace) -> Path:
    path = ws.bad("notes.nii")
    path.write_text("this is not an image\n" * 20)
    return path


def _two_d(ws: Workspace) -> Path:
    path = ws.bad("slice2d.nii.gz")
    sitk.WriteImage(sitk.GetImageFromArray(blob_array((1, 24, 24))[0]), str(path))
    return path


def _four_d(ws: Workspace) -> Path:
    path = ws.bad("series4d.nii.gz")
    array = np.stack([blob_array(SHAPE, seed=s) for s in range(3)])
    sitk.WriteImage(sitk.GetImageFromArray(array, isVector=False), str(path))
    return path


def _four_d_single(ws: Workspace) -> Path:
    path = ws.bad("single4d.nii.gz")
    image = sitk.JoinSeries([make_image(blob_array(SHAPE), spacing=SPACING)])
    sitk.WriteImage(image, str(path))
    return path


def _vector(ws: Workspace) -> Path:
    path = ws.bad("rgb.nii.gz")
    array = np.repeat(blob_array(SHAPE)[..., None], 3, axis=-1)
    sitk.WriteImage(sitk.GetImageFromArray(array, isVector=True), str(path))
    return path


def _with_voxel(ws: Workspace, name: str, value: float) -> Path:
    array = blob_array(SHAPE)
    array[12, 12, 12] = value
    return _image_file(ws.bad(name), array)


def _metaimage(ws: Workspace, name: str, spacing="5 5 5", matrix="1 0 0 0 1 0 0 0 1") -> Path:
    """A MetaImage written by hand, so the header can hold what SimpleITK refuses to write."""
    z, y, x = SHAPE
    header = (f"ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = False\n"
              f"CompressedData = False\nTransformMatrix = {matrix}\nOffset = 0 0 0\nElementSpacing = {spacing}\n"
              f"DimSize = {x} {y} {z}\nElementType = MET_FLOAT\nElementDataFile = LOCAL\n")
    path = ws.bad(name)
    path.write_bytes(header.encode() + blob_array(SHAPE).astype("<f4").tobytes())
    return path


def _nrrd(ws: Workspace, name: str, fields: str) -> Path:
    """A raw NRRD written by hand (negative spacings, sheared axes)."""
    z, y, x = SHAPE
    header = f"NRRD0004\ntype: float\ndimension: 3\nsizes: {x} {y} {z}\nencoding: raw\nendian: little\n{fields}\n\n"
    path = ws.bad(name)
    path.write_bytes(header.encode() + blob_array(SHAPE).astype("<f4").tobytes())
    return path


def _detached(ws: Workspace, name: str, reference: str, raw: Path | None) -> Path:
    """A detached header (``.mhd``: ElementDataFile, ``.nhdr``: data file) naming ``reference``; ``raw`` gets voxels."""
    z, y, x = SHAPE
    if raw is not None:
        raw.parent.mkdir(parents=True, exist_ok=True)
        raw.write_bytes(blob_array(SHAPE).astype("<f4").tobytes())
    if name.endswith(".mhd"):
        header = (f"ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = False\n"
                  f"ElementSpacing = 5 5 5\nDimSize = {x} {y} {z}\nElementType = MET_FLOAT\n"
                  f"ElementDataFile = {reference}\n")
    else:
        header = (f"NRRD0004\ntype: float\ndimension: 3\nsizes: {x} {y} {z}\nspacings: 5 5 5\nencoding: raw\n"
                  f"endian: little\ndata file: {reference}\n")
    path = ws.bad(name)
    path.write_text(header)
    return path


def _declares_huge(ws: Workspace) -> Path:
    """A 24^3 uint8 NIfTI whose header is edited to declare 1000^3 voxels, gzipped (a few kB on disk)."""
    plain = ws.bad("huge-source.nii")
    sitk.WriteImage(make_image(np.ones(SHAPE, np.uint8)), str(plain))
    data = bytearray(plain.read_bytes())
    struct.pack_into("<4h", data, 40, 3, 1000, 1000, 1000)
    path = ws.bad("declares-1000-cubed.nii.gz")
    path.write_bytes(gzip.compress(bytes(data)))
    plain.unlink()
    return path


def _sheared_sform(ws: Workspace) -> Path:
    """A NIfTI whose sform gains a shear of 0.5 mm per voxel (its qform is unchanged): 12 mm apart at the far corner."""
    path = ws.bad("sheared-sform.nii")
    sitk.WriteImage(make_image(blob_array(SHAPE), spacing=SPACING), str(path))
    data = bytearray(path.read_bytes())
    assert struct.unpack_from("<2h", data, 252)[1] > 0  # ITK writes an sform
    struct.pack_into("<f", data, 284, struct.unpack_from("<f", data, 284)[0] + 0.5)  # srow_x[1]
    path.write_bytes(bytes(data))
    return path


def _symlink(ws: Workspace, target: Path, name: str) -> Path:
    link = ws.bad(name)
    if not link.exists():
        link.symlink_to(target)
    return link


def _far_away(ws: Workspace) -> Path:
    image = read_image(ws.t2)
    image.SetOrigin((5000.0, 5000.0, 5000.0))
    path = ws.bad("far.nrrd")
    sitk.WriteImage(image, str(path))
    return path


def _copy_bundle(ws: Workspace, name: str) -> Path:
    folder = ws.root / name
    shutil.copytree(ws.bundle, folder)
    return folder


def _tampered_bundle(ws: Workspace) -> Path:
    folder = _copy_bundle(ws, "tampered-bundle")
    weights = folder / "translator.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    return folder


class _Payload:
    """Unpickling this creates ``marker``: the test checks it never exists."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _pickle_bundle(ws: Workspace) -> Path:
    path = ws.bad("model.pkl")
    path.write_bytes(pickle.dumps(_Payload(ws.root / "UNPICKLED")))
    return path


def _traversing_zip(ws: Workspace) -> Path:
    path = ws.bad("bundle.zip")
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("bundle.json", (ws.bundle / "bundle.json").read_text(encoding="utf-8"))
        archive.writestr("../../ESCAPED.safetensors", b"x")
    return path


def _traversing_card(ws: Workspace) -> Path:
    folder = _copy_bundle(ws, "traversing-bundle")
    card = json.loads((folder / "bundle.json").read_text(encoding="utf-8"))
    card["weights"]["../../ESCAPED.safetensors"] = "0" * 64
    (folder / "bundle.json").write_text(json.dumps(card))
    return folder


# ---- the corpus --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Case:
    """One corpus row.

    ``build(ws, out)`` returns ``(argv, culprit)``: the command line and the file or argument that the
    message must name. ``fix`` must appear in the message too. ``exit_code`` 0 means the input is valid.
    """

    name: str
    what: str
    build: Callable[[Workspace, Path], tuple[list[str], str]]
    exit_code: int = 2
    fix: str = ""
    needs_non_root: bool = False


def _one(pair_contrast: str, make: Callable[[Workspace], Path], **kw):
    def build(ws: Workspace, out: Path):
        path = make(ws)
        return synth(ws, out, f"{pair_contrast}={path}", **kw), path.name
    return build


def _works(make: Callable[[Workspace], Path]):
    def build(ws: Workspace, out: Path):
        path = make(ws)
        return synth(ws, out, f"t1={path}"), str(path)  # culprit = the reference input (grid check)
    return build


def _readonly_folder(ws: Workspace, out: Path):
    locked = out / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    return synth(ws, out, f"t1={ws.t1}", output="locked/syn.nii.gz"), "locked"


def _output_is_input(link: str | None = None, output: str = "keep.nii.gz", extra=("--overwrite",)):
    """``--input t1=out/keep.nii.gz`` and an output that is that file (directly, or through a link made here)."""
    def build(ws: Workspace, out: Path):
        if link == "symlink":
            (out / "alias.nii.gz").symlink_to(out / "keep.nii.gz")
        elif link == "hardlink":
            os.link(out / "keep.nii.gz", out / "alias.nii.gz")
        elif link == "sidecar":
            (out / "keep.json").write_text('{"RepetitionTime": 2.3}\n')
        return synth(ws, out, f"t1={out / 'keep.nii.gz'}", output=output, extra=extra), "keep"
    return build


def _two_outputs(uncertainty: str, fix_word: str = ""):
    def build(ws: Workspace, out: Path):
        return synth(ws, out, f"t1={ws.t1}", output="a.nii.gz",
                     extra=("--uncertainty", str(out / uncertainty), "--samples", "2", "--overwrite")), "a."
    return build


CORPUS: tuple[Case, ...] = (
    # unreadable files
    Case("missing path", "input path does not exist",
         lambda ws, out: (synth(ws, out, f"t1={ws.root / 'nope.nii.gz'}"), "nope.nii.gz"), fix="check the path"),
    Case("directory instead of file", "an empty folder given as an input", _one("t1", _folder),
         fix="give an image file or a DICOM series folder"),
    Case("empty file", "0-byte .nii.gz", _one("t1", _empty), fix="re-export or re-copy"),
    Case("truncated gzip", "first half of a .nii.gz", _one("t1", _truncated_gzip), fix="re-export or re-copy"),
    Case("corrupted gzip (CRC)", "one byte of the gzip trailer flipped", _one("t1", _crc_damaged_gzip),
         fix="re-export or re-copy"),
    Case("corrupted gzip (deflate)", "invalid deflate block (zlib.error)", _one("t1", _invalid_deflate),
         fix="re-export or re-copy"),
    Case("truncated .nii", "first two thirds of an uncompressed .nii", _one("t1", _truncated_nii),
         fix="re-export or re-copy"),
    Case("not an image", "a text file named .nii", _one("t1", _text), fix="use NIfTI"),
    # wrong shape or content
    Case("2D image", "a single 24x24 slice", _one("t1", _two_d), fix="give a single 3D volume"),
    Case("4D image", "three volumes in one 4D file", _one("t1", _four_d), fix="split 4D series"),
    Case("4D image, one volume", "4D file whose 4th axis has length 1 (squeezed to 3D)", _works(_four_d_single),
         exit_code=0),
    Case("vector pixels", "3 components per voxel (RGB)", _one("t1", _vector), fix="give a scalar"),
    Case("all-zero volume", "every voxel 0",
         _one("t1", lambda ws: _image_file(ws.bad("zeros.nii.gz"), np.zeros(SHAPE, np.float32))),
         fix="check that the right file"),
    Case("NaN voxel", "one NaN voxel (NRRD)", _one("t1", lambda ws: _with_voxel(ws, "nan.nrrd", np.nan)),
         fix="set them to 0"),
    Case("Inf voxel", "one +Inf voxel (NIfTI)", _one("t1", lambda ws: _with_voxel(ws, "inf.nii.gz", np.inf)),
         fix="set them to 0"),
    Case("int8 input", "int8 voxels", _works(lambda ws: _typed(ws, np.int8)), exit_code=0),
    Case("uint16 input", "uint16 voxels", _works(lambda ws: _typed(ws, np.uint16)), exit_code=0),
    Case("float64 input", "float64 voxels", _works(lambda ws: _typed(ws, np.float64)), exit_code=0),
    Case("header declares 1000^3 voxels", "a few-kB .nii.gz whose header declares 1000x1000x1000 voxels",
         _one("t1", _declares_huge), fix="crop or downsample it first"),
    Case("1-voxel-thick volume", "24x24x1 voxels",
         _one("t1", lambda ws: _image_file(ws.bad("thin.nii.gz"), blob_array((1, 24, 24)))),
         fix="at least 2 voxels along each axis"),
    # header geometry
    Case("zero spacing", "MetaImage header with ElementSpacing 0 5 5",
         _one("t1", lambda ws: _metaimage(ws, "zero-spacing.mha", spacing="0 5 5")), fix="fix the spacing"),
    Case("negative spacing", "NRRD 'spacings: -5 5 5' (ITK reads it as a flipped axis)",
         _works(lambda ws: _nrrd(ws, "negative-spacing.nrrd", "spacings: -5 5 5")), exit_code=0),
    Case("huge spacing", "MetaImage header with ElementSpacing 1e6 5 5",
         _one("t1", lambda ws: _metaimage(ws, "huge-spacing.mha", spacing="1e6 5 5")), fix="fix the header"),
    Case("tiny field of view", "24 voxels of 0.01 mm (0.24 mm) per axis",
         _one("t1", lambda ws: _metaimage(ws, "tiny-fov.mha", spacing="0.01 0.01 0.01")), fix="fix the header"),
    Case("huge field of view", "24 voxels of 100 mm (2.4 m) per axis",
         _one("t1", lambda ws: _metaimage(ws, "huge-fov.mha", spacing="100 100 100")), fix="fix the header"),
    Case("non-orthogonal direction", "NRRD with sheared space directions",
         _one("t1", lambda ws: _nrrd(ws, "sheared.nrrd", "space: left-posterior-superior\n"
                                     "space directions: (5,0,0) (2.5,5,0) (0,0,5)")), fix="resample it"),
    Case("sform and qform disagree", "NIfTI whose sform has a 0.5 mm/voxel shear its qform lacks",
         _one("t1", _sheared_sform), fix="make them agree"),
    Case("fields of view do not overlap", "t2 moved 5 m away, --no-register",
         lambda ws, out: (synth(ws, out, f"t1={ws.t1}", f"t2={_far_away(ws)}", extra=("--no-register",)), "far.nrrd"),
         fix="check that both images"),
    # detached voxel files (MRSynthLib.files.detached_headers)
    Case("MetaImage voxels elsewhere", "ElementDataFile = /etc/passwd",
         _one("t1", lambda ws: _detached(ws, "passwd.mhd", "/etc/passwd", None)),
         fix="keep detached data files beside the header"),
    Case("NRRD data file outside its folder", "data file: ../secret.raw (the file exists)",
         _one("t1", lambda ws: _detached(ws, "outside.nhdr", "../secret.raw", ws.root / "secret.raw")),
         fix="keep detached data files beside the header"),
    Case("detached data file missing", "ElementDataFile = gone.raw (no such file)",
         _one("t1", lambda ws: _detached(ws, "gone.mhd", "gone.raw", None)), fix="copy the data file"),
    Case("detached data file beside its header", "a .mhd header and its .raw in a subfolder",
         _works(lambda ws: _detached(ws, "beside.mhd", "voxels/beside.raw", ws.bad("voxels") / "beside.raw")),
         exit_code=0),
    # contrasts
    Case("unknown contrast name", "--input t3=...",
         lambda ws, out: (synth(ws, out, f"t3={ws.t1}"), "'t3'"), fix="use one of"),
    Case("unknown target", "--target dwi",
         lambda ws, out: (synth(ws, out, f"t1={ws.t1}", target="dwi"), "'dwi'"), fix="use one of"),
    Case("target also given as input", "--input t1ce=... --target t1ce",
         lambda ws, out: (synth(ws, out, f"t1={ws.t1}", f"t1ce={ws.t2}"), "t1ce"), fix="drop --input t1ce"),
    Case("same contrast twice", "--input t1=a --input T1w=b",
         lambda ws, out: (synth(ws, out, f"t1={ws.t1}", f"T1w={ws.t2}"), "t1"), fix="give each contrast once"),
    Case("one file for two contrasts", "--input t1=a.nii.gz --input t2=<symlink to a.nii.gz>",
         lambda ws, out: (synth(ws, out, f"t1={ws.t1}", f"t2={_symlink(ws, ws.t1, 'alias-of-t1.nii.gz')}"),
                          "alias-of-t1.nii.gz"), fix="give each contrast its own scan"),
    Case("malformed --input", "--input t1 (no path)",
         lambda ws, out: (synth(ws, out, "t1"), "'t1'"), fix="CONTRAST=PATH"),
    Case("input contrast the model does not accept", "--input ct=... (model takes MR only)",
         lambda ws, out: (synth(ws, out, f"ct={ws.t1}"), "ct"), fix="drop that input or choose another --model"),
    Case("target the model does not produce", "--target ct",
         lambda ws, out: (synth(ws, out, f"t1={ws.t1}", target="ct"), "ct"), fix="choose another --target or --model"),
    # bundles
    Case("tampered bundle", "one byte of translator.safetensors flipped (sha256 mismatch)",
         lambda ws, out: (synth(ws, out, f"t1={ws.t1}", model=_tampered_bundle(ws)), "translator.safetensors"),
         fix="re-copy the bundle"),
    Case("pickle as bundle", "a pickle whose loading would create a file",
         lambda ws, out: (synth(ws, out, f"t1={ws.t1}", model=_pickle_bundle(ws)), "model.pkl"),
         fix="pickles are not accepted"),
    Case("path-traversing zip as bundle", "zip holding ../../ESCAPED.safetensors",
         lambda ws, out: (synth(ws, out, f"t1={ws.t1}", model=_traversing_zip(ws)), "bundle.zip"),
         fix="unpack it first"),
    Case("bundle card pointing outside", "bundle.json naming ../../ESCAPED.safetensors",
         lambda ws, out: (synth(ws, out, f"t1={ws.t1}", model=_traversing_card(ws)), "ESCAPED"),
         fix="use a bundle exported by mrsynth-train"),
    Case("unknown model", "--model no-such-model",
         lambda ws, out: (synth(ws, out, f"t1={ws.t1}", model="no-such-model"), "no-such-model"), fix="mrsynth models"),
    # outputs
    Case("existing output without --overwrite", "--output names an existing file",
         lambda ws, out: (synth(ws, out, f"t1={ws.t1}", output="keep.nii.gz"), "keep.nii.gz"), fix="pass --overwrite"),
    Case("output folder cannot be created", "--output below a regular file",
         lambda ws, out: (synth(ws, out, f"t1={ws.t1}", output="keep.nii.gz/syn.nii.gz"), "keep.nii.gz"),
         fix="choose another folder"),
    Case("unwritable output folder", "--output in a read-only (0555) folder", _readonly_folder,
         fix="choose a folder you can write to", needs_non_root=True),
    Case("output is a folder", "--output names an existing folder",
         lambda ws, out: (synth(ws, out, f"t1={ws.t1}", output="."), str(out)), fix="give a file path"),
    Case("unsupported output format", "--output syn.png",
         lambda ws, out: (synth(ws, out, f"t1={ws.t1}", output="syn.png"), "syn.png"), fix="use one of"),
    # outputs that are inputs or each other (one planner: MRSynthLib.files.path_guard), --overwrite given every time
    Case("output is an input", "--output keep.nii.gz --input t1=keep.nii.gz --overwrite", _output_is_input(),
         fix="never writes over what it reads"),
    Case("output is a symlink to an input", "--output alias.nii.gz -> keep.nii.gz (= --input t1), --overwrite",
         _output_is_input("symlink", "alias.nii.gz"), fix="never writes over what it reads"),
    Case("output is a hard link to an input", "--output alias.nii.gz, a hard link of --input t1, --overwrite",
         _output_is_input("hardlink", "alias.nii.gz"), fix="never writes over what it reads"),
    Case("output sidecar is an input's sidecar", "--output keep.nrrd beside --input t1=keep.nii.gz and its keep.json",
         _output_is_input("sidecar", "keep.nrrd"), fix="never writes over what it reads"),
    Case("two outputs are one file", "--output a.nii.gz --uncertainty a.nii.gz --overwrite",
         _two_outputs("a.nii.gz"), fix="give each output its own path"),
    Case("two outputs share a sidecar", "--output a.nii.gz --uncertainty a.nrrd (both a.json)",
         _two_outputs("a.nrrd"), fix="give each output its own path"),
    Case("outputs differing only in case", "--output a.nii.gz --uncertainty A.nii.gz",
         _two_outputs("A.nii.gz"), fix="give each output its own path"),
)


def _prepare_output(ws: Workspace, case: Case) -> Path:
    """A fresh output folder per case, holding one existing result that must survive."""
    out = ws.root / "out" / case.name.replace(" ", "-").replace("/", "-")
    out.mkdir(parents=True)
    shutil.copy(ws.t1, out / "keep.nii.gz")
    return out


def snapshot(folder: Path) -> dict[str, tuple]:
    """Every file and folder below ``folder``: size, modification time and sha256 of files."""
    state = {}
    for path in sorted(folder.rglob("*")):
        key = path.relative_to(folder).as_posix()
        if path.is_file():
            state[key] = (path.stat().st_size, path.stat().st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest())
        else:
            state[key] = "folder"
    return state


def run_in_process(argv: list[str]) -> tuple[int, str]:
    """``main(argv)`` with Python-level stderr captured (script mode; pytest uses capfd instead)."""
    stream = io.StringIO()
    with contextlib.redirect_stderr(stream), contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    return code, stream.getvalue()


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Workspace:
    return make_workspace(tmp_path_factory.mktemp("corpus"))


@pytest.mark.parametrize("case", CORPUS, ids=[c.name for c in CORPUS])
def test_corpus_case(workspace, case, capfd):
    if case.needs_non_root and _is_root():
        pytest.skip("running as root: folder permissions are not enforced")
    out = _prepare_output(workspace, case)
    argv, culprit = case.build(workspace, out)
    before = snapshot(out)
    capfd.readouterr()
    code = main(argv)
    err = capfd.readouterr().err
    assert "Traceback" not in err
    assert code == case.exit_code, err
    if case.exit_code == 0:
        reference = read_image(culprit)
        written = read_image(out / "syn.nii.gz")
        assert written.GetSize() == reference.GetSize()
        np.testing.assert_allclose(written.GetSpacing(), reference.GetSpacing(), atol=1e-5)
        np.testing.assert_allclose(written.GetOrigin(), reference.GetOrigin(), atol=1e-4)
        np.testing.assert_allclose(written.GetDirection(), reference.GetDirection(), atol=1e-6)
        assert not err.strip()
        return
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err  # nothing else reaches the user's terminal, not even ITK warnings
    assert lines[0].startswith(ERROR_PREFIX)
    message = lines[0][len(ERROR_PREFIX):]
    assert message.endswith("."), message
    assert culprit in message and case.fix in message, message
    assert snapshot(out) == before  # nothing written, nothing replaced, no temp file left
    assert not (workspace.root / "UNPICKLED").exists()
    assert not any(workspace.root.parent.rglob("ESCAPED*"))


SUBPROCESS_CASES = ("corrupted gzip (deflate)", "truncated .nii", "pickle as bundle",
                    "existing output without --overwrite")


@pytest.mark.parametrize("name", SUBPROCESS_CASES)
def test_no_traceback_reaches_a_real_terminal(workspace, name, tmp_path):
    """The same cases in a real ``python -m MRSynthLib.commands.cli`` process with the default progress bar."""
    case = next(c for c in CORPUS if c.name == name)
    out = _prepare_output(Workspace(tmp_path, workspace.t1, workspace.t2, workspace.bundle), case)
    argv, culprit = case.build(workspace, out)
    argv = [a for a in argv if a not in ("--progress", "none")]
    before = snapshot(out)
    result = subprocess.run([sys.executable, "-m", "MRSynthLib.commands.cli", *argv], capture_output=True, text=True,
                            timeout=120, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith(ERROR_PREFIX) and culprit in errors[0], result.stderr
    assert snapshot(out) == before


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
@pytest.mark.parametrize("position", ["first", "straddles 1 MiB read", "last"])
def test_non_finite_nifti_voxels_are_found_anywhere(tmp_path, suffix, position):
    """ITK turns NaN into 0 when reading NIfTI; imageio scans the raw float64 voxels in 1 MiB reads."""
    array = np.ones((64, 64, 64), np.float64)  # 2 MiB of voxels after the 352-byte header
    array.flat[1] = 2.0
    # the voxel covering byte 540 + 2**20 of the file, where the first 1 MiB read after the header ends
    index = {"first": 0, "straddles 1 MiB read": (540 + 2**20 - 352) // 8, "last": array.size - 1}[position]
    array.flat[index] = np.nan
    path = tmp_path / f"nan{suffix}"
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path))
    assert sitk.GetArrayFromImage(sitk.ReadImage(str(path))).flat[index] == 0  # what ITK alone would give
    with pytest.raises(InputImageError, match="contains 1 NaN or infinite voxels"):
        load_input(path, "input t1")


def test_output_created_meanwhile_by_another_process_is_never_replaced(tmp_path):
    """The existence check happens before the work; the final hard link refuses a file that appeared since."""
    target = tmp_path / "syn.nii.gz"
    with pytest.raises(OutputError, match="another process"):
        with atomic_path(target) as temp:
            temp.write_bytes(b"ours")
            target.write_bytes(b"theirs")  # another run finished first
    assert target.read_bytes() == b"theirs" and [p.name for p in tmp_path.iterdir()] == ["syn.nii.gz"]


def test_batch_case_with_two_files_for_one_contrast_fails_alone(workspace, tmp_path, capsys):
    """A case folder that cannot be a case (t1 twice) is one failed row; the cases around it still run."""
    data = tmp_path / "data"
    for case_id in ("a", "b", "c"):
        (data / case_id).mkdir(parents=True)
        shutil.copy(workspace.t1, data / case_id / "t1.nii.gz")
    shutil.copy(workspace.t2, data / "b" / "T1w.nii.gz")  # a second t1 (alias)
    out = tmp_path / "out"
    code = main(["batch", "--input-dir", str(data), "--target", "flair", "--output-dir", str(out), "--model",
                 str(workspace.bundle), "--progress", "none"])
    assert code == 1
    rows = {row["case"]: row for row in csv.DictReader(open(out / "summary.csv"))}
    assert [rows[c]["status"] for c in "abc"] == ["ok", "failed", "ok"]
    assert "T1w.nii.gz and t1.nii.gz" in rows["b"]["message"] and "remove or rename one" in rows["b"]["message"]
    assert (out / "c" / "flair_synthetic.nii.gz").exists() and not (out / "b").exists()
    assert "3 cases: 2 ok, 0 skipped, 1 failed" in capsys.readouterr().out


def test_threads_above_the_cores_are_capped_with_a_note(workspace, tmp_path, capfd):
    from MRSynthLib.runtime.backends import available_cores

    out = tmp_path / "out"
    out.mkdir()
    capfd.readouterr()
    assert main(synth(workspace, out, f"t1={workspace.t1}", extra=("--threads", "999"))) == 0
    err = capfd.readouterr().err.strip().splitlines()
    assert err == [f"mrsynth synthesize: note: --threads 999 is more than the {available_cores()} CPU cores this "
                   f"process may use; using {available_cores()}."]
    sidecar = json.loads((out / "syn.json").read_text())
    assert sidecar["threads"] == available_cores()


def test_sidecar_records_the_sha256_of_every_input(workspace, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    series = tmp_path / "series"
    series.mkdir()
    assert main(synth(workspace, out, f"t1={workspace.t1}", f"t2={workspace.t2}")) == 0
    sidecar = json.loads((out / "syn.json").read_text())
    assert sidecar["input_sha256"] == {name: hashlib.sha256(path.read_bytes()).hexdigest()
                                       for name, path in (("t1", workspace.t1), ("t2", workspace.t2))}


@pytest.mark.parametrize("argv, message", [
    (["synthesize", "--input", "t1=x.nii.gz", "--target", "t2", "--output", "o.nii.gz", "--uncertainty", "u.nii.gz",
      "--seed", "-1"], "--seed: must be between 0 and 4294967295, not -1"),
    (["compare", "--target", "t2", "--output-dir", "out"], "the following arguments are required: --input"),
])
def test_usage_errors_name_the_argument(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_evaluate_refuses_a_colour_prediction_in_one_line(workspace, tmp_path, capfd):
    rgb = tmp_path / "rgb.nii.gz"
    sitk.WriteImage(sitk.Compose([read_image(workspace.t1)] * 3), str(rgb))
    capfd.readouterr()
    assert main(["evaluate", "--reference", str(workspace.t1), "--prediction", str(rgb)]) == 2
    lines = capfd.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "--prediction" in lines[0] and "give a scalar" in lines[0]


def test_main_restores_the_sigterm_handler():
    before = signal.getsignal(signal.SIGTERM)
    assert main(["models", "--json"]) == 0
    assert signal.getsignal(signal.SIGTERM) is before


def test_docs_have_a_row_for_every_corpus_case():
    """docs/RELIABILITY.md is regenerated with --markdown; at least its list of cases must be current."""
    text = (REPO / "docs" / "RELIABILITY.md").read_text(encoding="utf-8")
    rows = {line.split("|")[1].strip() for line in text.splitlines() if line.startswith("| ") and line.count("|") >= 5}
    assert {case.name for case in CORPUS} <= rows


def corpus_markdown() -> str:
    """Run every case in a temporary folder and return the markdown table of docs/RELIABILITY.md."""
    rows = ["| case | what the test feeds in | exit | message (temporary folder shown as `…`) |", "|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        ws = make_workspace(Path(tmp) / "corpus")
        for case in CORPUS:
            out = _prepare_output(ws, case)
            if case.needs_non_root and _is_root():
                rows.append(f"| {case.name} | {case.what} | {case.exit_code} (expected) | not run here: running as "
                            f"root, where folder permissions are not enforced (the test skips it) |")
                continue
            argv, _ = case.build(ws, out)
            code, err = run_in_process(argv)
            line = next((ln for ln in err.splitlines() if ln.startswith(ERROR_PREFIX)), "")
            works = "works: synthesized on the input's grid"
            message = line[len(ERROR_PREFIX):] if line else (works if code == 0 else err)
            message = message.replace(str(ws.root), "…").replace("|", "\\|")
            rows.append(f"| {case.name} | {case.what} | {code} | {message} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", action="store_true", help="print the corpus table (docs/RELIABILITY.md)")
    if parser.parse_args().markdown:
        sys.stdout.reconfigure(encoding="utf-8")
        print(corpus_markdown(), end="")
    else:
        sys.exit(pytest.main([__file__, "-q", "-p", "no:cacheprovider"]))


@contextlib.contextmanager
def _small_filesystem(root: Path, size: str):
    """A real tmpfs of ``size`` mounted at ``root`` (needs root and mount rights; the caller skips otherwise)."""
    root.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(root)], capture_output=True)
    if mounted.returncode != 0:
        root.rmdir()
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.decode().strip() or 'mount failed'})")
    try:
        yield root
    finally:
        subprocess.run(["umount", "-l", str(root)], capture_output=True)
        root.rmdir()


FULL_DISK = pytest.mark.skipif(not _is_root() or not shutil.which("mount"),
                               reason="a real full disk needs root to mount a tmpfs")


def _fill(folder: Path) -> None:
    """Take every free byte of the file system at ``folder``."""
    (folder / "filler.bin").write_bytes(b"\0" * shutil.disk_usage(folder).free)


@FULL_DISK
@pytest.mark.parametrize("output", ["syn.nii.gz", "syn.nii", "syn.nrrd"])
def test_full_disk_leaves_no_file_and_one_line(workspace, tmp_path, capfd, output):
    """On a real, full file system: one sentence, exit 2, nothing under the final names, no temporary file, and
    nothing printed by ITK's C libraries (NIfTI's "** ERROR: NWAD ...")."""
    with _small_filesystem(tmp_path / "full", "64k") as full:
        _fill(full)
        capfd.readouterr()
        code = main(synth(workspace, full, f"t1={workspace.t1}", output=output))
        err = capfd.readouterr().err
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
        assert "free space there or choose another folder" in lines[0]
        assert sorted(p.name for p in full.iterdir()) == ["filler.bin"]


@FULL_DISK
def test_full_disk_sidecar_write_is_one_sentence(tmp_path):
    from MRSynthLib.files.atomic import write_json

    with _small_filesystem(tmp_path / "full", "64k") as full:
        _fill(full)
        with pytest.raises(OutputError, match="no space left on device .* free space there"):
            write_json(full / "syn.json", {"kind": "synthetic", "text": "x" * 10000})
        assert sorted(p.name for p in full.iterdir()) == ["filler.bin"]


def test_batch_output_dir_that_is_a_file_fails_before_any_case(workspace, tmp_path, capfd):
    data = tmp_path / "data" / "a"
    data.mkdir(parents=True)
    shutil.copy(workspace.t1, data / "t1.nii.gz")
    blocker = tmp_path / "out-file"
    blocker.write_text("not a folder")
    capfd.readouterr()
    code = main(["batch", "--input-dir", str(tmp_path / "data"), "--target", "flair", "--output-dir", str(blocker),
                 "--model", str(workspace.bundle), "--progress", "none"])
    lines = capfd.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "is a file, not a folder" in lines[0]


def test_batch_case_named_dot_dot_cannot_write_outside(workspace, tmp_path, monkeypatch):
    """``--input-dir ..`` naming a single case folder: the case would be called '..' and land beside --output-dir."""
    case = tmp_path / "case"
    (case / "here").mkdir(parents=True)
    shutil.copy(workspace.t1, case / "t1.nii.gz")
    monkeypatch.chdir(case / "here")
    out = tmp_path / "runs" / "out"
    code = main(["batch", "--input-dir", "..", "--target", "flair", "--output-dir", str(out), "--model",
                 str(workspace.bundle), "--progress", "none"])
    written = sorted(p.relative_to(tmp_path).as_posix() for p in (tmp_path / "runs").rglob("*") if p.is_file())
    assert all(path.startswith("runs/out/") for path in written), written
    rows = list(csv.DictReader(open(out / "summary.csv")))
    assert code in (0, 1) and all(r["status"] in ("ok", "failed") for r in rows)
    assert all("would write outside" in r["message"] for r in rows if r["status"] == "failed")


def test_upper_case_output_suffix_is_written(workspace, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    assert main(synth(workspace, out, f"t1={workspace.t1}", output="OUT.NII.GZ")) == 0
    assert read_image(out / "OUT.NII.GZ").GetSize() == read_image(workspace.t1).GetSize()


def test_uncertainty_with_one_sample_is_refused(workspace, tmp_path, capfd):
    out = tmp_path / "out"
    out.mkdir()
    capfd.readouterr()
    code = main(synth(workspace, out, f"t1={workspace.t1}", extra=("--uncertainty", str(out / "u.nii.gz"),
                                                                     "--samples", "1")))
    assert code == 2 and "--uncertainty needs --samples of at least 2, not 1" in capfd.readouterr().err
    assert not list(out.iterdir())


def test_compare_leaves_nothing_when_a_later_model_fails(workspace, tmp_path, capfd):
    """The second bundle cannot produce the target: the first model's finished files are removed too."""
    broken = tmp_path / "t1-only"
    shutil.copytree(workspace.bundle, broken)
    card = json.loads((broken / "bundle.json").read_text())
    card["name"], card["output_contrasts"] = "t1-only", ["t1"]
    (broken / "bundle.json").write_text(json.dumps(card))
    out = tmp_path / "cmp"
    code = main(["compare", "--input", f"t1={workspace.t1}", "--target", "flair", "--output-dir", str(out),
                 "--model", str(workspace.bundle), "--model", str(broken)])
    assert code == 2 and "t1-only" in capfd.readouterr().err
    assert not out.exists() or not [p for p in out.rglob("*") if p.is_file()]


def test_registering_an_input_from_metres_away_says_so(workspace, tmp_path, capfd):
    out = tmp_path / "out"
    out.mkdir()
    far = _far_away(workspace)
    capfd.readouterr()
    assert main(synth(workspace, out, f"t1={workspace.t1}", f"t2={far}")) == 0
    lines = capfd.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mrsynth synthesize: note: input t2") and "mm apart" in lines[0]
    assert "did not overlap" in json.loads((out / "syn.json").read_text())["alignment"]["t2"]["note"]


def test_series_choice_reaches_the_sidecar(workspace, tmp_path, capfd):
    from support.dicom import _int16_volume, write_dicom_series

    folder = tmp_path / "dicom"
    folder.mkdir()
    write_dicom_series(folder, _int16_volume(0, 8), uid="1.2.3.1", prefix="a")
    write_dicom_series(folder, _int16_volume(1, 8), uid="1.2.3.2", prefix="b")
    out = tmp_path / "out"
    out.mkdir()
    capfd.readouterr()
    assert main(synth(workspace, out, f"t1={folder}")) == 2
    assert "--series t1=UID" in capfd.readouterr().err and not list(out.iterdir())
    assert main(synth(workspace, out, f"t1={folder}", extra=("--series", "t1=1.2.3.2"))) == 0
    sidecar = json.loads((out / "syn.json").read_text())
    assert sidecar["dicom_series"] == {"t1": "1.2.3.2"} and len(sidecar["input_sha256"]["t1"]) == 64

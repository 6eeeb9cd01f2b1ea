"""Seeded, co-registered multi-contrast 3D brain MRI phantoms with known ground truth.

A phantom is a skull-stripped brain (CSF, cortical and deep gray matter, white matter,
optionally a glioma and MS-like lesions) defined analytically in millimetres, sampled with
partial volume on any grid, and imaged with closed-form signal equations from tabulated
relaxation times. Used for tests, the demo and model training.

Conventions:
    * numpy arrays are in SimpleITK index order ``(z, y, x)``; sizes/spacings are ``(x, y, z)``.
    * Physical axes are LPS (+x left, +y posterior, +z superior); direction is identity and the
      grid is centred at 0 mm.
    * The anatomy is real-sized (about 136 x 168 x 116 mm) when the field of view allows, and is
      shrunk uniformly to fill 80 % of the most limiting axis otherwise, so any size/spacing works.
      The same seed gives the same brain at every resolution (up to that uniform scale).

Importing this module is cheap (numpy only); SimpleITK is imported by the functions needing it.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from MRSynthLib.errors import MRSynthError, OutputError

if TYPE_CHECKING:  # pragma: no cover
    import SimpleITK

__all__ = [
    "CONTRASTS",
    "LABELS",
    "RELAXATION_TIMES",
    "PhantomConfig",
    "Phantom",
    "generate_phantom",
    "write_phantom_case",
]

_GENERATOR = "MRSynthLib.phantom"
_GENERATOR_VERSION = "1.0"

CONTRASTS: tuple[str, ...] = ("t1", "t1ce", "t2", "flair", "pd")
"""Contrasts every phantom has, in this order."""

LABELS: dict[int, str] = {
    0: "background",
    1: "csf",
    2: "gray_matter",
    3: "white_matter",
    4: "necrosis",
    5: "enhancing_tumour",
    6: "oedema",
    7: "ms_lesion",
}
"""Values of the label map. Phantoms are skull-stripped: everything outside the brain is 0."""

# Relaxation times: field strength (T) -> tissue -> (T1 ms, T2 ms, PD relative to pure water).
#   * White and gray matter: Stanisz GJ et al., "T1, T2 relaxation and magnetization transfer in
#     tissue at 3T", Magn Reson Med 2005;54:507-512 (in vivo values at 1.5 T and 3 T). One study
#     for both fields keeps the field dependence consistent; Wansapura JP et al., JMRI
#     1999;9:531-538 report comparable 3 T values (WM T1 ~830 ms, GM T1 ~1330 ms).
#   * CSF: approximate literature consensus (T1 ~4 s, weakly field dependent; T2 ~2 s).
#   * PD: approximate relative water content (WM ~0.70, GM ~0.80, CSF 1.0).
#   * Necrosis, enhancing tumour, oedema and MS lesions: APPROXIMATE values chosen within ranges
#     reported in the glioma / MS relaxometry literature (pathology is heterogeneous; these are
#     representative, not measured constants): oedema and lesions have prolonged T1/T2, necrosis
#     is fluid-like, enhancing tumour is intermediate.
RELAXATION_TIMES: dict[float, dict[str, tuple[float, float, float]]] = {
    1.5: {
        "csf": (4000.0, 2000.0, 1.00),
        "gray_matter": (1124.0, 95.0, 0.80),
        "white_matter": (884.0, 72.0, 0.70),
        "necrosis": (2500.0, 400.0, 0.95),
        "enhancing_tumour": (1300.0, 110.0, 0.85),
        "oedema": (1200.0, 160.0, 0.86),
        "ms_lesion": (1100.0, 130.0, 0.80),
    },
    3.0: {
        "csf": (4300.0, 1800.0, 1.00),
        "gray_matter": (1820.0, 99.0, 0.80),
        "white_matter": (1084.0, 69.0, 0.70),
        "necrosis": (3000.0, 350.0, 0.95),
        "enhancing_tumour": (1600.0, 100.0, 0.85),
        "oedema": (1500.0, 150.0, 0.86),
        "ms_lesion": (1400.0, 120.0, 0.80),
    },
}

# Gadolinium (gadopentetate-like) T1 relaxivity in 1/(mM s) per field (approximate plasma values,
# e.g. Rohrer M et al., Invest Radiol 2005;40:715-724) and tissue concentration in mM.
_GD_RELAXIVITY: dict[float, float] = {1.5: 4.1, 3.0: 3.7}
_GD_CONCENTRATION_MM: dict[str, float] = {"enhancing_tumour": 0.3}

# Pseudo-CT (``PhantomConfig.ct``): unenhanced head-CT attenuation per tissue in Hounsfield units.
# APPROXIMATE textbook values (e.g. the ranges on Radiopaedia's "Hounsfield unit" page and in standard
# neuroradiology texts: CSF 0-15, white matter 20-30, gray matter 37-45 HU; vasogenic oedema and
# demyelinating lesions hypodense to white matter; necrosis near fluid; solid glioma near gray matter).
# The phantom is skull-stripped, so there is no bone, scalp or fat: everything outside the brain is air.
CT_HOUNSFIELD: dict[str, float] = {
    "background": -1000.0,  # air (skull-stripped: no skull or scalp)
    "csf": 8.0,
    "gray_matter": 40.0,
    "white_matter": 28.0,
    "necrosis": 15.0,
    "enhancing_tumour": 38.0,
    "oedema": 18.0,
    "ms_lesion": 22.0,
}

_WM_SIGNAL = 1000.0  # every contrast is scaled so that pure, unbiased white matter reads this


class _PhantomConfigError(MRSynthError, ValueError):
    """Invalid :class:`PhantomConfig` value (a ValueError and a one-line MRSynthError)."""


class _PhantomExistsError(OutputError, FileExistsError):
    """Refused to overwrite a phantom case (a FileExistsError and a one-line OutputError)."""


@dataclass(frozen=True)
class _Sequence:
    """Closed-form magnitude signal of one acquisition (times in ms)."""

    kind: str  # "spin_echo" or "inversion_recovery"
    tr_ms: float
    te_ms: float
    ti_ms: float | None = None
    note: str = ""

    def signal(self, t1: float, t2: float, pd: float) -> float:
        """Signal of a pure tissue (arbitrary units, 1 = fully relaxed water at TE 0)."""
        e_tr = math.exp(-self.tr_ms / t1)
        if self.kind == "spin_echo":
            m = 1.0 - e_tr
        else:
            m = abs(1.0 - 2.0 * math.exp(-self.ti_ms / t1) + e_tr)
        return pd * m * math.exp(-self.te_ms / t2)


# The T1-weighted images use an inversion-prepared (MPRAGE-like) model: with realistic proton
# densities a plain TR=500 ms spin echo gives almost no GM/WM contrast at 1.5 T.
_SEQUENCES: dict[float, dict[str, _Sequence]] = {
    1.5: {
        "t1": _Sequence("inversion_recovery", 2000.0, 4.0, 800.0, "MPRAGE-like, magnitude IR"),
        "t1ce": _Sequence("inversion_recovery", 2000.0, 4.0, 800.0, "t1 after gadolinium"),
        "t2": _Sequence("spin_echo", 4000.0, 100.0),
        "flair": _Sequence("inversion_recovery", 9000.0, 100.0, 2400.0, "CSF nulled"),
        "pd": _Sequence("spin_echo", 5000.0, 12.0),
    },
    3.0: {
        "t1": _Sequence("inversion_recovery", 2300.0, 3.0, 1100.0, "MPRAGE-like, magnitude IR"),
        "t1ce": _Sequence("inversion_recovery", 2300.0, 3.0, 1100.0, "t1 after gadolinium"),
        "t2": _Sequence("spin_echo", 4000.0, 100.0),
        "flair": _Sequence("inversion_recovery", 9000.0, 100.0, 2500.0, "CSF nulled"),
        "pd": _Sequence("spin_echo", 5000.0, 12.0),
    },
}

# Nominal (full-size) brain ellipsoid semi-axes in mm (x left-right, y antero-posterior, z).
_BRAIN_SEMI = (68.0, 84.0, 58.0)
_FILL = 0.8  # fraction of the most limiting FOV axis the brain fills when it has to be shrunk
_FAR = np.float32(-1.0e3)  # "very far outside" signed distance


@dataclass(frozen=True)
class PhantomConfig:
    """Parameters of a phantom. Sizes and spacings are (x, y, z) like SimpleITK ``GetSize()``.

    Attributes:
        size: voxels along x, y, z (each >= 4).
        spacing: voxel size in mm along x, y, z.
        field_strength: 1.5 or 3.0 tesla; selects relaxation times and sequence timings.
        seed: random seed; everything is a deterministic function of the config.
        tumour: add a glioma (necrotic core, enhancing rim, infiltrative oedema, mass effect).
        ms_lesions: number of MS-like lesions (periventricular and deep white matter).
        deformation_mm: RMS amplitude (per axis, mm of a full-size brain) of the smooth random
            deformation; a small random rotation/scaling is always applied as well.
        bias_field: RMS of the log of the smooth multiplicative bias field (0 = none); each
            contrast gets its own field (partly shared between contrasts).
        noise: Rician noise sigma relative to the white-matter signal (0 = noise-free).
        partial_volume: mix tissue signals by sub-voxel fractions at boundaries.
        ct: also make a pseudo-CT ``images["ct"]`` in Hounsfield units (:data:`CT_HOUNSFIELD` mixed by the
            tissue fractions, air outside the skull-stripped brain, Gaussian noise ``ct_noise_hu``, no bias
            field); off by default, and the MR images are the same either way.
        ct_noise_hu: standard deviation of the pseudo-CT's Gaussian noise in HU (quantum noise of a head CT
            is a few HU).
    """

    size: tuple[int, int, int] = (96, 112, 96)
    spacing: tuple[float, float, float] = (2.0, 2.0, 2.0)
    field_strength: float = 3.0
    seed: int = 0
    tumour: bool = True
    ms_lesions: int = 0
    deformation_mm: float = 4.0
    bias_field: float = 0.2
    noise: float = 0.02
    partial_volume: bool = True
    ct: bool = False
    ct_noise_hu: float = 5.0

    def __post_init__(self) -> None:
        def fail(msg: str) -> None:
            raise _PhantomConfigError(f"Invalid phantom configuration: {msg}")

        try:
            size = tuple(int(v) for v in self.size)
            spacing = tuple(float(v) for v in self.spacing)
        except (TypeError, ValueError):
            fail(f"size and spacing must be 3 numbers each, not {self.size!r} and {self.spacing!r}.")
        if len(size) != 3 or any(v < 4 for v in size) or size != tuple(self.size):
            fail(f"size must be 3 integers >= 4 (x, y, z), not {self.size!r}.")
        if len(spacing) != 3 or not all(math.isfinite(v) and v > 0 for v in spacing):
            fail(f"spacing must be 3 positive numbers in mm (x, y, z), not {self.spacing!r}.")
        field_t = float(self.field_strength)
        if field_t not in RELAXATION_TIMES:
            fail(f"field_strength must be one of {sorted(RELAXATION_TIMES)} T, not {self.field_strength!r}.")
        if isinstance(self.seed, bool) or int(self.seed) != self.seed or self.seed < 0:
            fail(f"seed must be a non-negative integer, not {self.seed!r}.")
        if int(self.ms_lesions) != self.ms_lesions or self.ms_lesions < 0:
            fail(f"ms_lesions must be a non-negative integer, not {self.ms_lesions!r}.")
        for name in ("deformation_mm", "bias_field", "noise", "ct_noise_hu"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                fail(f"{name} must be a finite number >= 0, not {value!r}.")
        object.__setattr__(self, "size", size)
        object.__setattr__(self, "spacing", spacing)
        object.__setattr__(self, "field_strength", field_t)
        object.__setattr__(self, "seed", int(self.seed))
        object.__setattr__(self, "ms_lesions", int(self.ms_lesions))
        object.__setattr__(self, "tumour", bool(self.tumour))
        object.__setattr__(self, "partial_volume", bool(self.partial_volume))
        object.__setattr__(self, "ct", bool(self.ct))
        object.__setattr__(self, "ct_noise_hu", float(self.ct_noise_hu))
        for name in ("deformation_mm", "bias_field", "noise"):
            object.__setattr__(self, name, float(getattr(self, name)))


@dataclass(frozen=True, eq=False)
class Phantom:
    """A generated phantom: images, ground-truth labels and mask on one grid.

    Attributes:
        images: contrast -> float32 3D image (white matter ~1000), all on the same grid; with
            ``config.ct`` also ``ct`` in Hounsfield units.
        labels: uint8 label map, values of :data:`LABELS` (argmax of the tissue fractions).
        brain_mask: uint8 0/1 (``labels > 0``).
        config: the configuration it was generated from.
    """

    images: dict[str, "SimpleITK.Image"]
    labels: "SimpleITK.Image"
    brain_mask: "SimpleITK.Image"
    config: PhantomConfig
    _details: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def provenance(self) -> dict:
        """JSON-able record: generator name and version, config, relaxation table, sequences."""
        fs = self.config.field_strength
        r1 = _GD_RELAXIVITY[fs]
        return {
            "generator": _GENERATOR,
            "generator_version": _GENERATOR_VERSION,
            "config": _jsonable(asdict(self.config)),
            "field_strength_t": fs,
            "labels": {str(k): v for k, v in LABELS.items()},
            "relaxation_times": {
                tissue: {"t1_ms": t1, "t2_ms": t2, "pd": pd}
                for tissue, (t1, t2, pd) in RELAXATION_TIMES[fs].items()
            },
            "sequences": {
                c: {k: v for k, v in asdict(seq).items() if v not in (None, "")}
                for c, seq in _SEQUENCES[fs].items()
            },
            "gadolinium": {
                "contrast": "t1ce",
                "relaxivity_per_mm_per_s": r1,
                "concentration_mm": dict(_GD_CONCENTRATION_MM),
            },
            "signal_equations": {
                "spin_echo": "PD * (1 - exp(-TR/T1)) * exp(-TE/T2)",
                "inversion_recovery": "PD * |1 - 2 exp(-TI/T1) + exp(-TR/T1)| * exp(-TE/T2)",
                "gadolinium": "1/T1' = 1/T1 + r1 * C",
                "mixing": "sum over tissues of fraction * signal (partial volume)",
                "scaling": f"pure unbiased white matter = {_WM_SIGNAL:g} in every contrast",
                "bias": "signal * exp(bias_field * g(x)), g smooth with unit RMS, one per contrast",
                "noise": "Rician: sqrt((S + n1)^2 + n2^2), n1, n2 ~ N(0, noise * 1000)",
            },
            "geometry": {
                "size": list(self.config.size),
                "spacing": list(self.config.spacing),
                "origin": list(self.labels.GetOrigin()) if self.labels is not None else None,
                "direction": list(self.labels.GetDirection()) if self.labels is not None else None,
                "axes": "LPS (+x left, +y posterior, +z superior)",
            },
            "anatomy": _jsonable(dict(self._details)),
            **({"pseudo_ct": {
                "hounsfield_units": dict(CT_HOUNSFIELD),
                "mixing": "sum over tissues of fraction * HU (partial volume); background = air",
                "noise": f"Gaussian, sigma {self.config.ct_noise_hu:g} HU; no bias field",
                "note": "skull-stripped: no bone, scalp or fat; approximate textbook HU values",
            }} if self.config.ct else {}),
        }


# --------------------------------------------------------------------------------------------
# smooth random fields


@dataclass(frozen=True)
class _Waves:
    """Sum of plane waves ``sum_k a_k sin(k_k . p + phi_k)`` with unit RMS; p in mm."""

    k: np.ndarray  # (n, 3) wave vectors (x, y, z) in rad/mm
    phase: np.ndarray  # (n,)
    amp: np.ndarray  # (n,)

    @staticmethod
    def draw(rng: np.random.Generator, n: int, wavelength_mm: tuple[float, float]) -> "_Waves":
        direction = rng.standard_normal((n, 3))
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        wavelength = rng.uniform(*wavelength_mm, size=n)
        amp = rng.standard_normal(n)
        amp *= math.sqrt(2.0 / float(np.sum(amp**2)))  # sum a^2 / 2 == 1 -> unit RMS
        phase = rng.uniform(0.0, 2.0 * math.pi, size=n)
        return _Waves(direction * (2.0 * math.pi / wavelength)[:, None], phase, amp)

    def at(self, px: np.ndarray, py: np.ndarray, pz: np.ndarray) -> np.ndarray:
        """Evaluate at points of any (common) shape; float32."""
        out = np.zeros(np.broadcast(px, py, pz).shape, np.float32)
        tmp = np.empty_like(out)
        for (kx, ky, kz), ph, a in zip(self.k.astype(np.float32), self.phase, self.amp):
            np.multiply(px, kx, out=tmp)
            tmp += py * ky
            tmp += pz * kz
            tmp += np.float32(ph)
            np.sin(tmp, out=tmp)
            tmp *= np.float32(a)
            out += tmp
        return out

    def on_grid(self, gx: np.ndarray, gy: np.ndarray, gz: np.ndarray) -> np.ndarray:
        """Evaluate on the tensor grid of 1D axes -> (z, y, x) float32, via one small GEMM."""
        c = self.amp * np.exp(1j * self.phase)
        ez = np.exp(1j * np.outer(self.k[:, 2], gz))  # (n, Z)
        ey = np.exp(1j * np.outer(self.k[:, 1], gy))  # (n, Y)
        ex = np.exp(1j * np.outer(self.k[:, 0], gx))  # (n, X)
        p = (c[:, None, None] * ez[:, :, None] * ey[:, None, :]).reshape(len(c), -1).T
        # Im(p @ ex) = Re(p) @ Im(ex) + Im(p) @ Re(ex)
        out = np.ascontiguousarray(p.real, np.float32) @ np.ascontiguousarray(ex.imag, np.float32)
        out += np.ascontiguousarray(p.imag, np.float32) @ np.ascontiguousarray(ex.real, np.float32)
        return out.reshape(len(gz), len(gy), len(gx))


# --------------------------------------------------------------------------------------------
# geometry helpers


def _ellipsoid_sd(
    dx: np.ndarray, dy: np.ndarray, dz: np.ndarray, rx: Any, ry: Any, rz: Any, y_power: int = 2
) -> np.ndarray:
    """Approximate signed distance (mm, positive inside) to an axis-aligned (super)ellipsoid.

    ``rho^2 = (dx/rx)^2 + |dy/ry|^power + (dz/rz)^2`` and ``sd = (1 - rho) / |grad rho|``, exact
    for spheres and along the axes, first-order accurate near the surface elsewhere.
    """
    ux, uy, uz = dx / rx, dy / ry, dz / rz
    if y_power == 2:
        rho2 = ux * ux + uy * uy + uz * uz
        gy = uy / ry
    else:
        uy2 = uy * uy
        rho2 = ux * ux + uy2 * uy2 + uz * uz
        gy = 2.0 * uy2 * uy / ry
    g = (ux / rx) ** 2 + gy * gy + (uz / rz) ** 2  # |grad(rho^2)/2|^2
    rho = np.sqrt(rho2)
    r_min = float(np.min([np.min(rx), np.min(ry), np.min(rz)]))
    scale = np.full(rho.shape, r_min, np.float32)
    np.divide(rho, np.sqrt(g), out=scale, where=g > 0)  # 1 / |grad rho|
    return ((1.0 - rho) * scale).astype(np.float32, copy=False)


def _spheroid_sd(
    dx: np.ndarray, dy: np.ndarray, dz: np.ndarray, axis: np.ndarray, r_long: float, r_short: float
) -> np.ndarray:
    """Approximate signed distance to a prolate spheroid with long axis ``axis`` (unit vector)."""
    p = dx * axis[0] + dy * axis[1] + dz * axis[2]
    q2 = np.maximum(dx * dx + dy * dy + dz * dz - p * p, 0.0)
    rho2 = (p / r_long) ** 2 + q2 / r_short**2
    g = p * p / r_long**4 + q2 / r_short**4
    rho = np.sqrt(rho2)
    scale = np.full(rho.shape, r_short, np.float32)
    np.divide(rho, np.sqrt(g), out=scale, where=g > 0)
    return ((1.0 - rho) * scale).astype(np.float32, copy=False)


def _point_depth(point: np.ndarray) -> float:
    """Depth (mm) of an anatomy point below the undeformed nominal brain surface."""
    coords = [np.array([v], np.float32) for v in point]
    return float(_ellipsoid_sd(*coords, *_BRAIN_SEMI)[0])


def _rotation(ax: float, ay: float, az: float) -> np.ndarray:
    """Rotation matrix from angles (rad) about x, y, z."""
    (cx, sx), (cy, sy), (cz, sz) = ((math.cos(a), math.sin(a)) for a in (ax, ay, az))
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


class _Grid:
    """The sampling grid in nominal (full-size brain) millimetres, plus an anatomy map."""

    def __init__(self, config: PhantomConfig) -> None:
        size = np.array(config.size, float)
        spacing = np.array(config.spacing, float)
        fov = size * spacing
        extent = 2.0 * np.array(_BRAIN_SEMI)
        self.scale = float(min(1.0, np.min(_FILL * fov / extent)))  # physical mm per nominal mm
        self.origin = tuple(float(v) for v in -(size - 1.0) / 2.0 * spacing)
        self.spacing = spacing
        self.size = tuple(int(v) for v in size)
        self.step = spacing / self.scale  # nominal mm per voxel (x, y, z)
        # partial-volume ramp width (nominal mm): geometric mean voxel edge
        self.pv_width = float(np.prod(self.step) ** (1.0 / 3.0))
        self.axes = tuple(
            ((np.arange(n) - (n - 1) / 2.0) * st).astype(np.float64) for n, st in zip(self.size, self.step)
        )  # gx, gy, gz nominal mm
        self.matrix = np.eye(3)
        self.shift_bound = 0.0  # bound on |anatomy - matrix @ grid| (deformation + mass effect)

    def box(self, centre: np.ndarray, radius: float) -> tuple[slice, slice, slice] | None:
        """Index box (z, y, x slices) containing every voxel whose anatomy point is within
        ``radius`` of ``centre`` (anatomy coordinates), or None when it misses the grid."""
        g = np.linalg.solve(self.matrix, centre)
        sigma_min = float(np.linalg.svd(self.matrix, compute_uv=False).min())
        r = (radius + self.shift_bound) / sigma_min + 1.5 * float(self.step.max())
        slices = []
        for axis in (2, 1, 0):
            n, st = self.size[axis], self.step[axis]
            lo = int(math.floor((g[axis] - r) / st + (n - 1) / 2.0))
            hi = int(math.ceil((g[axis] + r) / st + (n - 1) / 2.0)) + 1
            lo, hi = max(lo, 0), min(hi, n)
            if hi <= lo:
                return None
            slices.append(slice(lo, hi))
        return tuple(slices)  # type: ignore[return-value]


def _ramp(sd: np.ndarray, width: float, partial_volume: bool) -> np.ndarray:
    """Fraction of a voxel inside a region from its centre's signed distance (float32)."""
    if not partial_volume:
        return (sd > 0).astype(np.float32)
    out = sd * np.float32(1.0 / width)
    out += np.float32(0.5)
    return np.clip(out, 0.0, 1.0, out=out)


# --------------------------------------------------------------------------------------------
# anatomy


def _ventricle_centreline(y: Any, side: int, size: float) -> tuple[Any, Any, Any, Any]:
    """Lateral ventricle centreline x(y), z(y) and half-widths rx(y), rz(y) (nominal mm, LPS).

    ``size`` scales the cross-section (atrophy); the septum between the frontal horns stays.
    """
    t = (np.clip(y, -34.0, 32.0) + 34.0) / 66.0  # 0 at frontal horn tip, 1 at the atrium
    rx = (4.5 + 1.5 * t) * size
    rz = (8.0 - 2.5 * t) * min(size, 1.2)
    xc = side * (1.3 + rx + 11.0 * t**1.5)
    zc = 6.0 - 0.005 * np.square(y - 2.0)
    return xc, zc, rx, rz


@dataclass(frozen=True)
class _Subject:
    """The random anatomy of one phantom, drawn from its own stream before anything touches the grid."""

    angles: np.ndarray  # head rotation (rad) about x, y, z
    scales: np.ndarray  # per-axis scale
    deform: list  # three smooth displacement fields (x, y, z)
    folds: _Waves  # the sulcal pattern
    bends: list  # sideways bending of the sulci with depth (x, y, z)
    depth_waves: _Waves  # sulcal depth
    atrophy: float  # 0 young .. 1 atrophic: widens CSF spaces, sulci, fissure and ventricles
    cortex: float  # cortical thickness (mm)
    vent_size: float
    nuclei_jitter: np.ndarray  # (3 nuclei, 2 sides, xyz) mm
    egg: float  # posterior widening of the brain

    @property
    def outer_csf(self) -> float:
        return 1.0 + 1.5 * self.atrophy

    @property
    def sulcus_half(self) -> float:
        return 0.45 + 0.6 * self.atrophy

    @property
    def fissure_half(self) -> float:
        return 0.8 + 1.0 * self.atrophy


def _draw_subject(rng: np.random.Generator) -> _Subject:
    angles = rng.uniform(-1.0, 1.0, 3) * np.radians([4.0, 3.0, 5.0])
    scales = rng.uniform(0.95, 1.05, 3)
    deform = [_Waves.draw(rng, 8, (110.0, 220.0)) for _ in range(3)]
    folds = _Waves.draw(rng, 48, (13.0, 19.0))
    bends = [_Waves.draw(rng, 6, (25.0, 45.0)) for _ in range(3)]
    depth_waves = _Waves.draw(rng, 10, (50.0, 90.0))
    atrophy = float(rng.uniform(0.0, 1.0)) ** 2  # mostly young brains
    cortex = float(rng.uniform(2.6, 3.2))
    vent_size = 0.85 + 0.5 * atrophy + float(rng.uniform(-0.1, 0.1))
    nuclei_jitter = rng.uniform(-1.5, 1.5, (3, 2, 3))
    egg = float(rng.uniform(0.03, 0.08))
    return _Subject(angles, scales, deform, folds, bends, depth_waves, atrophy, cortex, vent_size, nuclei_jitter, egg)


def _anatomy_coordinates(grid: _Grid, subject: _Subject, config: PhantomConfig) -> list[np.ndarray]:
    """Anatomy coordinates ``A = M g + d(g)`` (nominal mm) of every voxel: three ``(z, y, x)`` float32 arrays."""
    f32 = np.float32
    gx, gy, gz = grid.axes
    grid.matrix = _rotation(*subject.angles) @ np.diag(subject.scales)
    m = grid.matrix.astype(f32)
    gxa, gya, gza = gx.astype(f32), gy.astype(f32), gz.astype(f32)
    anat = []
    for row in range(3):
        a = (m[row, 0] * gxa)[None, None, :] + (m[row, 1] * gya)[None, :, None]
        a = a + (m[row, 2] * gza)[:, None, None]
        if config.deformation_mm > 0:
            d = subject.deform[row].on_grid(gx, gy, gz)
            d *= f32(config.deformation_mm)
            grid.shift_bound = max(grid.shift_bound, float(np.abs(d).max()))
            a += d
        anat.append(a.astype(f32, copy=False))
    return anat


def _insert_tumour(grid: _Grid, rng: np.random.Generator, ax, ay, az) -> tuple[dict, tuple, dict]:
    """A glioma in the deformed frame: signed distances of necrosis (4), enhancing rim (5) and oedema (6) in a box
    around it, the anatomy coordinates pushed away radially (mass effect), and its description."""
    f32 = np.float32
    tumour_sd: dict[int, tuple[tuple[slice, slice, slice], np.ndarray]] = {}
    side = 1 if rng.uniform() < 0.5 else -1
    r_nec = float(rng.uniform(5.0, 10.0))
    r_enh = r_nec + float(rng.uniform(3.0, 6.0))
    r_oed = r_enh + float(rng.uniform(8.0, 18.0))
    shape_waves = [_Waves.draw(rng, 12, (1.2, 3.0)) for _ in range(3)]
    centre = None
    for _ in range(200):
        cand = rng.uniform((18.0, -45.0, -12.0), (40.0, 40.0, 32.0)) * (side, 1.0, 1.0)
        if _point_depth(cand) > r_enh + 12.0:
            centre = cand
            break
    if centre is None:  # pragma: no cover - the loop practically always succeeds
        centre = np.array([side * 25.0, 0.0, 10.0])
    box = grid.box(centre, r_oed * 1.6)
    if box is not None:
        dx, dy, dz = (ax[box] - f32(centre[0]), ay[box] - f32(centre[1]), az[box] - f32(centre[2]))
        r = np.sqrt(dx * dx + dy * dy + dz * dz)
        inv = 1.0 / np.maximum(r, f32(1e-3))
        nx, ny, nz = dx * inv, dy * inv, dz * inv  # unit directions
        wobble = [np.clip(w.at(nx, ny, nz), -2.0, 2.0) for w in shape_waves]
        rad_enh = r_enh * (1.0 + 0.12 * wobble[0])
        rad_nec = np.minimum(r_nec * (1.0 + 0.15 * wobble[1]), rad_enh - 2.5)
        rad_oed = np.maximum(r_oed * (1.0 + 0.3 * wobble[2]), rad_enh + 3.0)
        tumour_sd[4] = (box, (rad_nec - r).astype(f32))
        tumour_sd[5] = (box, (rad_enh - r).astype(f32))
        tumour_sd[6] = (box, (rad_oed - r).astype(f32))
    # mass effect: tissue is displaced radially as if a sphere of radius r_push was inserted
    r_push = 0.9 * r_enh
    dx, dy, dz = ax - f32(centre[0]), ay - f32(centre[1]), az - f32(centre[2])
    r = np.sqrt(dx * dx + dy * dy + dz * dz)
    r3 = r * r * r
    r3 -= f32(r_push**3)
    np.maximum(r3, 0.0, out=r3)
    factor = np.cbrt(r3)
    factor /= np.maximum(r, f32(1e-3))
    displaced = (f32(centre[0]) + dx * factor, f32(centre[1]) + dy * factor, f32(centre[2]) + dz * factor)
    grid.shift_bound += r_push
    info = {
        "hemisphere": "left" if side > 0 else "right",
        "centre_nominal_mm": [round(float(v), 2) for v in centre],
        "radius_mm": {
            "necrosis": round(r_nec * grid.scale, 2),
            "enhancing_tumour": round(r_enh * grid.scale, 2),
            "oedema": round(r_oed * grid.scale, 2),
        },
    }
    return tumour_sd, displaced, info


def _carve_sulci(grid: _Grid, subject: _Subject, ax, ay, az, semi_x, depth, sd_csf, sd_gm) -> None:
    """Sulci (CSF lined with cortex) into ``sd_csf`` / ``sd_gm``, in place, in the shell under the surface.

    Sulci are zero-surfaces of a random field of the direction from the centre, so they run roughly
    perpendicular to the surface; a smooth sideways offset growing with depth makes them bend.
    """
    f32 = np.float32
    h = grid.pv_width
    c0, cortex = subject.outer_csf, subject.cortex
    deep_max = c0 + 24.0 + cortex + 2.0 * h
    shell = (depth > -2.0 * h) & (depth < deep_max)
    idx = np.nonzero(shell)
    if not idx[0].size:
        return
    ux = ax[idx] / semi_x[idx]
    uy = ay[idx] / f32(_BRAIN_SEMI[1])
    uz = az[idx] / f32(_BRAIN_SEMI[2])
    rho = np.maximum(np.sqrt(ux * ux + uy * uy + uz * uz), f32(1e-3))
    norm = f32(65.0) / rho
    px, py, pz = ux * norm, uy * norm, uz * norm
    bend = np.clip(depth[idx], 0.0, 25.0) * f32(0.15)
    qx, qy, qz = ax[idx], ay[idx], az[idx]
    px += bend * subject.bends[0].at(qx, qy, qz)
    py += bend * subject.bends[1].at(qx, qy, qz)
    pz += bend * subject.bends[2].at(qx, qy, qz)
    del bend, qx, qy, qz
    fold = np.zeros(depth.shape, f32)
    fold[idx] = subject.folds.at(px, py, pz)
    sulcus_depth = np.clip(17.0 + 6.0 * subject.depth_waves.at(px, py, pz), 8.0, 24.0).astype(f32)
    del px, py, pz, ux, uy, uz, norm, rho
    grads = np.gradient(fold, *(float(s) for s in grid.step[::-1]))
    gnorm = np.sqrt(sum(gc[idx] ** 2 for gc in grads))
    del grads
    dist = np.abs(fold[idx]) / np.maximum(gnorm, f32(0.3 * 2.0 * math.pi / 20.0))
    del fold, gnorm
    d_idx = depth[idx]
    half = subject.sulcus_half
    sulc_csf = np.minimum(half - dist, (c0 + sulcus_depth) - d_idx)
    sulc_gm = np.minimum(half + cortex - dist, (c0 + sulcus_depth + cortex) - d_idx)
    sd_csf[idx] = np.maximum(sd_csf[idx], sulc_csf)
    sd_gm[idx] = np.maximum(sd_gm[idx], sulc_gm)


def _carve_fissure(subject: _Subject, ax, ay, az, sd_csf, sd_gm) -> None:
    """The interhemispheric fissure, in place: a midline slab outside a central core (corpus callosum,
    diencephalon)."""
    f32 = np.float32
    core = _ellipsoid_sd(ax, ay - f32(2.0), az - f32(1.0), 30.0, 40.0, 23.0)
    abs_x = np.abs(ax)
    np.maximum(sd_csf, np.minimum(subject.fissure_half - abs_x, -core), out=sd_csf)
    np.maximum(sd_gm, np.minimum(subject.fissure_half + subject.cortex - abs_x, subject.cortex - core), out=sd_gm)


_NUCLEI = (
    ((14.0, -16.0, 4.0), (6.0, 11.0, 9.0)),  # caudate head (lateral to the frontal horn)
    ((25.0, -3.0, -3.0), (5.5, 16.0, 10.0)),  # putamen
    ((10.0, 10.0, -3.0), (8.0, 14.0, 9.0)),  # thalamus
)


def _add_deep_structures(grid: _Grid, subject: _Subject, ax, ay, az, sd_csf, sd_gm) -> None:
    """Ventricles (CSF) and deep gray nuclei, in place, computed in a central box."""
    f32 = np.float32
    cbox = grid.box(np.array([0.0, 0.0, 4.0]), 50.0)
    if cbox is None:
        return
    bx, by, bz = ax[cbox], ay[cbox], az[cbox]
    vent = np.full(bx.shape, _FAR, f32)
    for side in (1, -1):
        xc, zc, rx, rz = (v.astype(f32) for v in _ventricle_centreline(by, side, subject.vent_size))
        sd = _ellipsoid_sd(bx - xc, by - f32(-1.0), bz - zc, rx, f32(33.0), rz, y_power=4)
        np.maximum(vent, sd, out=vent)
    third = _ellipsoid_sd(bx, by - f32(6.0), bz + f32(4.0), 1.2 * subject.vent_size, 15.0, 9.0)
    np.maximum(vent, third, out=vent)
    nuclei = np.full(bx.shape, _FAR, f32)
    for i, (centre, radii) in enumerate(_NUCLEI):
        for j, side in enumerate((1, -1)):
            jit = subject.nuclei_jitter[i, j]
            sd = _ellipsoid_sd(bx - f32(side * centre[0] + jit[0]), by - f32(centre[1] + jit[1]),
                               bz - f32(centre[2] + jit[2]), *radii)
            np.maximum(nuclei, sd, out=nuclei)
    np.maximum(sd_csf[cbox], vent, out=sd_csf[cbox])
    np.maximum(sd_gm[cbox], nuclei, out=sd_gm[cbox])


def _brain_tissue_fields(grid: _Grid, subject: _Subject, config: PhantomConfig, ax, ay, az
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The brain's partial-volume fraction and the signed distances of CSF and gray matter: surface, cortex,
    sulci, fissure, ventricles and nuclei."""
    f32 = np.float32
    semi_x = f32(_BRAIN_SEMI[0]) * (1.0 + f32(subject.egg) * ay / f32(_BRAIN_SEMI[1]))  # wider posteriorly
    depth = _ellipsoid_sd(ax, ay, az, semi_x, _BRAIN_SEMI[1], _BRAIN_SEMI[2])
    brain = _ramp(depth, grid.pv_width, config.partial_volume)
    sd_csf = subject.outer_csf - depth  # outer CSF layer
    sd_gm = (subject.outer_csf + subject.cortex) - depth  # cortical ribbon
    _carve_sulci(grid, subject, ax, ay, az, semi_x, depth, sd_csf, sd_gm)
    _carve_fissure(subject, ax, ay, az, sd_csf, sd_gm)
    _add_deep_structures(grid, subject, ax, ay, az, sd_csf, sd_gm)
    return brain, sd_csf, sd_gm


def _ms_lesion_field(grid: _Grid, rng: np.random.Generator, count: int, vent_size: float, ax, ay, az
                     ) -> tuple[np.ndarray, list[str]]:
    """Signed distance of ``count`` MS-like lesions (periventricular Dawson's fingers or deep white matter) in
    the normal-anatomy frame, and their kinds."""
    f32 = np.float32
    sd_les = np.full(ax.shape, _FAR, f32)
    kinds: list[str] = []
    for _ in range(count):
        periventricular = rng.uniform() < 0.65
        side = 1 if rng.uniform() < 0.5 else -1
        r_long = float(rng.uniform(3.0, 8.0))
        r_short = float(rng.uniform(2.0, 4.0))
        if periventricular:
            yv = float(rng.uniform(-25.0, 25.0))
            theta = float(rng.uniform(np.radians(10.0), np.radians(80.0)))
            xc, zc, rx, rz = (float(v) for v in _ventricle_centreline(yv, side, vent_size))
            direction = np.array([side * math.cos(theta), 0.0, math.sin(theta)])
            wall = 1.0 / math.hypot(math.cos(theta) / rx, math.sin(theta) / rz)
            offset = wall + r_long * float(rng.uniform(0.6, 1.2))
            centre = np.array([xc, yv, zc]) + offset * direction
            axis = direction  # Dawson's fingers: perpendicular to the ventricle wall
        else:
            for _attempt in range(100):
                centre = rng.uniform((14.0, -55.0, -10.0), (45.0, 50.0, 40.0)) * (side, 1.0, 1.0)
                if _point_depth(centre) > 20.0:
                    break
            axis = rng.standard_normal(3)
            axis /= np.linalg.norm(axis)
        kinds.append("periventricular" if periventricular else "deep_white_matter")
        box = grid.box(centre, r_long)
        if box is None:
            continue
        sd = _spheroid_sd(ax[box] - f32(centre[0]), ay[box] - f32(centre[1]), az[box] - f32(centre[2]),
                          axis, r_long, r_short)
        np.maximum(sd_les[box], sd, out=sd_les[box])
    return sd_les, kinds


def _tissue_fractions(brain, sd_csf, sd_gm, sd_les, tumour_sd: dict, width: float, partial_volume: bool
                      ) -> np.ndarray:
    """``(labels, z, y, x)`` float32 tissue fractions by priority compositing: tumour core, CSF, gray matter,
    MS lesions, oedema take their share of what is left of the brain in that order; white matter the rest."""
    fractions = np.zeros((len(LABELS),) + brain.shape, np.float32)
    remaining = brain
    fractions[0] = 1.0 - brain

    def take(label: int, sd: np.ndarray, box: tuple[slice, slice, slice] | None = None) -> None:
        sl = (slice(None),) * 3 if box is None else box
        part = remaining[sl] * _ramp(sd, width, partial_volume)
        fractions[label][sl] = part
        remaining[sl] -= part

    for label in (4, 5):
        if label in tumour_sd:
            take(label, tumour_sd[label][1], tumour_sd[label][0])
    take(1, sd_csf)
    take(2, sd_gm)
    if sd_les is not None:
        take(7, sd_les)
    if 6 in tumour_sd:
        take(6, tumour_sd[6][1], tumour_sd[6][0])
    fractions[3] = remaining
    return fractions


def _contrast_images(fractions: np.ndarray, field_strength: float) -> np.ndarray:
    """``(contrasts, z, y, x)`` float32 noiseless images: each tissue's signal from the MR signal equations of
    the contrast's sequence (gadolinium shortens T1 in enhancing tissue for t1ce), scaled so white matter is
    :data:`_WM_SIGNAL`, mixed by the fractions."""
    table = RELAXATION_TIMES[field_strength]
    seqs = _SEQUENCES[field_strength]
    weights = np.zeros((len(CONTRASTS), len(LABELS)), np.float64)
    for ci, contrast in enumerate(CONTRASTS):
        seq = seqs[contrast]
        wm = seq.signal(*table["white_matter"])
        for label, name in LABELS.items():
            if label == 0:
                continue
            t1, t2, pd = table[name]
            if contrast == "t1ce" and name in _GD_CONCENTRATION_MM:
                t1 = 1.0 / (1.0 / t1 + _GD_RELAXIVITY[field_strength] * _GD_CONCENTRATION_MM[name] * 1e-3)
            weights[ci, label] = _WM_SIGNAL * seq.signal(t1, t2, pd) / wm
    shape = fractions.shape[1:]
    return (weights.astype(np.float32) @ fractions.reshape(len(LABELS), -1)).reshape((len(CONTRASTS),) + shape)


def _apply_bias_field(images: np.ndarray, inside: np.ndarray, grid: _Grid, rng: np.random.Generator,
                      strength: float) -> None:
    """Multiply each contrast by a smooth field, in place: 65 % shared by all contrasts, 35 % its own; zero mean
    and max |log field| = ``strength`` over the brain (white matter stays ~1000 on average)."""
    f32 = np.float32
    gx, gy, gz = grid.axes
    shared = _Waves.draw(rng, 8, (250.0, 500.0))
    own = [_Waves.draw(rng, 8, (250.0, 500.0)) for _ in CONTRASTS]
    g_shared = shared.on_grid(gx, gy, gz)
    for ci in range(len(CONTRASTS)):
        g = own[ci].on_grid(gx, gy, gz)
        g *= f32(math.sqrt(0.35))
        g += f32(math.sqrt(0.65)) * g_shared
        if inside.any():
            values = g[inside].astype(np.float64)
            g -= f32(values.mean())
            g *= f32(1.0 / max(float(np.abs(values - values.mean()).max()), 1e-6))
        g *= f32(strength)
        np.exp(g, out=g)
        images[ci] *= g


def _add_rician_noise(images: np.ndarray, rngs: list[np.random.Generator], level: float) -> None:
    """Magnitude-image (Rician) noise, in place: ``|image + n1 + i n2|`` with Gaussian ``n1``, ``n2`` of standard
    deviation ``level`` x the white-matter signal; one stream per contrast."""
    f32 = np.float32
    sigma = f32(level * _WM_SIGNAL)
    for ci, rng in enumerate(rngs):
        n1 = rng.standard_normal(images.shape[1:], dtype=f32)
        n1 *= sigma
        n1 += images[ci]
        np.square(n1, out=n1)
        n2 = rng.standard_normal(images.shape[1:], dtype=f32)
        n2 *= sigma
        np.square(n2, out=n2)
        n1 += n2
        np.sqrt(n1, out=images[ci])


def _generate_arrays(config: PhantomConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict, np.ndarray | None]:
    """Core generator: (images (5, z, y, x) float32, labels (z, y, x) uint8, origin, details, pseudo-CT or None).

    Each random part draws from its own stream (anatomy, tumour, lesions, bias field, one noise stream per
    contrast), so switching one part on or off does not change the others.
    """
    seeds = np.random.SeedSequence([config.seed, 0x4D5253])  # "MRS"
    rngs = [np.random.default_rng(s) for s in seeds.spawn(4 + len(CONTRASTS))]
    rng_anat, rng_tum, rng_les, rng_bias = rngs[:4]
    noise_rngs = rngs[4:]  # one stream per contrast
    grid = _Grid(config)
    subject = _draw_subject(rng_anat)
    ax, ay, az = _anatomy_coordinates(grid, subject, config)
    details: dict[str, Any] = {"brain_scale": grid.scale, "atrophy": round(subject.atrophy, 4)}

    tumour_sd: dict = {}
    if config.tumour:  # defined in the deformed frame; pushes the normal anatomy away
        tumour_sd, (ax, ay, az), details["tumour"] = _insert_tumour(grid, rng_tum, ax, ay, az)
    brain, sd_csf, sd_gm = _brain_tissue_fields(grid, subject, config, ax, ay, az)
    sd_les = None
    if config.ms_lesions:  # normal-anatomy frame
        sd_les, details["ms_lesions"] = _ms_lesion_field(grid, rng_les, config.ms_lesions, subject.vent_size, ax, ay, az)
    del ax, ay, az

    fractions = _tissue_fractions(brain, sd_csf, sd_gm, sd_les, tumour_sd, grid.pv_width, config.partial_volume)
    del brain, sd_csf, sd_gm, sd_les, tumour_sd
    labels = np.argmax(fractions, axis=0).astype(np.uint8)
    if config.tumour:
        core = np.nonzero((labels == 4) | (labels == 5))
        if core[0].size:  # physical centroid of the tumour core (x, y, z mm)
            centroid = [grid.origin[a] + grid.spacing[a] * float(core[2 - a].mean()) for a in range(3)]
            details["tumour"]["core_centroid_mm"] = [round(v, 2) for v in centroid]

    images = _contrast_images(fractions, config.field_strength)
    ct = _pseudo_ct(fractions, config) if config.ct else None
    del fractions
    if config.bias_field > 0:
        _apply_bias_field(images, labels > 0, grid, rng_bias, config.bias_field)
    if config.noise > 0:
        _add_rician_noise(images, noise_rngs, config.noise)

    voxel_ml = float(np.prod(grid.spacing)) / 1000.0
    counts = np.bincount(labels.ravel(), minlength=len(LABELS))
    details["label_volumes_ml"] = {LABELS[k]: round(float(counts[k]) * voxel_ml, 3) for k in LABELS if k}
    return images, labels, np.array(grid.origin), details, ct


def _pseudo_ct(fractions: np.ndarray, config: PhantomConfig) -> np.ndarray:
    """Hounsfield image ``(z, y, x)`` float32 from tissue fractions ``(len(LABELS), z, y, x)``: the fraction-
    weighted :data:`CT_HOUNSFIELD` plus Gaussian noise from a stream of its own (MR draws are untouched)."""
    hounsfield = np.array([CT_HOUNSFIELD[LABELS[k]] for k in sorted(LABELS)], np.float32)
    ct = (hounsfield @ fractions.reshape(len(LABELS), -1)).reshape(fractions.shape[1:])
    if config.ct_noise_hu > 0:
        rng = np.random.default_rng(np.random.SeedSequence([config.seed, 0x4D5253, 0x4354]))  # "MRS", "CT"
        ct += rng.standard_normal(ct.shape, dtype=np.float32) * np.float32(config.ct_noise_hu)
    return ct.astype(np.float32)


def generate_phantom(config: PhantomConfig = PhantomConfig()) -> Phantom:
    """Generate a phantom; deterministic (bitwise) for a given config on a given machine.

    Returns:
        :class:`Phantom` with float32 images for every contrast in :data:`CONTRASTS`, a uint8 label
        map and brain mask, all of size ``config.size`` (arrays ``(z, y, x)``), spacing
        ``config.spacing``, origin centring the grid at 0 mm, identity direction.
    """
    import SimpleITK as sitk

    if not isinstance(config, PhantomConfig):
        raise TypeError(f"config must be a PhantomConfig, not {type(config).__name__}")
    images, labels, origin, details, ct = _generate_arrays(config)

    from MRSynthLib.files.imageio import image_from_voxels

    def to_image(array: np.ndarray) -> "sitk.Image":
        return image_from_voxels(array, spacing=config.spacing, origin=origin,
                                 direction=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))

    out = {c: to_image(images[i]) for i, c in enumerate(CONTRASTS)}
    if ct is not None:
        out["ct"] = to_image(ct)
    del images
    return Phantom(
        images=out,
        labels=to_image(labels),
        brain_mask=to_image((labels > 0).astype(np.uint8)),
        config=config,
        _details=details,
    )


def write_phantom_case(phantom: Phantom, folder: str | Path, overwrite: bool = False) -> Path:
    """Write a phantom as a case folder and return the folder.

    Files: ``<contrast>.nii.gz`` for each contrast, ``labels.nii.gz``, ``brainmask.nii.gz`` and
    ``phantom.json`` (provenance). Everything is first written to temporary files in the folder
    and then renamed into place (``os.replace``), so a failure leaves no partial files.

    Raises:
        FileExistsError: if any target exists and ``overwrite`` is False (nothing is written).
    """
    import SimpleITK as sitk

    folder = Path(folder)
    targets: dict[str, Any] = {f"{c}.nii.gz": image for c, image in phantom.images.items()}
    targets["labels.nii.gz"] = phantom.labels
    targets["brainmask.nii.gz"] = phantom.brain_mask
    targets["phantom.json"] = phantom.provenance()
    if folder.exists() and not folder.is_dir():
        raise _PhantomExistsError(f"Cannot write the phantom case: {folder} exists and is not a folder.")
    if not overwrite:
        existing = [name for name in targets if (folder / name).exists()]
        if existing:
            raise _PhantomExistsError(
                f"Refusing to overwrite {', '.join(existing)} in {folder}: "
                "choose another folder or pass overwrite=True (--overwrite)."
            )
    folder.mkdir(parents=True, exist_ok=True)
    written: list[tuple[Path, Path]] = []
    try:
        for name, item in targets.items():
            suffix = ".nii.gz" if name.endswith(".nii.gz") else ".json"
            fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=f".tmp{suffix}", dir=folder)
            os.close(fd)
            tmp = Path(tmp_name)
            written.append((tmp, folder / name))
            if suffix == ".json":
                tmp.write_text(json.dumps(item, indent=2) + "\n", encoding="utf-8")
            else:
                sitk.WriteImage(item, str(tmp), True)
        for tmp, final in written:
            os.replace(tmp, final)
    except BaseException:
        for tmp, _ in written:
            try:
                tmp.unlink()
            except FileNotFoundError:
                pass
        raise
    return folder


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value

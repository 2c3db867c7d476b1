"""Colour: sRGB to CIELAB and the CIEDE2000 colour difference.

* :func:`rgb_to_lab`: sRGB (IEC 61966-2-1 transfer curve) to XYZ with the sRGB/D65 matrix, then
  CIELAB with the D65 2-degree white (0.95047, 1, 1.08883): the conversion of
  ``skimage.color.rgb2lab``.
* :func:`ciede2000`: Delta E 2000 (CIE 142-2001) with kL = kC = kH = 1, as in G. Sharma, W. Wu,
  E. N. Dalal, "The CIEDE2000 color-difference formula: implementation notes, supplementary test
  data, and mathematical observations", Color Res. Appl. 30(1), 2005, eqs. (1)-(17), including
  the hue-mean and hue-difference branches at 180 degrees that their test pairs exercise.
* :func:`delta_e_clip`: mean CIEDE2000 between two uint8 clips, per frame over a region.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

_SRGB_TO_XYZ = np.array(
    [[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]]
)
_WHITE_D65 = np.array([0.95047, 1.0, 1.08883])
_M = (_SRGB_TO_XYZ / _WHITE_D65[:, None]).T.astype(np.float32)  # rows: linear RGB -> XYZ / white


def _linear_lut() -> np.ndarray:
    c = np.arange(256, dtype=np.float64) / 255.0
    return np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92).astype(np.float32)


_LINEAR = _linear_lut()
_LINEAR1 = _LINEAR.reshape(256, 1)  # cv2.LUT's table for one channel

Planes = tuple[np.ndarray, np.ndarray, np.ndarray]


def _linear_planes(rgb: np.ndarray) -> Planes:
    """Linear R, G, B of uint8 sRGB pixels ``(..., 3)``: three contiguous float32 planes ``(N, 1)``.

    The uint8 channels are split first (cv2.split), then looked up one plane at a time (cv2.LUT): the
    same table as a lookup over interleaved channels, and contiguous planes let every later numpy step
    run its SIMD loop (a strided channel view falls back to a scalar loop, ~5x slower per operation).
    """
    return tuple(cv2.LUT(c, _LINEAR1) for c in cv2.split(rgb.reshape(-1, 1, 3)))


def _lab_from_linear(c0: np.ndarray, c1: np.ndarray, c2: np.ndarray) -> Planes:
    """CIELAB planes L, a, b from linear RGB planes (float32, any equal shapes)."""
    f = []
    for j in range(3):
        v = c0 * _M[0, j] + c1 * _M[1, j] + c2 * _M[2, j]
        root = np.power(np.maximum(v, 0.0), np.float32(1.0 / 3.0))  # cube root; np.cbrt is ~7x slower
        small = v <= 0.008856
        if small.any():
            root[small] = 7.787 * v[small] + 16.0 / 116.0
        f.append(root)
    return 116.0 * f[1] - 16.0, 500.0 * (f[0] - f[1]), 200.0 * (f[1] - f[2])


def lab_planes(rgb: np.ndarray) -> Planes:
    """uint8 sRGB pixels ``(..., 3)`` to CIELAB as three contiguous float32 planes ``(N,)`` (N pixels):
    the numbers of :func:`rgb_to_lab`, laid out for :func:`ciede2000_planes`."""
    return tuple(p.reshape(-1) for p in _lab_from_linear(*_linear_planes(rgb)))


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """uint8 sRGB ``(..., 3)`` (or floats in [0, 1]) to float32 CIELAB ``(..., 3)`` (L in [0, 100])."""
    if rgb.dtype == np.uint8:
        planes = [p.reshape(rgb.shape[:-1]) for p in _lab_from_linear(*_linear_planes(rgb))]
    else:
        c = np.asarray(rgb, np.float32)
        linear = np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92).astype(np.float32)
        planes = _lab_from_linear(*(linear[..., i] for i in range(3)))
    lab = np.empty((*planes[0].shape, 3), np.float32)
    for i, plane in enumerate(planes):
        lab[..., i] = plane
    return lab


# Python floats, not numpy float64 scalars: those would promote float32 arrays to float64 (NEP 50).
_COS30, _SIN30 = math.cos(math.radians(30.0)), math.sin(math.radians(30.0))
_COS6, _SIN6 = math.cos(math.radians(6.0)), math.sin(math.radians(6.0))
_COS63, _SIN63 = math.cos(math.radians(63.0)), math.sin(math.radians(63.0))
_H275, _INV25, _DEG30 = math.radians(275.0), 1.0 / math.radians(25.0), math.radians(30.0)
_25_7 = 25.0**7
# hd^2 beyond which the hue-rotation term cannot change CIEDE2000, per float type (see ciede2000)
_FAR_HUE = {np.dtype(np.float32): 20.0, np.dtype(np.float64): 45.0}


def _hue(b: np.ndarray, a: np.ndarray) -> np.ndarray:
    """``arctan2(b, a) % 2 pi`` bit for bit, without numpy's float remainder (~30 ns per element).

    ``arctan2`` lies in [-pi, pi], so the remainder is ``h + 2 pi`` (in the array's float type) for
    ``h < 0`` and ``h`` otherwise, with -0.0 turned into +0.0 as the remainder does (``h + 0.0``).
    Arithmetic on the comparison, not ``np.where`` or a masked ufunc (both several times slower).
    """
    h = np.arctan2(b, a)
    h += (h < 0) * h.dtype.type(2 * np.pi)  # + 0.0 elsewhere, which also turns -0.0 into +0.0
    return h


def ciede2000(lab1: np.ndarray, lab2: np.ndarray) -> np.ndarray:
    """CIEDE2000 colour difference of CIELAB arrays ``(..., 3)``; returns ``(...)`` (same float dtype).

    Symmetric in its arguments; 0 for equal colours; about 1 at a just noticeable difference.
    Sharma et al. eqs. (2)-(17); the cosines of 2h, 3h and 4h in T (eq. 15) come from cos h and sin h
    by the multiple-angle identities (two trigonometric calls instead of four).
    """
    dtype = np.result_type(lab1, lab2, np.float32)
    lab1 = np.asarray(lab1, dtype)
    lab2 = np.asarray(lab2, dtype)
    return ciede2000_planes(
        (lab1[..., 0], lab1[..., 1], lab1[..., 2]), (lab2[..., 0], lab2[..., 1], lab2[..., 2])
    )


def ciede2000_planes(lab1: Planes, lab2: Planes) -> np.ndarray:
    """:func:`ciede2000` of CIELAB given as planes ``(L, a, b)`` of one float dtype (the same arithmetic:
    contiguous planes, as :func:`lab_planes` makes them, only make it faster)."""
    (L1, a1, b1), (L2, a2, b2) = lab1, lab2
    dtype = np.result_type(L1, L2, np.float32)
    c_bar = (np.sqrt(a1 * a1 + b1 * b1) + np.sqrt(a2 * a2 + b2 * b2)) * 0.5
    c2 = c_bar * c_bar
    c7 = c2 * c2 * c2 * c_bar
    g1 = 1.5 - 0.5 * np.sqrt(c7 / (c7 + _25_7))  # 1 + G
    a1p, a2p = g1 * a1, g1 * a2
    c1p = np.sqrt(a1p * a1p + b1 * b1)
    c2p = np.sqrt(a2p * a2p + b2 * b2)
    two_pi = 2 * np.pi
    two_pi32 = np.dtype(dtype).type(two_pi)  # what two_pi becomes in arithmetic with the arrays
    h1p = _hue(b1, a1p)
    h2p = _hue(b2, a2p)
    prod = c1p * c2p
    chroma0 = prod == 0
    dh = h2p - h1p
    # dh - 2 pi where dh > pi, dh + 2 pi where dh < -pi: masks from dh before either step changes it;
    # subtracting or adding 0.0 elsewhere changes nothing but the sign of a zero, which no later step
    # can see (it only enters sin(dh / 2), then squares and products with a non-negative sum).
    dh = dh - (dh > np.pi) * two_pi32 + (dh < -np.pi) * two_pi32
    dh[chroma0] = 0.0
    d_l = L2 - L1
    d_c = c2p - c1p
    d_h = 2.0 * np.sqrt(prod) * np.sin(dh * 0.5)
    l_bar = (L1 + L2) * 0.5
    c_barp = (c1p + c2p) * 0.5
    h_sum = h1p + h2p
    far = np.abs(h1p - h2p) > np.pi
    below = h_sum < two_pi
    h_bar = (h_sum + (far & below) * two_pi32 - (far & ~below) * two_pi32) * 0.5
    h_bar = np.where(chroma0, h_sum, h_bar)
    ch, sh = np.cos(h_bar), np.sin(h_bar)
    c2h = 2 * ch * ch - 1
    s2h = 2 * sh * ch
    c3h = ch * (4 * ch * ch - 3)
    s3h = sh * (3 - 4 * sh * sh)
    c4h = 2 * c2h * c2h - 1
    s4h = 2 * s2h * c2h
    t = (
        1.0
        - 0.17 * (ch * _COS30 + sh * _SIN30)
        + 0.24 * c2h
        + 0.32 * (c3h * _COS6 - s3h * _SIN6)
        - 0.20 * (c4h * _COS63 + s4h * _SIN63)
    )
    hd = (h_bar - _H275) * _INV25
    hd2 = hd * hd
    # Where hd^2 > limit (hue far from 275 degrees: about half of all pixels) d_theta is set to 0.
    # Computed, it is tiny, and exp, sin and products then run into subnormal floats, ~10x slower on
    # x86. It changes no result. float32: |r_t| <= 2 sin(2 * 0.53 exp(-20)) < 5e-9, so the rotation
    # term |r_t tc th| <= |r_t| (tc^2 + th^2) / 2 < 2^-25 S with S = tl^2 + tc^2 + th^2: less than half
    # a unit in the last place of S, so S + r_t tc th rounds to S, as S + 0 does (float64: exp(-45),
    # |r_t| < 7e-20, below 2^-54 S).
    limit = _FAR_HUE.get(np.dtype(dtype), np.inf)
    far_hue = hd2 > limit
    d_theta = _DEG30 * np.exp(-np.minimum(hd2, limit))
    d_theta[far_hue] = 0.0
    cp2 = c_barp * c_barp
    cp7 = cp2 * cp2 * cp2 * c_barp
    r_c = 2.0 * np.sqrt(cp7 / (cp7 + _25_7))
    l50 = (l_bar - 50.0) ** 2
    s_l = 1.0 + 0.015 * l50 / np.sqrt(20.0 + l50)
    s_c = 1.0 + 0.045 * c_barp
    s_h = 1.0 + 0.015 * c_barp * t
    r_t = -np.sin(2.0 * d_theta) * r_c
    tl, tc, th = d_l / s_l, d_c / s_c, d_h / s_h
    return np.sqrt(np.maximum(tl * tl + tc * tc + th * th + r_t * tc * th, 0.0)).astype(dtype, copy=False)


_BLOCK = 1 << 15


def delta_e_map(
    a: np.ndarray, b: np.ndarray, region: np.ndarray | None = None, b_lab: np.ndarray | None = None
) -> np.ndarray:
    """Per-pixel CIEDE2000 of two uint8 clips ``(T, H, W, 3)``: float32 ``(T, H, W)``.

    Computed only where the pixels differ (equal pixels are exactly 0) and, when ``region`` is given,
    only inside it (0 elsewhere): CIELAB conversion and CIEDE2000 run on those pixels alone.
    ``b_lab`` may give ``b``'s CIELAB already computed (:func:`region_lab` of ``b`` over ``region``, or
    over every pixel): float32 planes ``(3, T * H * W)``, read at the pixels compared (the same numbers:
    the conversion is per pixel).
    """
    out = np.zeros(a.shape[:-1], np.float32)
    todo = (a[..., 0] != b[..., 0]) | (a[..., 1] != b[..., 1]) | (a[..., 2] != b[..., 2])  # any() is slow
    if region is not None:
        todo &= region
    index = np.flatnonzero(todo)
    if index.size:
        # take() on the flat pixel index: ~5x faster than a[todo], which gathers 3-byte rows by a mask
        flat_a, flat_b = a.reshape(-1, 3), b.reshape(-1, 3)
        values = np.empty(index.size, np.float32)
        # Blocks of _BLOCK pixels: the ~50 float32 temporaries of CIEDE2000 then stay in the CPU cache
        # instead of streaming whole-clip arrays through memory (~2x faster; elementwise, so the same bits).
        for start in range(0, index.size, _BLOCK):
            part = index[start : start + _BLOCK]
            lab_a = lab_planes(flat_a.take(part, axis=0))
            lab_b = (
                lab_planes(flat_b.take(part, axis=0)) if b_lab is None else tuple(b_lab.take(part, axis=1))
            )
            values[start : start + _BLOCK] = ciede2000_planes(lab_a, lab_b)
        out.reshape(-1)[index] = values
    return out


def region_lab(clip: np.ndarray, region: np.ndarray | None = None) -> np.ndarray:
    """CIELAB of a uint8 clip's pixels inside ``region`` (every pixel without one) as float32 planes
    ``(3, T * H * W)`` (L, a, b); pixels outside the region are left 0 (never read by
    :func:`delta_e_map`)."""
    flat = clip.reshape(-1, 3)
    index = np.arange(len(flat)) if region is None else np.flatnonzero(region)
    lab = np.zeros((3, len(flat)), np.float32)
    for start in range(0, len(index), _BLOCK):
        part = index[start : start + _BLOCK]
        for plane, values in zip(lab, lab_planes(flat.take(part, axis=0)), strict=True):
            plane[part] = values
    return lab


def delta_e_clip(
    a: np.ndarray, b: np.ndarray, region: np.ndarray | None = None, b_lab: np.ndarray | None = None
) -> float | None:
    """Mean over frames of the per-frame mean CIEDE2000 over ``region`` (lower is closer; 0 = identical)."""
    from flowstudio.bench.metrics.pixel import region_mean

    return region_mean(delta_e_map(a, b, region, b_lab), region)

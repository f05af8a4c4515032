"""Vectorised numpy ray caster for the simulated RGB-D camera.

Every pixel's ray is intersected analytically with the primitives of every object (boxes,
frusta -- which cover cylinders and cones -- and ellipsoids) and with the background (a
floor plane, a back wall and an optional table box). A z-buffer keeps the front-most hit,
so the instance map has real occlusion. Shading is Lambert + ambient + a specular term
for glossy materials, modulated by procedural material textures that are fixed to the
object (they move with it), plus sensor noise.

Frames: world is z-up (table/floor plane z = 0 or below); camera rays are generated in the
optical frame (x right, y down, z forward) with direction ``(x, y, 1)``, so the ray
parameter ``t`` of a hit *is* the optical-frame depth ``z`` [m] -- no per-pixel division.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Optional

import numpy as np

from frs_ros.camera import CameraIntrinsics
from frs_ros.sim.ontology import COLORS, MATERIALS

_EPS = 1e-6
_TEXTURE_IDS = {"smooth": 0, "sheen": 1, "grain": 2, "weave": 3, "speckle": 4, "planks": 5, "plaster": 6}


# ----------------------------------------------------------------------------------------
# Primitives
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Primitive:
    """One analytic solid in the world frame.

    kind: 'box' (params = half extents hx, hy, hz [m]), 'frustum' (r0 bottom radius,
        r1 top radius, hz half height [m]; axis = local z) or 'ellipsoid' (radii rx, ry, rz [m]).
    center: ``(3,)`` world position of the primitive's centre [m].
    rot: ``(3, 3)`` world-from-local rotation (columns are the local axes in the world).
    color: RGB in [0, 1] (object colour, or a fixed part colour such as black tyres).
    """

    kind: str
    center: np.ndarray
    rot: np.ndarray
    params: tuple[float, float, float]
    color: tuple[float, float, float]


def rot_z(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def rot_y(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def rot_x(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


_I3 = np.eye(3)
_ALONG_X = rot_y(np.pi / 2)  # local z axis -> world x (lying cylinders)
_ALONG_Y = rot_x(-np.pi / 2)  # local z axis -> world y
_BLACK = COLORS["black"]
_GREEN = COLORS["green"]
_TERRACOTTA = (0.62, 0.30, 0.18)
_SILVER = COLORS["silver"]


def build_parts(shape: str, dims: np.ndarray, color: tuple[float, float, float]) -> list[tuple]:
    """Parts of a category shape in the object frame (origin at the bottom centre, z up).

    dims: ``(3,)`` full extents (x, y, z) [m]. Returns ``(kind, center(3), rot(3x3), params,
    color)`` tuples; composite shapes (mug = cylinder + handle) are several parts.
    """
    X, Y, Z = (float(d) for d in dims)
    r = min(X, Y) / 2.0
    c = color
    P = []

    def box(cx, cy, cz, sx, sy, sz, rot=_I3, col=c):
        P.append(("box", (cx, cy, cz), rot, (sx / 2, sy / 2, sz / 2), col))

    def fr(cx, cy, cz, r0, r1, h, rot=_I3, col=c):
        P.append(("frustum", (cx, cy, cz), rot, (r0, r1, h / 2), col))

    def ell(cx, cy, cz, sx, sy, sz, rot=_I3, col=c):
        P.append(("ellipsoid", (cx, cy, cz), rot, (sx / 2, sy / 2, sz / 2), col))

    if shape == "box":
        box(0, 0, Z / 2, X, Y, Z)
    elif shape == "cylinder":
        fr(0, 0, Z / 2, r, r, Z)
    elif shape == "cup":
        fr(0, 0, Z / 2, 0.78 * r, r, Z)
    elif shape == "jar":
        fr(0, 0, 0.42 * Z, r, r, 0.84 * Z)
        fr(0, 0, 0.92 * Z, 0.85 * r, 0.85 * r, 0.16 * Z, col=_SILVER)
    elif shape == "mug":
        rb = 0.8 * r
        fr(-0.2 * r, 0, Z / 2, rb, rb, Z)
        box(-0.2 * r + rb + 0.18 * r, 0, 0.5 * Z, 0.3 * r, 0.18 * r, 0.6 * Z)
    elif shape == "wine_glass":
        fr(0, 0, 0.015 * Z, 0.7 * r, 0.7 * r, 0.03 * Z)
        fr(0, 0, 0.25 * Z, 0.1 * r, 0.1 * r, 0.45 * Z)
        fr(0, 0, 0.73 * Z, 0.55 * r, r, 0.54 * Z)
    elif shape in ("bowl", "plate"):
        fr(0, 0, Z / 2, 0.55 * r if shape == "bowl" else 0.8 * r, r, Z)
    elif shape == "bin":
        fr(0, 0, Z / 2, 0.85 * r, r, Z)
    elif shape == "teapot":
        ell(0, 0, 0.42 * Z, 0.7 * X, Y, 0.84 * Z)
        ell(0, 0, 0.88 * Z, 0.25 * X, 0.25 * X, 0.2 * Z)
        fr(0.38 * X, 0, 0.55 * Z, 0.09 * X, 0.04 * X, 0.35 * X, rot=rot_y(0.8))
        box(-0.4 * X, 0, 0.5 * Z, 0.12 * X, 0.1 * Y, 0.45 * Z)
    elif shape == "kettle":
        fr(0, 0, 0.42 * Z, r, 0.75 * r, 0.84 * Z)
        box(0, 0, 0.92 * Z, 1.1 * r, 0.15 * r, 0.16 * Z, col=_BLACK)
    elif shape == "bottle":
        fr(0, 0, 0.33 * Z, r, r, 0.66 * Z)
        fr(0, 0, 0.73 * Z, r, 0.4 * r, 0.14 * Z)
        fr(0, 0, 0.9 * Z, 0.38 * r, 0.38 * r, 0.2 * Z)
    elif shape == "pot":
        fr(0, 0, Z / 2, r, r, Z)
        box(r + 0.06 * r, 0, 0.85 * Z, 0.25 * r, 0.25 * r, 0.1 * Z, col=_BLACK)
        box(-r - 0.06 * r, 0, 0.85 * Z, 0.25 * r, 0.25 * r, 0.1 * Z, col=_BLACK)
    elif shape == "pan":
        rp = Y / 2
        fr(-X / 2 + rp, 0, Z / 2, 0.9 * rp, rp, Z)
        box(X / 2 - (X - 2 * rp) / 2, 0, 0.8 * Z, X - 2 * rp, 0.15 * Y, 0.25 * Z, col=_BLACK)
    elif shape == "knife":
        box(-0.2 * X, 0, 0.3 * Z, 0.6 * X, 0.8 * Y, 0.6 * Z)
        box(0.3 * X, 0, 0.5 * Z, 0.4 * X, Y, Z, col=_BLACK)
    elif shape == "spoon":
        box(0.15 * X, 0, 0.25 * Z, 0.7 * X, 0.3 * Y, 0.5 * Z)
        ell(-0.33 * X, 0, 0.5 * Z, 0.34 * X, Y, Z)
    elif shape == "blender":
        box(0, 0, 0.15 * Z, X, Y, 0.3 * Z, col=_BLACK)
        fr(0, 0, 0.65 * Z, 0.38 * X, 0.48 * X, 0.7 * Z)
    elif shape == "pitcher":
        fr(-0.1 * X, 0, Z / 2, 0.45 * Y, 0.4 * Y, Z)
        box(0.33 * X, 0, 0.55 * Z, 0.12 * X, 0.1 * Y, 0.55 * Z)
    elif shape in ("ellipsoid", "sphere"):
        ell(0, 0, Z / 2, X, Y, Z)
    elif shape == "carrot":
        fr(0, 0, Z / 2, Y / 2, 0.08 * Y, X, rot=_ALONG_X)
        ell(-X / 2 - 0.05 * X, 0, Z / 2, 0.15 * X, 0.8 * Y, 0.8 * Z, col=_GREEN)
    elif shape == "pen":
        fr(-0.05 * X, 0, Z / 2, Y / 2, Y / 2, 0.9 * X, rot=_ALONG_X)
        fr(0.45 * X, 0, Z / 2, Y / 2, 0.1 * Y, 0.1 * X, rot=_ALONG_X, col=_BLACK)
    elif shape == "flashlight":
        fr(-0.15 * X, 0, Z / 2, 0.38 * Y, 0.38 * Y, 0.7 * X, rot=_ALONG_X)
        fr(0.35 * X, 0, Z / 2, 0.38 * Y, Y / 2, 0.3 * X, rot=_ALONG_X, col=_SILVER)
    elif shape == "scissors":
        box(0, 0, Z / 2, X, 0.2 * Y, Z, rot=rot_z(0.2))
        box(0, 0, Z / 2, X, 0.2 * Y, Z, rot=rot_z(-0.2))
        box(-0.38 * X, 0, Z / 2, 0.22 * X, Y, Z, col=_BLACK)
    elif shape == "laptop":
        box(0, 0, 0.04 * Z, X, Y, 0.08 * Z)
        box(0, Y / 2 - 0.02 * Y, 0.5 * Z, X, 0.04 * Y, 0.92 * Z, rot=rot_x(-0.15))
    elif shape == "monitor":
        box(0, 0, 0.02 * Z, 0.4 * X, Y, 0.04 * Z, col=_BLACK)
        box(0, 0, 0.2 * Z, 0.08 * X, 0.2 * Y, 0.35 * Z, col=_BLACK)
        box(0, 0, 0.65 * Z, X, 0.25 * Y, 0.7 * Z)
    elif shape == "headphones":
        ell(-0.38 * X, 0, 0.3 * Z, 0.24 * X, Y, 0.6 * Z)
        ell(0.38 * X, 0, 0.3 * Z, 0.24 * X, Y, 0.6 * Z)
        box(0, 0, 0.93 * Z, 0.8 * X, 0.3 * Y, 0.14 * Z)
        box(-0.42 * X, 0, 0.7 * Z, 0.08 * X, 0.3 * Y, 0.5 * Z)
        box(0.42 * X, 0, 0.7 * Z, 0.08 * X, 0.3 * Y, 0.5 * Z)
    elif shape == "clock":
        rc = min(X, Z) / 2
        fr(0, 0, rc, rc, rc, Y, rot=_ALONG_Y)
        fr(0, -Y / 2, rc, 0.8 * rc, 0.8 * rc, 0.05 * Y, rot=_ALONG_Y, col=COLORS["white"])
    elif shape == "lamp":
        rl = X / 2
        fr(0, 0, 0.02 * Z, 0.6 * rl, 0.6 * rl, 0.04 * Z, col=_BLACK)
        fr(0, 0, 0.35 * Z, 0.06 * rl, 0.06 * rl, 0.66 * Z, col=_SILVER)
        fr(0, 0, 0.82 * Z, rl, 0.62 * rl, 0.36 * Z)
    elif shape == "vase":
        ell(0, 0, 0.35 * Z, X, Y, 0.7 * Z)
        fr(0, 0, 0.82 * Z, 0.25 * X, 0.35 * X, 0.36 * Z)
    elif shape == "plant":
        fr(0, 0, 0.2 * Z, 0.5 * r, 0.65 * r, 0.4 * Z, col=_TERRACOTTA)
        ell(0, 0, 0.68 * Z, X, Y, 0.64 * Z)
    elif shape == "frame":
        box(0, 0, Z / 2, X, 0.25 * Y, Z, rot=rot_x(-0.2))
        box(0, -0.14 * Y, Z / 2, 0.78 * X, 0.05 * Y, 0.74 * Z, rot=rot_x(-0.2), col=(0.55, 0.7, 0.85))
    elif shape == "backpack":
        box(0, 0, 0.42 * Z, X, 0.8 * Y, 0.84 * Z)
        ell(0, 0, 0.84 * Z, X, 0.8 * Y, 0.3 * Z)
        box(0, -0.45 * Y, 0.3 * Z, 0.7 * X, 0.2 * Y, 0.4 * Z)
    elif shape == "umbrella":
        fr(0, 0, 0.05 * Z, 0.3 * r, 0.3 * r, 0.1 * Z, col=_BLACK)
        fr(0, 0, 0.5 * Z, 0.3 * r, r, 0.8 * Z)
        fr(0, 0, 0.95 * Z, 0.1 * r, 0.1 * r, 0.1 * Z, col=_SILVER)
    elif shape == "watering_can":
        rw = Y / 2
        fr(-0.15 * X, 0, 0.4 * Z, rw, rw, 0.8 * Z)
        fr(0.3 * X, 0, 0.55 * Z, 0.1 * Y, 0.06 * Y, 0.5 * X, rot=rot_y(0.9))
        box(-0.15 * X, 0, 0.92 * Z, 0.5 * X, 0.08 * Y, 0.12 * Z)
    elif shape == "chair":
        box(0, 0, 0.47 * Z, X, Y, 0.06 * Z)
        box(0, Y / 2 - 0.04 * Y, 0.75 * Z, X, 0.08 * Y, 0.5 * Z)
        for sx in (-1, 1):
            for sy in (-1, 1):
                box(sx * 0.42 * X, sy * 0.42 * Y, 0.22 * Z, 0.08 * X, 0.08 * Y, 0.44 * Z)
    elif shape == "stool":
        fr(0, 0, 0.95 * Z, r, r, 0.1 * Z)
        fr(0, 0, 0.47 * Z, 0.1 * r, 0.1 * r, 0.9 * Z, col=_SILVER)
        fr(0, 0, 0.02 * Z, 0.7 * r, 0.7 * r, 0.04 * Z, col=_SILVER)
    elif shape == "armchair":
        box(0, 0, 0.25 * Z, X, Y, 0.5 * Z)
        box(0, 0.38 * Y, 0.6 * Z, X, 0.24 * Y, 0.8 * Z)
        box(-0.42 * X, 0, 0.55 * Z, 0.16 * X, Y, 0.3 * Z)
        box(0.42 * X, 0, 0.55 * Z, 0.16 * X, Y, 0.3 * Z)
    elif shape == "side_table":
        box(0, 0, 0.96 * Z, X, Y, 0.08 * Z)
        for sx in (-1, 1):
            for sy in (-1, 1):
                box(sx * 0.42 * X, sy * 0.42 * Y, 0.46 * Z, 0.08 * X, 0.08 * Y, 0.92 * Z)
    elif shape == "teddy":
        ell(0, 0, 0.3 * Z, X, Y, 0.6 * Z)
        ell(0, 0, 0.75 * Z, 0.65 * X, 0.8 * Y, 0.45 * Z)
        ell(-0.25 * X, 0, 0.97 * Z, 0.2 * X, 0.2 * Y, 0.12 * Z)
        ell(0.25 * X, 0, 0.97 * Z, 0.2 * X, 0.2 * Y, 0.12 * Z)
    elif shape == "toy_car":
        box(0, 0, 0.42 * Z, X, Y, 0.45 * Z)
        box(-0.05 * X, 0, 0.8 * Z, 0.5 * X, 0.85 * Y, 0.35 * Z)
        for sx in (-1, 1):
            for sy in (-1, 1):
                fr(sx * 0.3 * X, sy * 0.5 * Y, 0.2 * Z, 0.2 * Z, 0.2 * Z, 0.14 * Y, rot=_ALONG_Y, col=_BLACK)
    elif shape == "cone":
        box(0, 0, 0.02 * Z, X, Y, 0.04 * Z)
        fr(0, 0, 0.52 * Z, 0.8 * r, 0.08 * r, 0.96 * Z)
    elif shape == "hammer":
        box(-0.12 * X, 0, 0.3 * Z, 0.76 * X, 0.25 * Y, 0.6 * Z, col=COLORS["brown"])
        box(0.38 * X, 0, Z / 2, 0.24 * X, Y, Z)
    elif shape == "drill":
        box(0, 0, 0.78 * Z, X, Y, 0.44 * Z)
        box(-0.2 * X, 0, 0.3 * Z, 0.3 * X, 0.9 * Y, 0.6 * Z, col=_BLACK)
        fr(0.6 * X, 0, 0.78 * Z, 0.15 * Y, 0.1 * Y, 0.2 * X, rot=_ALONG_X, col=_SILVER)
    else:
        raise ValueError(f"unknown render shape {shape!r}; add a builder to frs_ros.sim.render.build_parts")
    return P


def place_parts(parts: list[tuple], position: np.ndarray, yaw: float) -> list[Primitive]:
    """Object-frame parts -> world primitives. position: ``(3,)`` world base centre [m]."""
    rz = rot_z(yaw)
    out = []
    for kind, cen, rot, params, col in parts:
        out.append(
            Primitive(
                kind=kind,
                center=position + rz @ np.asarray(cen, dtype=np.float64),
                rot=rz @ rot,
                params=tuple(float(p) for p in params),
                color=tuple(col),
            )
        )
    return out


# ----------------------------------------------------------------------------------------
# Ray-primitive intersection, local frame. O (3,) ray origin, D (N, 3) directions.
# Returns t (N,) [inf where missed] and local normals (N, 3).
# ----------------------------------------------------------------------------------------
def _hit_box(O: np.ndarray, D: np.ndarray, h: tuple) -> tuple[np.ndarray, np.ndarray]:
    h = np.asarray(h)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / np.where(np.abs(D) < 1e-12, 1e-12, D)
    t1 = (-h - O) * inv
    t2 = (h - O) * inv
    tn = np.minimum(t1, t2)
    tmin = tn.max(axis=1)
    tmax = np.maximum(t1, t2).min(axis=1)
    hit = (tmax >= tmin) & (tmin > _EPS)
    t = np.where(hit, tmin, np.inf)
    # The entry face is the slab whose near distance is the largest.
    n = np.where(tn == tmin[:, None], -np.sign(D), 0.0)
    return t, n


def _hit_frustum(O: np.ndarray, D: np.ndarray, p: tuple) -> tuple[np.ndarray, np.ndarray]:
    r0, r1, hz = p
    rm = 0.5 * (r0 + r1)
    k = (r1 - r0) / (2.0 * hz)
    Dx, Dy, Dz = D[:, 0], D[:, 1], D[:, 2]
    Ox, Oy, Oz = O
    base = rm + k * Oz
    a = Dx * Dx + Dy * Dy - k * k * Dz * Dz
    b = 2.0 * (Ox * Dx + Oy * Dy - k * base * Dz)
    c = Ox * Ox + Oy * Oy - base * base
    a = np.where(np.abs(a) < 1e-12, 1e-12, a)
    disc = b * b - 4.0 * a * c
    ok = disc >= 0
    sq = np.sqrt(np.where(ok, disc, 0.0))
    ta = (-b - sq) / (2.0 * a)
    tb = (-b + sq) / (2.0 * a)
    t_lo = np.minimum(ta, tb)
    t_hi = np.maximum(ta, tb)
    best = np.full(len(D), np.inf)
    for ts in (t_lo, t_hi):
        z = Oz + ts * Dz
        valid = ok & (ts > _EPS) & (np.abs(z) <= hz) & (rm + k * z >= 0)
        best = np.where(valid & (ts < best), ts, best)
    side_t = best.copy()
    with np.errstate(divide="ignore", invalid="ignore"):
        for zc, rc in ((hz, r1), (-hz, r0)):
            tc = (zc - Oz) / np.where(np.abs(Dz) < 1e-12, 1e-12, Dz)
            x = Ox + tc * Dx
            y = Oy + tc * Dy
            valid = (tc > _EPS) & (x * x + y * y <= rc * rc)
            best = np.where(valid & (tc < best), tc, best)
    P = O + np.where(np.isfinite(best), best, 0.0)[:, None] * D
    n = np.empty_like(D)
    n[:, 0] = P[:, 0]
    n[:, 1] = P[:, 1]
    n[:, 2] = -k * (rm + k * P[:, 2])
    cap = best < side_t
    n[cap] = 0.0
    n[cap, 2] = np.sign(P[cap, 2])
    n /= np.maximum(np.sqrt(np.einsum("ij,ij->i", n, n)), 1e-12)[:, None]
    return best, n


def _hit_ellipsoid(O: np.ndarray, D: np.ndarray, rad: tuple) -> tuple[np.ndarray, np.ndarray]:
    rad = np.asarray(rad)
    Os = O / rad
    Ds = D / rad
    a = np.einsum("ij,ij->i", Ds, Ds)
    b = 2.0 * Ds @ Os
    c = Os @ Os - 1.0
    disc = b * b - 4.0 * a * c
    ok = disc >= 0
    t = (-b - np.sqrt(np.where(ok, disc, 0.0))) / (2.0 * a)
    hit = ok & (t > _EPS)
    t = np.where(hit, t, np.inf)
    P = O + np.where(hit, t, 0.0)[:, None] * D
    n = P / (rad * rad)
    n /= np.maximum(np.sqrt(np.einsum("ij,ij->i", n, n)), 1e-12)[:, None]
    return t, n


_HIT = {"box": _hit_box, "frustum": _hit_frustum, "ellipsoid": _hit_ellipsoid}


def intersect(prim: Primitive, origin: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ray hits of one primitive: ``t (N,)`` (inf = miss) and world normals ``(N, 3)``."""
    R = prim.rot
    O_l = (origin - prim.center) @ R
    D_l = dirs @ R
    t, n_l = _HIT[prim.kind](O_l, D_l, prim.params)
    return t, n_l @ R.T


# ----------------------------------------------------------------------------------------
# Scene rendering
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RenderObject:
    """An object to draw: id, world primitives, material, and a texture anchor [m]."""

    instance_id: int
    primitives: tuple[Primitive, ...]
    material: str
    anchor: np.ndarray
    bounds_min: np.ndarray
    bounds_max: np.ndarray


@dataclass(frozen=True)
class Background:
    """Static surroundings: floor plane at ``floor_z`` [m], back wall at ``wall_y`` [m]
    (facing the camera), and an optional table box (min corner, max corner) [m]."""

    floor_z: float
    wall_y: float
    floor_color: tuple[float, float, float]
    wall_color: tuple[float, float, float]
    table_min: Optional[np.ndarray] = None
    table_max: Optional[np.ndarray] = None
    table_color: tuple[float, float, float] = (0.55, 0.38, 0.22)


@dataclass(frozen=True)
class CameraPose:
    """Camera position ``(3,)`` [m] in the world and ``rot`` (3, 3) world-from-optical."""

    position: np.ndarray
    rot: np.ndarray

    @classmethod
    def look_at(cls, position: np.ndarray, target: np.ndarray) -> "CameraPose":
        """Optical z towards ``target``, optical y pointing down (world z up)."""
        position = np.asarray(position, dtype=np.float64)
        z = np.asarray(target, dtype=np.float64) - position
        z /= np.linalg.norm(z)
        x = np.cross(z, np.array([0.0, 0.0, 1.0]))
        if np.linalg.norm(x) < 1e-6:
            raise ValueError("camera looks straight up/down; pick a look-at target off the vertical")
        x /= np.linalg.norm(x)
        y = np.cross(z, x)
        return cls(position=position, rot=np.stack([x, y, z], axis=1))

    def world_to_camera(self, p: np.ndarray) -> np.ndarray:
        """World points ``(..., 3)`` -> optical frame ``(..., 3)`` [m]."""
        return (np.asarray(p) - self.position) @ self.rot

    def matrix(self) -> np.ndarray:
        """4x4 homogeneous world-from-camera transform."""
        T = np.eye(4)
        T[:3, :3] = self.rot
        T[:3, 3] = self.position
        return T


@dataclass(frozen=True)
class SensorModel:
    """Depth/colour sensor imperfections.

    depth_max_m: beyond this range depth is invalid (NaN).
    depth_noise_a, depth_noise_b: depth noise sigma = a + b * z^2 [m] (structured-light-like).
    grazing_cos: |cos| between ray and surface normal below which depth is invalid.
    dropout: fraction of random invalid depth pixels; edge_dropout: probability of dropping a
        pixel at a depth discontinuity > 5 cm (the 'flying pixel' filter of real cameras).
    rgb_noise: sigma of the colour noise [0-255 units].
    """

    depth_max_m: float = 4.5
    depth_noise_a: float = 0.0008
    depth_noise_b: float = 0.0015
    grazing_cos: float = 0.1
    dropout: float = 0.004
    edge_dropout: float = 0.5
    rgb_noise: float = 2.5


_RAY_CACHE: dict[tuple, np.ndarray] = {}


def pixel_rays(intr: CameraIntrinsics) -> np.ndarray:
    """Optical-frame ray directions ``(H, W, 3)`` with z = 1 (cached per intrinsics)."""
    key = (intr.fx, intr.fy, intr.cx, intr.cy, intr.width, intr.height)
    rays = _RAY_CACHE.get(key)
    if rays is None:
        u, v = np.meshgrid(np.arange(intr.width, dtype=np.float64), np.arange(intr.height, dtype=np.float64))
        rays = np.stack([(u - intr.cx) / intr.fx, (v - intr.cy) / intr.fy, np.ones_like(u)], axis=-1)
        _RAY_CACHE[key] = rays
    return rays


_NORM_CACHE: dict[tuple, np.ndarray] = {}


def _inv_ray_norms(intr: CameraIntrinsics) -> np.ndarray:
    key = (intr.fx, intr.fy, intr.cx, intr.cy, intr.width, intr.height)
    inv = _NORM_CACHE.get(key)
    if inv is None:
        r = pixel_rays(intr).reshape(-1, 3)
        inv = 1.0 / np.sqrt(np.einsum("ij,ij->i", r, r))
        _NORM_CACHE[key] = inv
    return inv


def _screen_box(
    lo: np.ndarray, hi: np.ndarray, cam: CameraPose, intr: CameraIntrinsics
) -> Optional[tuple[int, int, int, int]]:
    """Conservative pixel box (u0, v0, u1, v1) of a world AABB [lo, hi]; None if off-screen."""
    corners = np.stack(np.meshgrid([lo[0], hi[0]], [lo[1], hi[1]], [lo[2], hi[2]], indexing="ij"), -1).reshape(8, 3)
    pc = (corners - cam.position) @ cam.rot
    if np.all(pc[:, 2] <= 0.01):
        return None
    if np.any(pc[:, 2] <= 0.01):
        return 0, 0, intr.width, intr.height  # straddles the camera plane: test every pixel
    u = intr.fx * pc[:, 0] / pc[:, 2] + intr.cx
    v = intr.fy * pc[:, 1] / pc[:, 2] + intr.cy
    u0 = max(int(np.floor(u.min())) - 1, 0)
    v0 = max(int(np.floor(v.min())) - 1, 0)
    u1 = min(int(np.ceil(u.max())) + 2, intr.width)
    v1 = min(int(np.ceil(v.max())) + 2, intr.height)
    if u0 >= u1 or v0 >= v1:
        return None
    return u0, v0, u1, v1


def prim_radius(p: Primitive) -> float:
    """Radius of a sphere around ``p.center`` that contains the primitive [m]."""
    if p.kind == "box":
        return float(np.linalg.norm(p.params))
    if p.kind == "frustum":
        return float(np.hypot(max(p.params[0], p.params[1]), p.params[2]))
    return float(max(p.params))


@dataclass
class RenderResult:
    """rgb (H, W, 3) uint8; depth (H, W) float32 [m] NaN = invalid; depth_clean: noiseless
    depth (H, W) float32 [m] (inf = no surface); instance_map (H, W) int32;
    silhouette_px: per instance, pixels it would cover if nothing occluded it."""

    rgb: np.ndarray
    depth: np.ndarray
    depth_clean: np.ndarray
    instance_map: np.ndarray
    silhouette_px: dict[int, int]


_BLAS_CONTROLLER = None


def _single_thread_blas():
    """Context limiting BLAS to one thread while rendering.

    The renderer's matrix products are tiny ((N, 3) x (3, 3)); a multi-threaded BLAS spends
    more on waking threads than on the work and, on a shared machine, made rendering 2.5x
    slower in CPU time (measured: 70 vs 28 ms/frame). threadpoolctl is optional; without it
    this is a no-op (set OMP_NUM_THREADS=1 instead).
    """
    global _BLAS_CONTROLLER
    if _BLAS_CONTROLLER is None:
        try:
            from threadpoolctl import ThreadpoolController

            _BLAS_CONTROLLER = ThreadpoolController()
        except ImportError:
            _BLAS_CONTROLLER = False
    if _BLAS_CONTROLLER is False:
        return contextlib.nullcontext()
    return _BLAS_CONTROLLER.limit(limits=1, user_api="blas")


def render(
    objects: list[RenderObject],
    background: Background,
    cam: CameraPose,
    intr: CameraIntrinsics,
    light_dir: np.ndarray,
    sensor: SensorModel,
    rng: np.random.Generator,
) -> RenderResult:
    """Ray-cast one RGB-D frame with instance ids. Deterministic given ``rng``'s state."""
    with _single_thread_blas():
        return _render(objects, background, cam, intr, light_dir, sensor, rng)


def _render(
    objects: list[RenderObject],
    background: Background,
    cam: CameraPose,
    intr: CameraIntrinsics,
    light_dir: np.ndarray,
    sensor: SensorModel,
    rng: np.random.Generator,
) -> RenderResult:
    """Implementation of ``render``.

    Geometry is float64 (intersections of nearly parallel rays need it); shading, texture
    and noise are float32 over the whole image, which is where most of the time goes.
    """
    H, W = intr.height, intr.width
    N = H * W
    rays_cam = pixel_rays(intr)
    dirs = rays_cam.reshape(-1, 3) @ cam.rot.T  # (N, 3) world, t == optical depth
    O = cam.position

    # Background: floor plane, back wall, table box. Per-pixel 'surface' index into small
    # tables (normal, albedo, texture, anchor) instead of writing (N, 3) arrays per object.
    Dz = dirs[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        t_floor = np.where(Dz < -1e-9, (background.floor_z - O[2]) / Dz, np.inf)
        t_wall = np.where(dirs[:, 1] > 1e-9, (background.wall_y - O[1]) / dirs[:, 1], np.inf)
    use_floor = t_floor <= t_wall
    zbuf = np.where(use_floor, t_floor, t_wall)
    normal = np.empty((N, 3), dtype=np.float32)
    normal[:] = (0.0, -1.0, 0.0)
    normal[use_floor] = (0.0, 0.0, 1.0)
    albedo = np.empty((N, 3), dtype=np.float32)
    albedo[:] = background.wall_color
    albedo[use_floor] = background.floor_color
    tex_id = np.where(use_floor, _TEXTURE_IDS["planks"], _TEXTURE_IDS["plaster"]).astype(np.int8)
    tex_amp = np.full(N, 0.12, dtype=np.float32)
    anchor_idx = np.zeros(N, dtype=np.int32)  # 0 = world origin (background)
    anchors = [np.zeros(3)]
    if background.table_min is not None:
        # Table top = the bounded plane z = table_max[2]; its 4 cm edge is below a pixel
        # at these ranges, so only the top face is ray cast (one plane test, not a box).
        tmin, tmax = background.table_min, background.table_max
        with np.errstate(divide="ignore", invalid="ignore"):
            t_tab = np.where(Dz < -1e-9, (tmax[2] - O[2]) / Dz, np.inf)
        x = O[0] + t_tab * dirs[:, 0]
        y = O[1] + t_tab * dirs[:, 1]
        closer = (t_tab < zbuf) & (x >= tmin[0]) & (x <= tmax[0]) & (y >= tmin[1]) & (y <= tmax[1])
        zbuf = np.where(closer, t_tab, zbuf)
        normal[closer] = (0.0, 0.0, 1.0)
        albedo[closer] = background.table_color
        tex_id[closer] = _TEXTURE_IDS["grain"]
        tex_amp[closer] = 0.18
    ids = np.zeros(N, dtype=np.int32)
    zimg = zbuf.reshape(H, W)  # views: writes below update zbuf
    nimg = normal.reshape(H, W, 3)
    aimg = albedo.reshape(H, W, 3)
    timg = tex_id.reshape(H, W)
    ampimg = tex_amp.reshape(H, W)
    anc_img = anchor_idx.reshape(H, W)
    id_img = ids.reshape(H, W)
    dirs_img = dirs.reshape(H, W, 3)

    silhouette: dict[int, int] = {}
    for obj in objects:
        box = _screen_box(obj.bounds_min, obj.bounds_max, cam, intr)
        if box is None:
            silhouette[obj.instance_id] = 0
            continue
        u0, v0, u1, v1 = box
        hh, ww = v1 - v0, u1 - u0
        t_obj = np.full((hh, ww), np.inf)
        n_obj = np.zeros((hh, ww, 3), dtype=np.float32)
        c_obj = np.zeros((hh, ww, 3), dtype=np.float32)
        for prim in obj.primitives:
            # Each part is ray cast only inside its own screen box (thin chair legs, handles).
            r = prim_radius(prim)
            pbox = _screen_box(prim.center - r, prim.center + r, cam, intr)
            if pbox is None:
                continue
            pu0, pv0 = max(pbox[0], u0), max(pbox[1], v0)
            pu1, pv1 = min(pbox[2], u1), min(pbox[3], v1)
            if pu0 >= pu1 or pv0 >= pv1:
                continue
            sub = (slice(pv0 - v0, pv1 - v0), slice(pu0 - u0, pu1 - u0))
            d_sub = dirs_img[pv0:pv1, pu0:pu1].reshape(-1, 3)
            t, n = intersect(prim, O, d_sub)
            t = t.reshape(pv1 - pv0, pu1 - pu0)
            closer = t < t_obj[sub]
            if not closer.any():
                continue
            t_obj[sub] = np.where(closer, t, t_obj[sub])
            n_obj[sub][closer] = n.reshape(pv1 - pv0, pu1 - pu0, 3)[closer]
            c_obj[sub][closer] = prim.color
        hit = np.isfinite(t_obj)
        silhouette[obj.instance_id] = int(hit.sum())
        reg = (slice(v0, v1), slice(u0, u1))
        win = hit & (t_obj < zimg[reg])
        if not win.any():
            continue
        zimg[reg][win] = t_obj[win]
        nimg[reg][win] = n_obj[win]
        aimg[reg][win] = c_obj[win]
        tex_name, amp = MATERIALS[obj.material]
        timg[reg][win] = _TEXTURE_IDS[tex_name]
        ampimg[reg][win] = amp
        anchors.append(np.asarray(obj.anchor, dtype=np.float64))
        anc_img[reg][win] = len(anchors) - 1
        id_img[reg][win] = obj.instance_id

    finite = np.isfinite(zbuf)
    zsafe = np.where(finite, zbuf, 0.0)
    # Object-anchored hit points, so textures move with their object.
    local = (O + zsafe[:, None] * dirs - np.asarray(anchors)[anchor_idx]).astype(np.float32)
    tex = _texture(local, tex_id, tex_amp)

    # |world ray| == |optical ray| (rotation), so the per-pixel norms are cached per camera.
    ray_n = (dirs * _inv_ray_norms(intr)[:, None]).astype(np.float32)
    normal32 = normal
    cos_i = -np.einsum("ij,ij->i", normal32, ray_n)  # > 0 when the surface faces the camera
    light = np.asarray(light_dir, dtype=np.float32)
    lam = np.clip(normal32 @ light, 0.0, 1.0)
    shade = 0.38 + 0.62 * lam
    # Blinn-Phong highlight, strong on glossy materials (metal/glass): view dir = -ray.
    half = light - ray_n
    half /= np.sqrt(np.einsum("ij,ij->i", half, half))[:, None] + 1e-9
    spec = np.clip(np.einsum("ij,ij->i", normal32, half), 0.0, 1.0) ** 24
    gloss = np.where(tex_id == _TEXTURE_IDS["sheen"], np.float32(0.45), np.float32(0.06))
    # Distance falloff so the far wall reads darker (a cheap depth cue for the eye).
    fall = 1.0 / (1.0 + 0.04 * np.where(finite, zbuf, 10.0).astype(np.float32))
    rgb = albedo * (tex * shade * fall)[:, None] + (gloss * spec)[:, None]
    # One noise draw per pixel (luminance noise) keeps the RNG cost at N, not 3N.
    noise = rng.standard_normal(size=N, dtype=np.float32) * np.float32(sensor.rgb_noise)
    rgb = rgb * np.float32(255.0) + noise[:, None]
    rgb = np.clip(rgb, 0, 255).astype(np.uint8).reshape(H, W, 3)

    depth_clean = zbuf.reshape(H, W).astype(np.float32)
    z32 = depth_clean.ravel()
    sigma = np.float32(sensor.depth_noise_a) + np.float32(sensor.depth_noise_b) * z32 * z32
    depth = z32 + rng.standard_normal(size=N, dtype=np.float32) * sigma
    invalid = ~finite | (zbuf > sensor.depth_max_m) | (np.abs(cos_i) < sensor.grazing_cos)
    drop = rng.random(size=N, dtype=np.float32)
    invalid |= drop < sensor.dropout
    # Flying-pixel filter: drop part of the pixels at depth discontinuities > 5 cm.
    with np.errstate(invalid="ignore"):
        jump = np.zeros((H, W), dtype=bool)
        jump[:, 1:] |= np.abs(np.diff(depth_clean, axis=1)) > 0.05
        jump[1:, :] |= np.abs(np.diff(depth_clean, axis=0)) > 0.05
    # Reuse the dropout draw (scaled) so each pixel costs one random number.
    invalid |= jump.ravel() & (drop > 1.0 - sensor.edge_dropout)
    depth = np.where(invalid, np.float32(np.nan), depth).reshape(H, W)
    return RenderResult(
        rgb=rgb,
        depth=depth,
        depth_clean=depth_clean,
        instance_map=ids.reshape(H, W),
        silhouette_px=silhouette,
    )


def _texture(p: np.ndarray, tex_id: np.ndarray, amp: np.ndarray) -> np.ndarray:
    """Procedural albedo multiplier ``(N,)`` float32 around 1 from object-anchored points
    ``(N, 3)`` [m]; each pattern is evaluated only on the pixels that use it."""
    out = np.zeros(len(p), dtype=np.float32)
    for tid in np.unique(tex_id):
        idx = np.flatnonzero(tex_id == tid)
        q = p[idx]
        x, y, z = q[:, 0], q[:, 1], q[:, 2]
        if tid in (_TEXTURE_IDS["smooth"], _TEXTURE_IDS["sheen"]):
            val = 0.5 * np.sin(23.0 * x + 17.0 * y + 3.0) * np.sin(19.0 * z - 13.0 * x)
        elif tid == _TEXTURE_IDS["grain"]:
            val = np.sin(90.0 * (x + y) + 6.0 * np.sin(11.0 * z + 7.0 * x)) * 0.8 + 0.2 * _hash(q)
        elif tid == _TEXTURE_IDS["weave"]:
            val = np.sin(300.0 * x) * np.sin(300.0 * (y + z))
        elif tid == _TEXTURE_IDS["speckle"]:
            val = _hash(q)
        elif tid == _TEXTURE_IDS["planks"]:
            val = np.where((np.floor(x * 6.0) % 2) == 0, 0.6, -0.6) + 0.4 * np.sin(60.0 * y + 5.0 * np.sin(3.0 * x))
        else:  # plaster
            val = 0.5 * _hash(q) + 0.3 * np.sin(7.0 * x + 5.0 * z)
        out[idx] = val
    return 1.0 + amp * out


def _hash(q: np.ndarray) -> np.ndarray:
    """Value noise in [-1, 1] on 4 mm cells (deterministic, no RNG state)."""
    cell = np.floor(q * 250.0).astype(np.float32)
    h = np.sin(cell @ np.array([12.9898, 78.233, 37.719], dtype=np.float32)) * np.float32(43758.5453)
    return (h - np.floor(h)) * 2.0 - 1.0

"""The synthetic scenes' geometry (synthetic.py renders it): horizon, hills, sun, clouds, trees,
houses, a lake or a road, drawn from an rng in relative coordinates (x right, y down), so any
size works and both seasons share it."""
from __future__ import annotations

import numpy as np


def _wave(waves: np.ndarray, x):
    """Sum of sinusoids; rows of ``waves`` are (amplitude, frequency, phase)."""
    x = np.asarray(x, dtype=np.float64)[..., None]
    return (waves[:, 0] * np.sin(2 * np.pi * waves[:, 1] * x + waves[:, 2])).sum(-1)


def ground_line(desc: dict, x):
    """y of the sky/ground boundary (below the far hills) at relative x."""
    return desc["horizon"] + _wave(desc["ground_waves"], x)


def far_line(desc: dict, x):
    # Far hills always rise above the ground line, so they never cover it.
    bump = 0.5 + 0.5 * np.tanh(_wave(desc["far_waves"], x) * 3)
    return ground_line(desc, x) - desc["far_base"] - desc["far_height"] * bump


def road_geometry(road: dict, y):
    """Centre and half-width of the road at rows y (perspective: wider near)."""
    s = np.clip((y - road["y_top"]) / (1.0 - road["y_top"]), 0.0, 1.0)
    centre = road["x_top"] + (road["x_bottom"] - road["x_top"]) * s + road["bend"] * np.sin(np.pi * s)
    half = road["w_top"] + (road["w_bottom"] - road["w_top"]) * s
    return centre, half


def describe_scene(rng: np.random.Generator) -> dict:
    """Draw a scene's geometry from ``rng``; independent of season and size."""
    u = rng.uniform
    d = {"horizon": u(0.46, 0.62),
         "ground_waves": np.stack([u(0.004, 0.025, 3), u(0.4, 2.2, 3), u(0, 2 * np.pi, 3)], 1),
         "far_waves": np.stack([u(0.2, 0.6, 2), u(0.8, 3.0, 2), u(0, 2 * np.pi, 2)], 1),
         "far_base": u(0.01, 0.03), "far_height": u(0.04, 0.12),
         # Exposure and colour cast vary per scene (identically in both seasons)
         # so each domain is not a handful of exact colours.
         "light": u(0.93, 1.05), "tint": u(-8, 8, 3),
         "wall": int(rng.integers(4)), "roof": int(rng.integers(3))}
    hz = d["horizon"]

    d["sun"] = (u(0.1, 0.9), u(0.09, hz - 0.2), u(0.045, 0.075)) if u() < 0.7 else None
    clouds = []
    for _ in range(int(rng.integers(0, 4))):
        cx, cy, w = u(0.0, 1.0), u(0.07, hz - 0.18), u(0.10, 0.24)
        k = int(rng.integers(3, 6))
        px = cx + w * np.linspace(-0.5, 0.5, k) + u(-0.02, 0.02, k)
        pr = w * (0.22 + 0.16 * (1 - np.abs(np.linspace(-1, 1, k)))) * u(0.85, 1.15, k)
        clouds.append({"x": px, "y": cy - 0.4 * pr, "r": pr, "bottom": cy + 0.01})
    d["clouds"] = clouds

    # At most one ground feature keeps the layout uncluttered at 64 px.
    kind = u()  # lake, road or neither
    d["lake"] = d["road"] = None
    if kind < 0.3:
        cx = u(0.2, 0.8)
        rx = u(0.12, 0.24)
        cy = min(float(ground_line(d, cx)) + u(0.07, 0.2), 0.88)
        d["lake"] = {"x": cx, "y": cy, "rx": rx, "ry": rx * u(0.18, 0.28)}
    elif kind < 0.65:
        x_top = u(0.3, 0.7)
        d["road"] = {"x_top": x_top, "y_top": float(ground_line(d, x_top)) + 0.005,
                     "x_bottom": u(0.25, 0.75), "w_top": u(0.004, 0.01),
                     "w_bottom": u(0.10, 0.17), "bend": u(-0.1, 0.1)}

    d["objects"] = _place_objects(rng, d)
    # Grass tufts / snow drifts: texture on open ground.
    n = int(rng.integers(25, 50))
    tx = u(0, 1, n)
    gy = ground_line(d, tx)
    ty = gy + 0.01 + (0.99 - gy) * u(0, 1, n) ** 0.8
    d["tufts"] = np.stack([tx, ty, 0.005 + 0.012 * (ty - hz) / (1 - hz)], 1)
    # Snowfall is drawn for every scene (keeps the rng stream season-free) and
    # only painted by palettes that have a snowflake colour.
    n = int(rng.integers(25, 70)) if u() < 0.5 else 0
    d["flakes"] = np.stack([u(0, 1, n), u(0, 1, n), u(0.004, 0.008, n)], 1)
    return d


def _blocked(d: dict, x: float, y: float) -> bool:
    """True if an object standing at (x, y) would be in the lake or on the road."""
    if d["lake"] is not None:
        lk = d["lake"]
        if ((x - lk["x"]) / (lk["rx"] + 0.04)) ** 2 + ((y - lk["y"]) / (lk["ry"] + 0.04)) ** 2 < 1:
            return True
    if d["road"] is not None:
        centre, half = road_geometry(d["road"], y)
        if abs(x - centre) < half + 0.04:
            return True
    return False


def _place_objects(rng: np.random.Generator, d: dict) -> list:
    u, hz = rng.uniform, d["horizon"]
    kinds = ["house"] * int(np.searchsorted([0.25, 0.7], u()))  # 0, 1 or 2 houses
    kinds += [("conifer" if u() < 0.5 else "deciduous") for _ in range(int(rng.integers(3, 9)))]
    objects = []
    for kind in kinds:
        for _ in range(8):  # rejection sampling off the lake/road/houses; bounded tries
            x = u(0.1, 0.9) if kind == "house" else u(0.03, 0.97)
            gy = float(ground_line(d, x))
            # Biased towards the horizon: many small distant things, few big near ones.
            y = gy + 0.005 + (0.96 - gy) * u() ** 1.6
            # Houses are placed first; keep trees (and other houses) from hiding them.
            gap = 0.14 if kind == "house" else 0.04
            near_house = any(abs(x - o["x"]) < 0.6 * o["w"] + gap and abs(y - o["y"]) < 0.15
                             for o in objects)
            if not (_blocked(d, x, y) or near_house):
                break
        else:
            continue
        scale = 0.45 + 1.1 * (y - hz) / (1 - hz)  # perspective: nearer is bigger
        o = {"kind": kind, "x": x, "y": y}
        if kind == "conifer":
            o["h"] = u(0.16, 0.26) * scale
            o["w"] = o["h"] * u(0.24, 0.32)
            o["tiers"] = int(rng.integers(2, 4))
        elif kind == "deciduous":
            o["h"] = u(0.14, 0.24) * scale
            o["r"] = o["h"] * u(0.30, 0.38)
            o["w"] = o["r"] * 1.5
        else:
            o["w"] = u(0.14, 0.2) * scale
            o["h"] = o["w"] * u(0.55, 0.75)
            o["roof_h"] = o["w"] * u(0.32, 0.48)
            o["door"] = u(-0.25, 0.25)
            o["windows"] = int(rng.integers(1, 3))
            o["chimney"] = bool(u() < 0.5)
        objects.append(o)
    objects.sort(key=lambda o: o["y"])  # painter's order: far to near
    return objects

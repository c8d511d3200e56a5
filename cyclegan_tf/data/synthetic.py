"""``synthetic_seasons``: procedural summer/winter landscapes, no download needed.

A scene's geometry (horizon, hills, sun, clouds, trees, houses, a lake or a
road) is drawn from its seed; the season only chooses the palette.  So
``render_scene(s, n, "summer")`` and ``render_scene(s, n, "winter")`` are a
pixel-aligned pair, an exact ground truth for evaluating summer->winter
translation, while training uses unpaired A/B sets built from independent seeds.

The pipeline is: ``scene_layout.describe_scene`` (geometry from an rng, in relative
coordinates so any size works) -> ``_label_map`` (painter's algorithm on a
season-independent segmentation) -> palette lookup plus gradients -> 2x2
box filter for light anti-aliasing.  Everything is plain numpy.
"""
from __future__ import annotations

import functools
import math

import numpy as np

from cyclegan_tf.data import scene_layout

SEASONS = ("summer", "winter")
SPLITS = ("train", "test")
MIN_SIZE = 16

# Segmentation classes; the renderer paints them in roughly this order.
LABELS = ("sky", "sun", "cloud", "far_hill", "ground", "tuft", "shadow", "lake",
          "road", "trunk", "canopy", "canopy_top", "conifer", "conifer_top",
          "wall", "roof", "window", "door", "chimney")
LABEL = {name: i for i, name in enumerate(LABELS)}

# One colour per label ("sky" and "ground" are vertical gradients; "wall" and
# "roof" are per-scene choices).  The "_top" labels are the upper rim of
# foliage: a sunlit highlight in summer, a snow cap in winter.
PALETTES = {
    "summer": {
        "sky_top": (62, 122, 212), "sky_horizon": (172, 212, 242),
        "sun": (255, 222, 80), "cloud": (250, 251, 252),
        "far_hill": (104, 158, 112),
        "ground_far": (136, 190, 78), "ground_near": (72, 142, 46),
        "tuft": (58, 118, 40), "shadow": (44, 96, 36),
        "lake": (56, 118, 192), "road": (198, 174, 124),
        "trunk": (104, 70, 44), "canopy": (44, 126, 48), "canopy_top": (98, 172, 70),
        "conifer": (28, 92, 50), "conifer_top": (52, 128, 62),
        "wall": ((236, 222, 182), (192, 78, 62), (126, 156, 188), (232, 200, 102)),
        "roof": ((152, 52, 40), (86, 86, 98), (128, 82, 50)),
        "window": (160, 206, 236), "door": (96, 60, 40), "chimney": (140, 62, 50),
        "snowflake": None,
    },
    "winter": {
        # Overcast: low-contrast grey sky, pale sun, clouds darker than the sky.
        "sky_top": (140, 150, 168), "sky_horizon": (214, 219, 228),
        "sun": (238, 236, 222), "cloud": (176, 181, 192),
        "far_hill": (190, 200, 218),
        "ground_far": (222, 229, 240), "ground_near": (250, 251, 253),
        "tuft": (212, 221, 236), "shadow": (178, 190, 214),
        "lake": (196, 218, 234), "road": (160, 160, 166),
        "trunk": (72, 56, 48), "canopy": (118, 104, 96), "canopy_top": (246, 248, 251),
        "conifer": (30, 64, 50), "conifer_top": (240, 244, 249),
        "wall": ((206, 194, 162), (160, 66, 54), (108, 134, 162), (200, 174, 92)),
        "roof": ((246, 248, 251),) * 3,  # snow-covered whatever the tiles
        "window": (252, 208, 104), "door": (80, 50, 34), "chimney": (122, 54, 44),
        "snowflake": (255, 255, 255),
    },
}


# --------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _allowed(on: tuple) -> np.ndarray:
    """Boolean lookup table over label ids (much cheaper than np.isin)."""
    table = np.zeros(256, bool)
    table[[LABEL[n] for n in on]] = True
    return table


class _Canvas:
    """Label image with bounding-box-limited painting (keeps big sizes fast)."""

    def __init__(self, res: int):
        self.res = res
        self.c = (np.arange(res) + 0.5) / res  # pixel centres, relative
        self.lab = np.zeros((res, res), np.uint8)

    def paint(self, name, box, inside, on=None):
        """Set pixels in relative ``box`` (x0, y0, x1, y1) where ``inside(X, Y)``
        holds (and, if ``on`` is given, whose current label is one of ``on``)."""
        x0, y0, x1, y1 = box
        c0, c1 = max(math.floor(x0 * self.res), 0), min(math.ceil(x1 * self.res), self.res)
        r0, r1 = max(math.floor(y0 * self.res), 0), min(math.ceil(y1 * self.res), self.res)
        if c0 >= c1 or r0 >= r1:
            return
        sub = self.lab[r0:r1, c0:c1]
        m = inside(self.c[None, c0:c1], self.c[r0:r1, None])
        if on is not None:
            m = m & _allowed(on)[sub]
        sub[m] = LABEL[name]

    def paint_dots(self, name, ellipses, on=None):
        """Paint many small ellipses (rows: x, y, rx, ry) in one vectorised go."""
        rows, cols = _ellipse_pixels(ellipses, self.res)
        if on is not None:
            keep = _allowed(on)[self.lab[rows, cols]]
            rows, cols = rows[keep], cols[keep]
        self.lab[rows, cols] = LABEL[name]


def _ellipse_pixels(ellipses: np.ndarray, res: int):
    """(row, col) indices of the pixels inside any of many small ellipses:
    every ellipse is tested on a fixed window around its centre at once, so
    the cost doesn't grow with a Python loop per ellipse."""
    if len(ellipses) == 0:
        return np.zeros(0, np.intp), np.zeros(0, np.intp)
    x, y, rx, ry = (ellipses[:, i, None, None] for i in range(4))
    kx, ky = int(np.ceil(rx.max() * res)) + 1, int(np.ceil(ry.max() * res)) + 1
    cols = np.floor(x * res).astype(np.intp) + np.arange(-kx, kx + 1)[None, None, :]
    rows = np.floor(y * res).astype(np.intp) + np.arange(-ky, ky + 1)[None, :, None]
    m = ((((cols + 0.5) / res - x) / rx) ** 2 + (((rows + 0.5) / res - y) / ry) ** 2 <= 1)
    m &= (cols >= 0) & (cols < res) & (rows >= 0) & (rows < res)
    rows, cols = np.broadcast_arrays(rows, cols)
    return rows[m], cols[m]


def _circle(cx, cy, r):
    return (cx - r, cy - r, cx + r, cy + r), lambda X, Y: (X - cx) ** 2 + (Y - cy) ** 2 <= r * r


def _circles(xs, ys, rs, bottom=None):
    """Union of circles (a cloud, a tree crown), optionally cut flat at ``bottom``."""
    def inside(X, Y):
        m = ((X[..., None] - xs) ** 2 + (Y[..., None] - ys) ** 2 <= rs * rs).any(-1)
        return m if bottom is None else m & (Y <= bottom)
    box = ((xs - rs).min(), (ys - rs).min(), (xs + rs).max(), (ys + rs).max())
    return box, inside


def _ellipse(cx, cy, rx, ry):
    return ((cx - rx, cy - ry, cx + rx, cy + ry),
            lambda X, Y: ((X - cx) / rx) ** 2 + ((Y - cy) / ry) ** 2 <= 1)


def _rect(x0, y0, x1, y1):
    return (x0, y0, x1, y1), lambda X, Y: (X >= x0) & (X <= x1) & (Y >= y0) & (Y <= y1)


def _triangle(cx, y_apex, y_base, half_w):
    """Upright isosceles triangle."""
    def inside(X, Y):
        t = (Y - y_apex) / (y_base - y_apex)
        return (t >= 0) & (t <= 1) & (np.abs(X - cx) <= half_w * t)
    return (cx - half_w, y_apex, cx + half_w, y_base), inside


def _label_map(d: dict, res: int) -> np.ndarray:
    cv = _Canvas(res)
    c = cv.c
    full = (0.0, 0.0, 1.0, 1.0)
    if d["sun"] is not None:
        cv.paint("sun", *_circle(*d["sun"]))
    for cl in d["clouds"]:
        cv.paint("cloud", *_circles(cl["x"], cl["y"], cl["r"], bottom=cl["bottom"]))
    far, ground = scene_layout.far_line(d, c), scene_layout.ground_line(d, c)  # per column
    cv.paint("far_hill", full, lambda X, Y: Y >= far[None, :])
    cv.paint("ground", full, lambda X, Y: Y >= ground[None, :])
    t = d["tufts"]
    cv.paint_dots("tuft", np.stack([t[:, 0], t[:, 1], 1.8 * t[:, 2], 0.55 * t[:, 2]], 1), on=("ground",))
    if d["lake"] is not None:
        lk = d["lake"]
        cv.paint("lake", *_ellipse(lk["x"], lk["y"], lk["rx"], lk["ry"]), on=("ground", "tuft"))
    if d["road"] is not None:
        rd = d["road"]
        def on_road(X, Y):
            centre, half = scene_layout.road_geometry(rd, Y)
            return np.abs(X - centre) <= half
        cv.paint("road", (0, rd["y_top"], 1, 1), on_road, on=("ground", "tuft"))
    for o in d["objects"]:
        _paint_object(cv, o, d)
    return cv.lab


def _paint_object(cv: _Canvas, o: dict, d: dict):
    x, y, w = o["x"], o["y"], o["w"]
    # Contact shadow, cast away from the sun (or straight down under overcast).
    side = 0.0 if d["sun"] is None else np.sign(x - d["sun"][0]) * 0.35 * w
    cv.paint("shadow", *_ellipse(x + side, y, 0.85 * w, 0.18 * w), on=("ground", "tuft", "road"))
    if o["kind"] == "conifer":
        h = o["h"]
        cv.paint("trunk", *_rect(x - 0.12 * w, y - 0.2 * h, x + 0.12 * w, y))
        n = o["tiers"]
        tier_h = 0.85 * h / (n * 0.75 + 0.25)  # tiers overlap by a quarter
        for i in range(n):
            apex = y - h + i * 0.75 * tier_h
            base = apex + tier_h
            hw = w * (0.55 + 0.45 * (i + 1) / n)
            box, inside = _triangle(x, apex, base, hw)
            cv.paint("conifer", box, inside)
            # Upper rim of each tier: highlight / snow. The notched lower edge
            # reads as drooping snow on branches.
            cut = apex + tier_h * (0.38 + 0.12 * np.cos(np.pi * 0.5 * i))
            cv.paint("conifer_top", box, lambda X, Y, f=inside, cut=cut:
                     f(X, Y) & (Y <= cut + 0.06 * tier_h * np.cos(2 * np.pi * (X - x) / (0.4 * w))))
    elif o["kind"] == "deciduous":
        h, r = o["h"], o["r"]
        cy = y - h + r
        cv.paint("trunk", *_rect(x - 0.12 * r, cy, x + 0.12 * r, y))
        px, py, pr = x + np.array([-0.55, 0.55, 0.0]) * r, cy + np.array([0.3, 0.3, 0.0]) * r, \
            np.array([0.7, 0.7, 1.0]) * r
        box, inside = _circles(px, py, pr)
        cv.paint("canopy", box, inside)

        def crescents(X, Y):
            # Top rim of each puff: inside it but outside itself shifted down.
            dx, dy = X[..., None] - px, Y[..., None] - py
            return ((dx ** 2 + dy ** 2 <= pr ** 2) & (dx ** 2 + (dy - 0.35 * pr) ** 2 > pr ** 2)).any(-1)
        cv.paint("canopy_top", box, crescents)
    else:
        h, rh = o["h"], o["roof_h"]
        x0, x1, top = x - w / 2, x + w / 2, y - h
        if o["chimney"]:
            cv.paint("chimney", *_rect(x + 0.18 * w, top - 0.9 * rh, x + 0.3 * w, top))
        cv.paint("wall", *_rect(x0, top, x1, y))
        cv.paint("roof", *_triangle(x, top - rh, top + 0.02 * w, 0.6 * w))
        dx = x + o["door"] * w
        cv.paint("door", *_rect(dx - 0.09 * w, y - 0.55 * h, dx + 0.09 * w, y))
        # Windows on the side(s) of the wall away from the door.
        slots = [-0.3, 0.3] if o["windows"] == 2 else [-0.3 if o["door"] > 0 else 0.3]
        for s in slots:
            if abs(s - o["door"]) < 0.25:
                continue
            wx, wy, ws = x + s * w, y - 0.62 * h, 0.09 * w
            cv.paint("window", *_rect(wx - ws, wy - ws, wx + ws, wy + ws))


def _colourise(d: dict, lab: np.ndarray, palette: dict) -> np.ndarray:
    """Palette lookup, sky/ground gradients and snowfall; float image [0, 255]."""
    def colour(name):
        if name == "sky":
            return palette["sky_horizon"]
        if name == "ground":
            return palette["ground_far"]
        if name in ("wall", "roof"):
            return palette[name][d[name]]
        return palette[name]

    # A per-row lookup table turns labels + vertical gradients into one gather.
    res = lab.shape[0]
    y = (np.arange(res) + 0.5) / res
    lut = np.empty((res, len(LABELS), 3), np.float32)
    lut[:] = np.array([colour(n) for n in LABELS], np.float32)
    hz = d["horizon"]
    t = (np.clip(y / hz, 0, 1) ** 0.8)[:, None]
    lut[:, LABEL["sky"]] = (1 - t) * np.float32(palette["sky_top"]) + t * np.float32(palette["sky_horizon"])
    t = np.clip((y - hz) / (1 - hz), 0, 1)[:, None]
    lut[:, LABEL["ground"]] = (1 - t) * np.float32(palette["ground_far"]) + t * np.float32(palette["ground_near"])
    # Exposure and tint go into the small table, not the full image.
    lut = lut * np.float32(d["light"]) + d["tint"].astype(np.float32)
    flat = (np.arange(res, dtype=np.intp) * len(LABELS))[:, None] + lab
    img = np.take(lut.reshape(-1, 3), flat, axis=0)
    if palette["snowflake"] is not None:
        f = d["flakes"]
        r = np.maximum(f[:, 2], 0.75 / res)  # at least ~1.5 px across, never vanishes
        rows, cols = _ellipse_pixels(np.stack([f[:, 0], f[:, 1], r, r], 1), res)
        img[rows, cols] = np.float32(palette["snowflake"]) * np.float32(d["light"]) + d["tint"]
    return img


def _check_args(size, season=None):
    if season is not None and season not in SEASONS:
        raise ValueError(f"season must be one of {SEASONS}, got {season!r}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        raise ValueError(f"size must be an integer >= {MIN_SIZE}, got {size!r}")
    if size < MIN_SIZE:
        raise ValueError(f"size must be >= {MIN_SIZE} pixels, got {size}")


def scene_labels(seed: int, size: int) -> np.ndarray:
    """Season-independent segmentation of scene ``seed``: uint8 [size, size]
    of indices into ``LABELS`` (no anti-aliasing), e.g. for per-region stats."""
    _check_args(size)
    return _label_map(scene_layout.describe_scene(np.random.default_rng(seed)), int(size))


def render_scene(seed: int, size: int, season: str) -> np.ndarray:
    """Render scene ``seed`` as a uint8 [size, size, 3] image in ``season``.

    Deterministic; the geometry depends only on ``seed``, so the summer and
    winter renders of one seed are a pixel-aligned pair.
    """
    _check_args(size, season)
    size = int(size)
    d = scene_layout.describe_scene(np.random.default_rng(seed))
    ss = 2 if size <= 512 else 1  # 2x supersampling = light anti-aliasing
    img = _colourise(d, _label_map(d, size * ss), PALETTES[season])
    if ss > 1:  # 2x2 box filter, as strided adds (faster than reshape+mean)
        img = (img[0::2, 0::2] + img[1::2, 0::2] + img[0::2, 1::2] + img[1::2, 1::2]) * 0.25
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)  # +0.5 then truncate = round


# --------------------------------------------------------------------------
# Dataset splits
# --------------------------------------------------------------------------

def split_seeds(split: str, num_images: int, seed: int = 0) -> dict:
    """Scene seeds used by ``make_split``: {"A": int64 [N], "B": int64 [N]}.

    Each (split, domain) stream gets its own child of SeedSequence(seed), and
    the two low bits of every scene seed encode the stream, so train/test and
    A/B seeds can never coincide.  Streams are prefix-stable: the first k
    seeds do not depend on ``num_images``.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if isinstance(num_images, bool) or not isinstance(num_images, (int, np.integer)) or num_images < 1:
        raise ValueError(f"num_images must be an integer >= 1, got {num_images!r}")
    children = np.random.SeedSequence(seed).spawn(4)  # train A, train B, test A, test B
    out = {}
    for j, domain in enumerate("AB"):
        code = 2 * SPLITS.index(split) + j
        raw = np.random.default_rng(children[code]).integers(0, 2 ** 60, int(num_images), dtype=np.int64)
        out[domain] = (raw << 2) | code
    return out


def make_split(split: str, num_images: int, size: int, seed: int = 0,
               paired: bool = False) -> dict:
    """Build a split as uint8 arrays [N, size, size, 3].

    "train": {"A": summer, "B": winter} from independent scene seeds (unpaired).
    "test": additionally "B_of_A", the winter render of each A scene (paired
    ground truth); "B" is still independent winter scenes.
    paired: "B_of_A" for the train split too, and no unpaired "B" there (the
    aligned data of pix2pix).
    """
    seeds = split_seeds(split, num_images, seed)
    _check_args(size)
    out = {"A": np.stack([render_scene(int(s), size, "summer") for s in seeds["A"]])}
    if not (paired and split == "train"):
        out["B"] = np.stack([render_scene(int(s), size, "winter") for s in seeds["B"]])
    if split == "test" or paired:
        out["B_of_A"] = np.stack([render_scene(int(s), size, "winter") for s in seeds["A"]])
    return out

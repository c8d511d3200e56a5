"""Tests for the built-in synthetic_seasons dataset (cyclegan_tf/synthetic.py)."""
import numpy as np
import pytest

from cyclegan_tf.data.synthetic import (LABEL, LABELS, make_split, render_scene,
                                   scene_labels, split_seeds)

N_SCENES = 20  # scenes per statistical check: enough to be robust, still fast


def edge_map(img):
    """Log-compressed max-over-channels gradient magnitude, flattened.

    Log compression keeps a faint edge (white snow roof on white snow) as
    visible as a strong one (green grass to blue sky), so the map reflects
    where the edges are, not how contrasty the palette makes them."""
    gy, gx = np.gradient(img.astype(np.float64), axis=(0, 1))
    return np.log1p(np.hypot(gx, gy).max(-1)).ravel()


def edge_corr(a, b):
    return np.corrcoef(edge_map(a), edge_map(b))[0, 1]


@pytest.mark.parametrize("size", [16, 64, 100, 256])
@pytest.mark.parametrize("season", ["summer", "winter"])
def test_shape_and_dtype(size, season):
    img = render_scene(7, size, season)
    assert img.shape == (size, size, 3)
    assert img.dtype == np.uint8
    assert img.std() > 10  # a scene, not a flat fill
    labels = scene_labels(7, size)
    assert labels.shape == (size, size)
    assert labels.max() < len(LABELS)


def test_deterministic_and_seed_dependent():
    a = render_scene(3, 64, "summer")
    assert np.array_equal(a, render_scene(3, 64, "summer"))
    assert np.array_equal(render_scene(3, 64, "winter"), render_scene(3, 64, "winter"))
    for other in (4, 5, 12345):
        b = render_scene(other, 64, "summer")
        assert np.abs(a.astype(int) - b).mean() > 5


def test_does_not_touch_global_rng():
    np.random.seed(0)
    expected = np.random.random()
    np.random.seed(0)
    render_scene(11, 32, "winter")
    make_split("test", 2, 16, seed=1)
    assert np.random.random() == expected


def test_summer_and_winter_share_geometry():
    same = [edge_corr(render_scene(s, 64, "summer"), render_scene(s, 64, "winter"))
            for s in range(N_SCENES)]
    other = [edge_corr(render_scene(s, 64, "summer"), render_scene(s + 1000, 64, "winter"))
             for s in range(N_SCENES)]
    assert min(same) > 0.6, same
    assert max(other) < 0.45, other
    assert np.mean(same) - np.mean(other) > 0.4


def test_seasons_differ_in_colour():
    ground_gain, green_minus_blue, sky_blueness = [], [], []
    for s in range(N_SCENES):
        summer = render_scene(s, 64, "summer").astype(np.float64)
        winter = render_scene(s, 64, "winter").astype(np.float64)
        labels = scene_labels(s, 64)
        ground, sky = labels == LABEL["ground"], labels == LABEL["sky"]
        assert ground.mean() > 0.1 and sky.mean() > 0.1
        # Snow is much brighter than grass.
        ground_gain.append(winter[ground].mean() - summer[ground].mean())
        # Summer is green, winter is bluish white.
        gmb = lambda im: (im[..., 1] - im[..., 2]).mean()
        green_minus_blue.append(gmb(summer) - gmb(winter))
        # Summer sky is saturated blue, winter sky is grey.
        bmr = lambda im: (im[sky][:, 2] - im[sky][:, 0]).mean()
        sky_blueness.append(bmr(summer) - bmr(winter))
    assert min(ground_gain) > 80, ground_gain
    assert min(green_minus_blue) > 5 and np.mean(green_minus_blue) > 15, green_minus_blue
    assert min(sky_blueness) > 40, sky_blueness


def test_train_split_is_unpaired():
    n, size = 6, 32
    data = make_split("train", n, size, seed=3)
    assert set(data) == {"A", "B"}
    for key in ("A", "B"):
        assert data[key].shape == (n, size, size, 3) and data[key].dtype == np.uint8
    seeds = split_seeds("train", n, seed=3)
    for i in range(n):
        assert np.array_equal(data["A"][i], render_scene(int(seeds["A"][i]), size, "summer"))
        assert np.array_equal(data["B"][i], render_scene(int(seeds["B"][i]), size, "winter"))
        # Different geometry: the scene layouts disagree on many pixels.
        assert (scene_labels(int(seeds["A"][i]), size) != scene_labels(int(seeds["B"][i]), size)).mean() > 0.1


def test_test_split_has_paired_ground_truth():
    n, size = 5, 32
    data = make_split("test", n, size, seed=3)
    assert set(data) == {"A", "B", "B_of_A"}
    assert all(v.shape == (n, size, size, 3) and v.dtype == np.uint8 for v in data.values())
    seeds = split_seeds("test", n, seed=3)
    for i in range(n):
        assert np.array_equal(data["B_of_A"][i], render_scene(int(seeds["A"][i]), size, "winter"))
        assert not np.array_equal(data["B"][i], data["B_of_A"][i])
    # Deterministic as a whole.
    again = make_split("test", n, size, seed=3)
    assert all(np.array_equal(data[k], again[k]) for k in data)


def test_split_seeds_disjoint_and_stable():
    for seed in (0, 1, 42):
        train, test = split_seeds("train", 500, seed), split_seeds("test", 500, seed)
        streams = [set(map(int, s)) for s in (train["A"], train["B"], test["A"], test["B"])]
        assert all(len(s) == 500 for s in streams)  # no repeats inside a stream
        for i in range(4):
            for j in range(i + 1, 4):
                assert not streams[i] & streams[j]
    # Prefix-stable: asking for more images doesn't reshuffle the first ones.
    assert np.array_equal(split_seeds("train", 3, 0)["A"], split_seeds("train", 10, 0)["A"][:3])
    # The base seed matters.
    assert not set(split_seeds("train", 50, 0)["A"]) & set(split_seeds("train", 50, 1)["A"])


@pytest.mark.parametrize("call, word", [
    (lambda: render_scene(0, 64, "autumn"), "season"),
    (lambda: render_scene(0, 15, "summer"), "size"),
    (lambda: render_scene(0, 64.0, "summer"), "size"),
    (lambda: scene_labels(0, 8), "size"),
    (lambda: make_split("val", 4, 32), "split"),
    (lambda: make_split("train", 0, 32), "num_images"),
    (lambda: make_split("test", 2, 10), "size"),
])
def test_bad_arguments_raise(call, word):
    with pytest.raises(ValueError, match=word):
        call()

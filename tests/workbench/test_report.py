import numpy as np

from workbench.report import downsample


def test_a_short_series_is_drawn_as_it_is():
    x, y = np.arange(50), np.random.default_rng(0).normal(size=50)
    dx, dy = downsample(x, y, buckets=100)
    assert np.array_equal(dx, x) and np.array_equal(dy, y)


def test_downsampling_keeps_first_last_and_every_extreme():
    rng = np.random.default_rng(1)
    y = rng.normal(size=100_000)
    y[12_345], y[77_777] = 50.0, -50.0  # one spike up, one down: every-k-th sampling would lose them
    x = np.arange(len(y)) * 2
    dx, dy = downsample(x, y, buckets=500)
    assert len(dy) <= 2 * 500 + 2
    assert (dx[0], dy[0]) == (x[0], y[0]) and (dx[-1], dy[-1]) == (x[-1], y[-1])
    assert dy.max() == 50.0 and dy.min() == -50.0
    assert 12_345 * 2 in dx and 77_777 * 2 in dx
    assert np.all(np.diff(dx) > 0)  # in order, no point twice
    assert np.array_equal(dy, y[dx // 2])  # real points, not averages


def test_each_bucket_keeps_its_own_min_and_max():
    y = np.sin(np.linspace(0, 20 * np.pi, 10_000))
    dx, dy = downsample(np.arange(len(y)), y, buckets=100)
    for lo in range(0, 10_000, 1_000):  # every stretch of ten buckets still reaches both peaks
        part = dy[(dx >= lo) & (dx < lo + 1_000)]
        assert part.max() > 0.99 and part.min() < -0.99

import numpy as np
import pytest

from stylemix.backend import array_module, to_numpy
from stylemix.cluster import KMeans
from stylemix.errors import StylemixError


def _blobs(seed=0):
    rng = np.random.default_rng(seed)
    centres = np.array([[0, 0], [10, 0], [0, 10]], np.float32)
    sizes = [300, 200, 100]
    X = np.concatenate([c + rng.normal(size=(n, 2)) for c, n in zip(centres, sizes)]).astype(np.float32)
    truth = np.repeat(np.arange(3), sizes)
    return X, truth


def test_recovers_blobs_in_size_order():
    X, truth = _blobs()
    km = KMeans(3, random_state=0).fit(X)
    np.testing.assert_array_equal(km.labels_, truth)  # canonical order: largest cluster is 0
    assert km.labels_.dtype == np.int32 and km.cluster_centers_.shape == (3, 2)
    np.testing.assert_allclose(km.cluster_centers_, [[0, 0], [10, 0], [0, 10]], atol=0.3)


def test_same_random_state_same_labels_any_row_order_of_restarts():
    X, _ = _blobs(1)
    a = KMeans(3, random_state=5).fit_predict(X)
    b = KMeans(3, random_state=5).fit_predict(X)
    np.testing.assert_array_equal(a, b)


def test_errors():
    with pytest.raises(StylemixError):
        KMeans(1)
    with pytest.raises(StylemixError):
        KMeans(3).fit(np.zeros((2, 4), np.float32))


def test_every_device_finds_the_same_clusters(device):
    X, truth = _blobs(2)
    km = KMeans(3, random_state=0).fit(device.xp.asarray(X))
    assert array_module(km.labels_) is device.xp  # the labels stay on the input's device
    np.testing.assert_array_equal(to_numpy(km.labels_), truth)
    np.testing.assert_allclose(to_numpy(km.cluster_centers_), [[0, 0], [10, 0], [0, 10]], atol=0.3)

import numpy as np
import pytest

from stylemix.errors import StylemixError
from stylemix.foreground import centrality_map, cluster_scores, foreground_clusters


def _disc(h=64, r=16):
    yy, xx = np.mgrid[:h, :h]
    return ((yy - h / 2) ** 2 + (xx - h / 2) ** 2 <= r ** 2).astype(np.int32)


@pytest.mark.parametrize("rule", ["centre", "border", "combined"])
def test_central_disc_is_foreground_with_a_clear_margin(rule):
    labels = _disc()
    scores = cluster_scores(labels, 2, rule)
    fg, margin = foreground_clusters(scores)
    assert fg.tolist() == [False, True]
    assert margin > 0.3
    np.testing.assert_allclose(scores[0], -scores[1], atol=1e-6)


def test_ambiguous_split_has_small_margin():
    labels = np.zeros((64, 64), np.int32)
    labels[:, 32:] = 1  # left/right halves: no spatial evidence either way
    _, margin = foreground_clusters(cluster_scores(labels, 2, "centre"))
    assert margin < 0.01


def test_many_clusters_merge_positive_ones():
    labels = _disc(r=20)
    labels[_disc(r=8) == 1] = 2  # an inner part
    scores = cluster_scores(labels, 3, "centre")
    fg, margin = foreground_clusters(scores)
    assert fg.tolist() == [False, True, True] and margin > 0


def test_custom_centrality_map_and_empty_cluster():
    labels = _disc()
    box = np.zeros((64, 64), np.float32)
    box[:, :20] = 1  # a "detector box" on the left: nothing of the disc is there
    scores = cluster_scores(labels, 3, box)
    assert scores[0] > 0 > scores[1] and scores[2] == 0  # cluster 2 is empty: no evidence


def test_unknown_rule():
    with pytest.raises(StylemixError):
        centrality_map((8, 8), "middle")

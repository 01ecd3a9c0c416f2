import numpy as np
import pytest

from stylemix.backend import to_numpy
from stylemix.errors import StylemixError
from stylemix.foreground import anchor_foreground, centrality_map, cluster_scores, foreground_clusters, frame_map


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


def _portrait():
    """A face disc, hair above it reaching the top edge, a body at the bottom edge, background elsewhere."""
    yy, xx = np.mgrid[:64, :64]
    labels = np.zeros((64, 64), np.int32)                      # 0 background
    labels[(yy < 30) & (abs(xx - 32) < 18)] = 2                # 2 hair, touches the top band
    labels[50:, 12:52] = 3                                     # 3 body, cut by the bottom edge
    labels[(yy - 32) ** 2 + (xx - 32) ** 2 <= 14 ** 2] = 1     # 1 face, central
    return labels


def test_anchors_merge_by_how_clusters_change_not_where_they_are():
    labels = _portrait()
    # Cluster mean vectors: hair and body change like the face, the background does not.
    means = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.8, 0.3, 0.1], [0.7, 0.2, 0.3]], np.float32)
    X = means[labels.ravel()]
    assert anchor_foreground(X, labels, 4).tolist() == [False, True, True, True]
    # The same layout where the hair changes like the background: position alone would not tell the difference.
    means[2] = [0.1, 0.9, 0.0]
    assert anchor_foreground(means[labels.ravel()], labels, 4).tolist() == [False, True, False, True]


def test_frame_penalty_sends_undecided_frame_clusters_to_the_background():
    labels = _portrait()
    # Hair (2) changes about as much like the face as like the background, a little nearer the face; the body (3)
    # clearly like the face. The hair reaches the top band, the body only the bottom (not in the frame).
    means = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.52, 0.48, 0.0], [0.9, 0.1, 0.0]], np.float32)
    X = means[labels.ravel()]
    assert anchor_foreground(X, labels, 4).tolist() == [False, True, True, True]
    assert anchor_foreground(X, labels, 4, frame_penalty=0.75).tolist() == [False, True, False, True]
    # A cluster that changes like the face stays with it whatever its share of the frame.
    means[2] = [0.95, 0.05, 0.0]
    assert anchor_foreground(means[labels.ravel()], labels, 4, frame_penalty=0.75).tolist() == [False, True, True, True]


def test_anchors_for_two_clusters_follow_the_rule():
    labels = _disc()
    X = np.random.default_rng(0).standard_normal((64 * 64, 4)).astype(np.float32)
    fg, _ = foreground_clusters(cluster_scores(labels, 2, "centre"))
    assert anchor_foreground(X, labels, 2).tolist() == fg.tolist() == [False, True]


def test_frame_leaves_the_bottom_out():
    frame = frame_map((40, 40))
    assert frame[0].all() and frame[:, 0].all() and frame[:, -1].all()
    assert not frame[-1, 2:-2].any() and not frame[10:30, 10:30].any()


def test_every_device_scores_and_merges_alike(device):
    labels = _portrait()
    vectors = np.random.default_rng(0).normal(size=(labels.size, 5)).astype(np.float32)
    vectors += np.eye(5, dtype=np.float32)[labels.ravel()] * 4
    want = cluster_scores(labels, 4, "combined"), anchor_foreground(vectors, labels, 4, frame_penalty=0.5)
    xp = device.xp
    got = cluster_scores(xp.asarray(labels), 4, "combined"), anchor_foreground(xp.asarray(vectors),
                                                                              xp.asarray(labels), 4,
                                                                              frame_penalty=0.5)
    np.testing.assert_allclose(to_numpy(got[0]), want[0], atol=1e-6)
    np.testing.assert_array_equal(to_numpy(got[1]), want[1])
    fg, margin = foreground_clusters(got[0])
    assert to_numpy(fg).tolist() == foreground_clusters(want[0])[0].tolist()

"""The whole pipeline on the known-truth generator: masks must match the truth, and be reproducible."""

import re
from itertools import permutations

import numpy as np
import pytest
import torch

import stylemix
from stylemix.errors import StylemixError
from stylemix.generators.shapes import ShapesGenerator

from conftest import base_styles, iou


# The known-truth generator is 64 px: cluster at its full size, so the truth checks test the method, not the
# upsampling (test_lower_analysis_resolution_still_matches covers that).
FULL = {"analysis_resolution": 64}

@pytest.mark.parametrize("seed", [0, 1, 2, 5])
@pytest.mark.parametrize("exact", [False, True])
def test_foreground_matches_truth(shapes, seed, exact):
    seg = stylemix.segment(shapes, seed, config=stylemix.SegmentConfig(variants=8, exact=exact, **FULL))
    truth = shapes.truth(base_styles(shapes, seed))["foreground"][0]
    assert seg.image.shape == (64, 64, 3) and seg.image.dtype == np.uint8
    assert seg.labels.dtype == np.int32 and seg.foreground.dtype == bool
    np.testing.assert_array_equal(seg.labels == 1, seg.foreground)  # k=2: 1 = foreground
    assert iou(seg.foreground, truth) >= 0.99
    assert seg.meta["foreground_margin"] > 0.2


def test_lower_analysis_resolution_still_matches(shapes):
    seg = stylemix.segment(shapes, 3, config=stylemix.SegmentConfig(variants=8, analysis_resolution=16))
    truth = shapes.truth(base_styles(shapes, 3))["foreground"][0]
    assert iou(seg.foreground, truth) >= 0.97  # 4x upsampling, guided by the image


@pytest.mark.parametrize("seed", [0, 4])
def test_parts_match_truth_up_to_permutation(seed):
    G = ShapesGenerator(parts=True).eval()
    seg = stylemix.segment(G, seed, config=stylemix.SegmentConfig(variants=16, clusters=3, **FULL))
    truth = G.truth(base_styles(G, seed))["parts"][0]
    best = max(np.mean(np.array(p)[seg.labels] == truth) for p in permutations(range(3)))
    assert best >= 0.99
    assert seg.foreground.sum() == (truth > 0).sum() or iou(seg.foreground, truth > 0) >= 0.99


def test_deterministic_across_runs(shapes):
    a = stylemix.segment(shapes, 11, config=stylemix.SegmentConfig(variants=12))
    b = stylemix.segment(shapes, 11, config=stylemix.SegmentConfig(variants=12))
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_array_equal(a.image, b.image)
    assert a.meta["cluster_scores"] == b.meta["cluster_scores"]


@pytest.mark.parametrize("gathered", [False, True], ids=["cpu-policy", "gathered"])
@pytest.mark.parametrize("options", [{}, {"clusters": 3}, {"descriptor": "rgb"}, {"noise_mode": "random"},
                                     {"exact": True}])
def test_batches_give_the_results_of_one_image_at_a_time(shapes, monkeypatch, options, gathered):
    """Masks and images byte-equal whatever the batch. Where a batch's variants are gathered into one call per
    crossover group (a GPU's policy, forced here), floats (scores) agree to the rounding of batched kernels
    (~1e-6); under the CPU's policy (each image's groups alone) everything is byte-equal, scores included."""
    from stylemix import render
    monkeypatch.setattr(render, "gathers_variants", lambda device: gathered)
    if options.get("clusters", 2) > 2:
        shapes = ShapesGenerator(parts=True).eval()  # three real regions: a stable three-way split
    calls = []

    def counting(suffix):
        def wrapped(G, state, ws, *args, **kwargs):
            calls.append(len(ws))
            return suffix(G, state, ws, *args, **kwargs)
        return wrapped

    seeds = [0, 3, 7, 11, 12]
    alone = [stylemix.segment(shapes, s, config=stylemix.SegmentConfig(variants=8, **options)) for s in seeds]
    monkeypatch.setattr(render, "synthesis_suffix", counting(render.synthesis_suffix))
    monkeypatch.setattr(render, "features_suffix", counting(render.features_suffix))
    for batch_size in (2, 5):
        calls.clear()
        many = list(stylemix.segment_many(shapes, seeds,
                                          config=stylemix.SegmentConfig(variants=8, batch_size=batch_size, **options)))
        assert [m.seed for m in many] == seeds
        for a, m in zip(alone, many):
            np.testing.assert_array_equal(a.labels, m.labels)
            np.testing.assert_array_equal(a.foreground, m.foreground)
            np.testing.assert_array_equal(a.image, m.image)
            np.testing.assert_allclose(a.meta["cluster_scores"], m.meta["cluster_scores"], atol=1e-4)
            assert a.meta["crossovers"] == m.meta["crossovers"]
            if not gathered:
                assert a.meta["cluster_scores"] == m.meta["cluster_scores"]
        one_image_calls = not gathered or options.get("exact") or options.get("noise_mode") == "random"
        assert (max(calls) < 2 * batch_size) == bool(one_image_calls)  # gathered: a group over the batch


def test_gather_states_stacks_the_images_states_per_variant():
    from stylemix.generators.mobilestylegan import MobileStyleGANState
    from stylemix.render import gather_states
    states = [MobileStyleGANState(4, torch.full((1, 2), float(i))) for i in range(3)]
    gathered = gather_states(states, np.array([0, 0, 2]))
    assert gathered.crossover == 4 and gathered.hidden[:, 0].tolist() == [0.0, 0.0, 2.0]
    nested = gather_states([{"w0": torch.full((1,), i), "crossover": 2, "images": {8: torch.full((1,), 2 * i)}}
                            for i in (1, 3)], np.array([0, 1]))
    assert nested["w0"].tolist() == [1, 3] and nested["crossover"] == 2 and nested["images"][8].tolist() == [2, 6]


def test_fast_and_exact_agree(shapes):
    for seed in range(4):
        fast = stylemix.segment(shapes, seed, config=stylemix.SegmentConfig(variants=8, **FULL))
        exact = stylemix.segment(shapes, seed, config=stylemix.SegmentConfig(variants=8, exact=True, **FULL))
        assert iou(fast.foreground, exact.foreground) >= 0.99


def test_consensus_is_the_mean_of_its_votes(shapes):
    from stylemix.render import render_variants, style_latents
    from stylemix.stages import consensus_foreground
    from stylemix.stages import anchor_vote
    cfg = stylemix.SegmentConfig(variants=8, **FULL).resolve(shapes)
    with torch.no_grad():
        ws_base, ws_mix, crossovers = style_latents(shapes, 7, cfg)
        stack = render_variants(shapes, ws_base, ws_mix, crossovers, cfg)[1].numpy()
    vote = anchor_vote(cfg.foreground_rule, cfg.frame_penalty)
    probs = {ks: consensus_foreground(stack, ks, 5, vote, **cfg.kmeans_options())[0] for ks in
             ((2,), (3,), (5,), (2, 3, 5))}
    for ks in ((2,), (3,), (5,)):  # one clustering: a hard vote
        assert set(np.unique(probs[ks])) <= {0.0, 1.0}
    np.testing.assert_allclose(probs[(2, 3, 5)], (probs[(2,)] + probs[(3,)] + probs[(5,)]) / 3, atol=1e-6)
    seg = stylemix.segment(shapes, 7, config=stylemix.SegmentConfig(variants=8, **FULL))
    assert 0 <= seg.meta["consensus_agreement"] <= 1
    truth = shapes.truth(base_styles(shapes, 7))["foreground"][0]
    assert iou(seg.foreground, truth) >= 0.99


def test_seed_image_is_nvlabs_latent(shapes):
    seg = stylemix.segment(shapes, 9, config=stylemix.SegmentConfig(variants=2))
    with torch.no_grad():
        img = shapes.synthesis(base_styles(shapes, 9))
    expected = (img.permute(0, 2, 3, 1) * 127.5 + 128).clamp(0, 255).to(torch.uint8)[0].numpy()
    np.testing.assert_array_equal(seg.image, expected)


def test_meta_records_every_setting(shapes):
    """Every whole-image setting; the instance settings are recorded in ``meta["instances"]`` when a detector ran."""
    seg = stylemix.segment(shapes, 1, config=stylemix.SegmentConfig(variants=4, crossover=(2, 4)))
    fields = {f.name for f in stylemix.SegmentConfig.__dataclass_fields__.values()}
    assert set(seg.meta["settings"]) == fields - {"instances"}
    assert seg.meta["settings"]["crossover"] == "2-4"
    assert len(seg.meta["crossovers"]) == 4 and all(2 <= c <= 4 for c in seg.meta["crossovers"])


def test_default_crossovers_all_change_the_analysis_stack(shapes):
    from stylemix.config import default_crossovers
    from stylemix.render import render_variants, style_latents
    for r in (16, 32, 64):
        crossovers = default_crossovers(shapes, r)
        reaching = sum(1 for res in shapes.style_layout.slot_resolutions if res <= r)
        assert crossovers and all(1 <= c < reaching for c in crossovers), (r, crossovers)
    # Measured, not only by the slot count: every crossover's variants differ from the base at 16 px.
    cfg = stylemix.SegmentConfig(variants=8, analysis_resolution=16).resolve(shapes)
    with torch.no_grad():
        ws_base, ws_mix, crossovers = style_latents(shapes, 3, cfg)
        stack = render_variants(shapes, ws_base, ws_mix, crossovers, cfg)[1]
        base = render_variants(shapes, ws_base, ws_base.expand(len(ws_mix), -1, -1), crossovers, cfg)[1]
    assert all(float((stack[i] - base[i]).abs().max()) > 1e-3 for i in range(len(stack)))


@pytest.mark.parametrize("options,message", [
    ({"variants": 1}, "variants"), ({"clusters": 1}, "clusters"), ({"crossover": 8}, "crossover"),
    ({"crossover": 0}, "crossover"), ({"analysis_resolution": 48}, "power of two"),
    ({"normalization": "zca"}, "normalization"),
    ({"consensus": (2, 1)}, "consensus"), ({"consensus": ()}, "consensus"), ({"frame_penalty": -1}, "frame_penalty"),
])
def test_bad_options_are_clear_errors(shapes, options, message):
    with pytest.raises(StylemixError, match=message):
        stylemix.segment(shapes, 0, config=stylemix.SegmentConfig(**options))


@pytest.mark.parametrize("function", [stylemix.segment, stylemix.segment_many])
@pytest.mark.parametrize("keywords, spelling", [
    ({"variants": 8}, "config=SegmentConfig(variants=8)"),
    ({"variants": 8, "classes": "person", "conf": 0.3},
     "config=SegmentConfig(variants=8, instances=InstanceConfig(classes='person', conf=0.3))"),
    ({"instance_config": stylemix.InstanceConfig(min_crop=3)}, "config=SegmentConfig(instances=InstanceConfig("),
    ({"colour": 1}, "unknown option 'colour'"),
])
def test_loose_settings_of_earlier_versions_name_the_new_spelling(shapes, function, keywords, spelling):
    """The settings went into one SegmentConfig (the detector's filters into its instances): the keywords that
    took them before fail in one line that says how to write them now, before anything is rendered."""
    with pytest.raises(StylemixError, match=re.escape(spelling)):
        next(iter(function(shapes, [0] if function is stylemix.segment_many else 0, **keywords)))


def test_wrapped_user_generator():
    # A user's own network in a few lines: mapping returns w, synthesis paints the left half by its style.
    def mapping(z):
        return z

    def synthesis(ws):
        img = torch.zeros(len(ws), 3, 32, 32)
        img[:, :, 8:24, 8:24] = ws[:, -1, :3, None, None]
        img[:, :, :, :] += ws[:, -1, 3:6, None, None] * (img == 0)
        return img

    G = stylemix.wrap_generator(mapping, synthesis, z_dim=8, w_dim=8, num_ws=4, resolution=32)
    assert isinstance(G, stylemix.Generator)
    seg = stylemix.segment(G, 0, config=stylemix.SegmentConfig(variants=8, crossover=1))
    truth = np.zeros((32, 32), bool)
    truth[8:24, 8:24] = True
    assert iou(seg.foreground, truth) >= 0.99


def test_non_finite_generator_output_is_one_error_naming_the_seed():
    def synthesis(ws):
        img = torch.zeros(len(ws), 3, 32, 32)
        img[:, :, 8:24, 8:24] = float("nan")  # what NaN weights or an fp16 overflow give
        return img

    G = stylemix.wrap_generator(lambda z: z, synthesis, z_dim=8, w_dim=8, num_ws=4, resolution=32)
    with pytest.raises(StylemixError, match="seed 7: the generator's output is not finite"):
        stylemix.segment(G, 7, config=stylemix.SegmentConfig(variants=4, crossover=1))


class _PlainShapes:
    """The known-truth network behind the documented protocol only: no GeneratorBase, no speed hooks. Random
    noise (``noise_mode="random"``) adds torch.randn to the image."""

    def __init__(self, net):
        self.net = net
        for name in ("z_dim", "c_dim", "w_dim", "num_ws", "resolution", "style_layout"):
            setattr(self, name, getattr(net, name))

    def mapping(self, z, c=None, truncation_psi=1.0, truncation_cutoff=None):
        return self.net.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)

    def synthesis(self, ws, noise_mode="const"):
        img = self.net.synthesis(ws)
        return img + 0.3 * torch.randn_like(img) if noise_mode == "random" else img


class _PlainWithFeatures(_PlainShapes):
    def features(self, ws, resolution, noise_mode="const"):
        return self.net.features(ws, resolution)


def _subclassed(plain_type, net):
    """The same network as a GeneratorBase subclass (the base's hooks are the fallbacks)."""
    from stylemix.generators.base import GeneratorBase

    class Subclassed(GeneratorBase):
        def __init__(self):
            super().__init__()
            self.plain = plain_type(net)
            for name in ("z_dim", "c_dim", "w_dim", "num_ws", "resolution", "style_layout"):
                setattr(self, name, getattr(net, name))
            self.family = "custom"

        def mapping(self, *args, **kwargs):
            return self.plain.mapping(*args, **kwargs)

        def synthesis(self, ws, noise_mode="const"):
            return self.plain.synthesis(ws, noise_mode)

    if hasattr(plain_type, "features"):
        Subclassed.features = lambda self, ws, r, noise_mode="const": self.plain.features(ws, r, noise_mode)
    return Subclassed()


@pytest.mark.parametrize("plain_type, descriptor", [(_PlainShapes, "rgb"), (_PlainWithFeatures, "features")])
def test_plain_protocol_object_segments_like_a_subclass(shapes, plain_type, descriptor):
    plain, sub = plain_type(shapes), _subclassed(plain_type, shapes)
    assert isinstance(plain, stylemix.Generator)
    assert stylemix.segment(plain, 0,
                            config=stylemix.SegmentConfig(variants=4)).meta["settings"]["descriptor"] == descriptor
    for seed, k in ((0, 2), (5, 3)):
        a = stylemix.segment(plain, seed, config=stylemix.SegmentConfig(variants=6, clusters=k, **FULL))
        b = stylemix.segment(sub, seed, config=stylemix.SegmentConfig(variants=6, clusters=k, **FULL))
        np.testing.assert_array_equal(a.labels, b.labels)
        np.testing.assert_array_equal(a.image, b.image)
        assert a.meta["cluster_scores"] == b.meta["cluster_scores"]


def test_random_noise_is_drawn_from_the_seed(shapes):
    G = _PlainShapes(shapes)
    torch.manual_seed(123)
    a = stylemix.segment(G, 2, config=stylemix.SegmentConfig(variants=6, noise_mode="random", **FULL))
    after_a = torch.rand(1)
    b = stylemix.segment(G, 2, config=stylemix.SegmentConfig(variants=6, noise_mode="random", **FULL))
    np.testing.assert_array_equal(a.labels, b.labels)  # same inputs, same noise, same masks
    np.testing.assert_array_equal(a.image, b.image)
    torch.manual_seed(123)
    assert torch.equal(torch.rand(1), after_a)  # the caller's torch stream is left as it was
    drawn = stylemix.segment(G, 2, config=stylemix.SegmentConfig(variants=6, **FULL))
    assert not np.array_equal(a.image, drawn.image)  # noise was drawn


@pytest.mark.parametrize("options", [{"analysis_resolution": 16}, {"clusters": 3, **FULL}])
def test_every_device_segments_like_the_cpu(shapes, device, monkeypatch, options):
    """The pipeline on each backend (the CuPy path, emulated when no GPU is here): the same truth, the result in
    NumPy at the API edge, and the same masks as the CPU up to float rounding at a few boundary pixels."""
    import copy
    from conftest import use_backend
    want = stylemix.segment(shapes, 3, config=stylemix.SegmentConfig(variants=8, **options))
    if device.torch_device.type == "cuda":
        G = copy.deepcopy(shapes).to(device.torch_device)
    else:
        G = shapes
        use_backend(monkeypatch, device)
    got = stylemix.segment(G, 3, config=stylemix.SegmentConfig(variants=8, **options))
    assert type(got.labels) is np.ndarray and type(got.foreground) is np.ndarray and type(got.image) is np.ndarray
    assert iou(got.foreground, shapes.truth(base_styles(shapes, 3))["foreground"][0]) >= 0.97
    assert (got.foreground != want.foreground).mean() < 0.005

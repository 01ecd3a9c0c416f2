"""Rendering (stylemix.render): seeds and latents rows to base and variant styles, the fast path's variant stack,
NVIDIA's uint8 conversion, the noise stream."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import stylemix
from stylemix import mixing, render
from stylemix.config import SegmentConfig
from stylemix.errors import StylemixError

from conftest import iou

FULL = {"analysis_resolution": 64}


def test_truncation_psi_moves_base_and_variants_towards_the_mean(shapes):
    cfg = SegmentConfig(variants=4, truncation_psi=0.5).resolve(shapes)
    base, mixed, crossovers = render.style_latents(shapes, 7, cfg)
    z = torch.from_numpy(mixing.seed_to_z(7, shapes.z_dim))
    with torch.no_grad():
        want = shapes.mapping(z, truncation_psi=0.5)
    torch.testing.assert_close(base, want)
    plain = render.style_latents(shapes, 7, SegmentConfig(variants=4).resolve(shapes))
    assert not torch.equal(plain[0], base) and not torch.equal(plain[1], mixed)
    np.testing.assert_array_equal(plain[2], crossovers)  # psi changes the styles, not the mixing plan
    # End to end: the mask is the truth of the truncated image, and the setting is recorded.
    seg = stylemix.segment(shapes, 7, config=stylemix.SegmentConfig(variants=8, truncation_psi=0.5, **FULL))
    assert seg.meta["settings"]["truncation_psi"] == 0.5
    assert iou(seg.foreground, shapes.truth(want)["foreground"][0]) >= 0.99
    assert not np.array_equal(seg.image, stylemix.segment(shapes, 7,
                                                          config=stylemix.SegmentConfig(variants=8, **FULL)).image)


@pytest.mark.parametrize("resolution", [64, 16])
def test_rgb_descriptor_on_the_fast_path(shapes, resolution):
    """``descriptor="rgb"`` without ``exact``: the partial RGB of each variant from the shared prefix states (at
    full size the same stack as the exact path's full renders), and masks that match the truth."""
    cfg = SegmentConfig(variants=6, descriptor="rgb", analysis_resolution=resolution).resolve(shapes)
    assert cfg.descriptor == "rgb" and not cfg.exact
    with torch.no_grad():
        base, mixed, crossovers = render.style_latents(shapes, 3, cfg)
        image, stack = render.render_variants(shapes, base, mixed, crossovers, cfg)
        _, exact = render.render_variants(shapes, base, mixed, crossovers, SegmentConfig(
            variants=6, exact=True, analysis_resolution=resolution).resolve(shapes))
    assert image.shape == (1, 3, 64, 64) and stack.shape == (6, 3, resolution, resolution)
    if resolution == 64:  # below full size the suffix renders at r itself (shapes: its regions at r), no resize
        torch.testing.assert_close(stack, exact, atol=1e-5, rtol=0)
    seg = stylemix.segment(shapes, 3,
                           config=stylemix.SegmentConfig(variants=8, descriptor="rgb", analysis_resolution=resolution))
    truth = shapes.truth(base)["foreground"][0]
    assert seg.meta["settings"]["descriptor"] == "rgb" and iou(seg.foreground, truth) >= 0.95


def test_features_descriptor_stack_has_feature_dim_channels(shapes):
    cfg = SegmentConfig(variants=5, feature_dim=3, analysis_resolution=32).resolve(shapes)
    assert cfg.descriptor == "features" and render.has_features(shapes)
    with torch.no_grad():
        base, mixed, crossovers = render.style_latents(shapes, 1, cfg)
        _, stack = render.render_variants(shapes, base, mixed, crossovers, cfg)
    assert stack.shape[0] == 5 and stack.shape[1] <= 3 and stack.shape[2:] == (32, 32)


def test_bfloat16_variants_are_the_float32_ones_rounded(shapes):
    """A bfloat16 copy of the generator finishes the variants: a float32 stack within bfloat16's rounding of the
    float32 one, and the same masks."""
    kept = {k: v.clone() for k, v in shapes.state_dict().items()}
    stacks = {}
    for precision in ("float32", "bfloat16"):
        cfg = SegmentConfig(variants=8, precision=precision).resolve(shapes)
        with torch.no_grad():
            base, mixed, crossovers = render.style_latents(shapes, 3, cfg)
            stacks[precision] = render.render_variants(shapes, base, mixed, crossovers, cfg)[1]
    assert stacks["bfloat16"].dtype == torch.float32
    err = (stacks["bfloat16"] - stacks["float32"]).norm() / stacks["float32"].norm()
    assert 0 < err < 0.08  # a few layers of bfloat16's 8-bit mantissa (0.4 % each); the masks below are the test
    assert all(torch.equal(v, kept[k]) for k, v in shapes.state_dict().items())  # the generator itself untouched
    a, b = (stylemix.segment(shapes, 3,
                             config=stylemix.SegmentConfig(variants=8, precision=p)) for p in ("float32", "bfloat16"))
    assert iou(a.foreground, b.foreground) >= 0.99 and b.meta["settings"]["precision"] == "bfloat16"


def test_reduced_precision_copy_follows_the_weights():
    from stylemix.generators.shapes import ShapesGenerator
    shapes = ShapesGenerator().eval()  # its own: the session's generator is shared by every test
    low = render.reduced_precision(shapes, torch.bfloat16)
    assert render.reduced_precision(shapes, torch.bfloat16) is low  # kept while the weights are the same
    assert all(t.dtype == torch.bfloat16 for t in low.state_dict().values() if t.is_floating_point())
    name, weight = next(iter(shapes.state_dict(keep_vars=True).items()))  # the shapes keep theirs as buffers
    with torch.no_grad():
        weight.add_(1.0)  # an in-place change bumps the tensor's version counter
    fresh = render.reduced_precision(shapes, torch.bfloat16)
    assert fresh is not low
    torch.testing.assert_close(fresh.state_dict()[name].float(), weight.detach(), rtol=1e-2, atol=1e-2)


def test_to_uint8_is_nvidias_conversion():
    x = torch.tensor([-2.0, -1.0, 0.0, 0.999, 1.0]).reshape(1, 1, 1, 5).expand(1, 3, 1, 5)
    out = render.to_uint8(x)
    assert out.shape == (1, 1, 5, 3) and out.dtype == torch.uint8 and out.is_contiguous()
    assert out[0, 0, :, 0].tolist() == [0, 0, 128, 255, 255]


def test_subjects_checks_seeds():
    assert [s.seed for s in render.subjects([0, 5], None)] == [0, 5]
    assert list(render.subjects(None, None)) == []
    with pytest.raises(StylemixError, match=r"seed must be in \[0, 2\*\*32\)"):
        list(render.subjects([-1], None))


def test_generator_device_and_features_of_plain_objects(shapes):
    assert render.generator_device(shapes) == torch.device("cpu")
    assert render.generator_device(object()) == torch.device("cpu")
    assert not render.has_features(object())


def test_noise_stream_repeats_and_leaves_torch_rng(shapes):
    before = torch.get_rng_state()
    with render.noise_stream(3, "random", torch.device("cpu")):
        a = torch.randn(4)
    with render.noise_stream(3, "random", torch.device("cpu")):
        b = torch.randn(4)
    with render.noise_stream(4, "random", torch.device("cpu")):
        c = torch.randn(4)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(torch.get_rng_state(), before)  # restored: the caller's stream is untouched

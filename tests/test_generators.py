"""The generator layer's shared parts (stylemix.generators.base, registry, shapes): style layouts, NVIDIA
truncation, wrapping two callables, the registry's errors, and the known-truth generator's own contract."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import stylemix
from stylemix.errors import GeneratorLoadError, StylemixError
from stylemix.generators import base, registry
from stylemix.generators.shapes import ShapesGenerator

from conftest import base_styles


def test_style_layout_groups_and_bounds():
    layout = base.StyleLayout.from_slot_resolutions([4, 8, 8, 16, 16, 32, 32, 64, 64])
    assert layout.num_ws == 9 and layout.groups == {"coarse": (0, 3), "middle": (3, 7), "fine": (7, 9)}
    assert layout.default_crossover == 3
    with pytest.raises(StylemixError, match=r"default_crossover must lie in \[1, 8\], got 9"):
        base.StyleLayout.from_slot_resolutions([4, 8, 8, 16, 16, 32, 32, 64, 64], default_crossover=9)


def test_truncation_is_a_lerp_to_w_avg_on_the_first_slots():
    ws = torch.arange(12.0).reshape(1, 3, 4)
    w_avg = torch.zeros(4)
    assert base.truncate(ws, None, 1.0, None) is ws  # psi = 1: untouched, no w_avg needed
    half = base.truncate(ws, w_avg, 0.5, 2)
    torch.testing.assert_close(half[:, :2], ws[:, :2] / 2)
    torch.testing.assert_close(half[:, 2:], ws[:, 2:])
    assert torch.equal(ws, torch.arange(12.0).reshape(1, 3, 4))  # the input is not modified
    with pytest.raises(StylemixError, match="no w_avg, so truncation_psi must be 1"):
        base.truncate(ws, None, 0.7, None)


def test_wrap_generator_broadcasts_w_and_segments():
    net = ShapesGenerator().eval()
    G = stylemix.wrap_generator(lambda z: net.mapping(z)[:, 0], net.synthesis, z_dim=net.z_dim, w_dim=net.w_dim,
                                num_ws=net.num_ws, resolution=net.resolution, w_avg=torch.zeros(net.w_dim),
                                style_layout=net.style_layout, module=net)
    z = torch.randn(2, net.z_dim)
    assert G.mapping(z).shape == (2, net.num_ws, net.w_dim)
    torch.testing.assert_close(G.mapping(z, truncation_psi=0.0), torch.zeros(2, net.num_ws, net.w_dim))
    facts = G.describe()
    assert facts["family"] == "wrapped" and facts["num_ws"] == net.num_ws and "file" not in facts
    seg = stylemix.segment(G, 0, config=stylemix.SegmentConfig(variants=4))
    assert seg.foreground.shape == (net.resolution, net.resolution)


def test_resize_image_areas_down_and_interpolates_up():
    img = torch.arange(16.0).reshape(1, 1, 4, 4)
    assert base.resize_image(img, None) is img and base.resize_image(img, 4) is img
    torch.testing.assert_close(base.resize_image(img, 2), torch.tensor([[[[2.5, 4.5], [10.5, 12.5]]]]))
    assert base.resize_image(img, 8).shape == (1, 1, 8, 8)


def test_registry_names_and_errors(tmp_path):
    assert {"shapes", registry.DEFAULT_GENERATOR} <= set(registry.registered_generators())
    with pytest.raises(GeneratorLoadError, match="unknown network 'nope': not a file and not a registered name"):
        stylemix.load_generator("nope")
    with pytest.raises(GeneratorLoadError, match="is not a file"):
        stylemix.load_generator(tmp_path)
    registry.register_generator("test-missing", "stylemix_no_such_module:make")
    try:
        with pytest.raises(GeneratorLoadError, match="not available in this install"):
            stylemix.load_generator("test-missing")
    finally:
        registry._REGISTRY.pop("test-missing")
    G = stylemix.load_generator("shapes")
    assert not G.training and not any(p.requires_grad for p in G.parameters())


def test_shapes_truth_is_what_it_renders(shapes):
    """The known-truth generator: the layout (regions) comes from the first slots only, the colours from the rest,
    and ``truth`` reports exactly the regions the image shows."""
    ws = base_styles(shapes, 4)
    truth = shapes.truth(ws)
    fg = truth["foreground"][0]
    assert fg.shape == (64, 64) and fg.dtype == bool and 0 < fg.mean() < 1
    with torch.no_grad():
        img = shapes.synthesis(ws)[0].numpy()
        other = base_styles(shapes, 9)
        mixed = ws.clone()
        c = shapes.style_layout.default_crossover
        mixed[:, c:] = other[:, c:]  # same layout, other colours
        img_mixed = shapes.synthesis(mixed)[0].numpy()
    np.testing.assert_array_equal(shapes.truth(mixed)["foreground"][0], fg)
    inside, outside = img[:, fg], img[:, ~fg]
    assert np.abs(inside.mean(1) - outside.mean(1)).max() > 0.05  # the object is visible
    assert not np.allclose(img, img_mixed)  # the later slots change the colours

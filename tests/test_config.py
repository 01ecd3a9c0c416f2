"""The settings (stylemix.config): generator-dependent defaults filled by ``resolve``, one clear error per bad value,
the JSON form recorded in meta and dataset cards, the instance mode's settings."""

from __future__ import annotations

import dataclasses
import json

import pytest

import stylemix

from stylemix.config import InstanceConfig, SegmentConfig, default_crossovers
from stylemix.errors import StylemixError


def test_resolve_fills_generator_defaults(shapes):
    cfg = SegmentConfig().resolve(shapes)
    assert cfg.analysis_resolution == min(SegmentConfig.analysis_resolution, shapes.resolution)
    assert cfg.crossover == default_crossovers(shapes, cfg.analysis_resolution)
    assert cfg.descriptor == "features"  # auto: shapes exposes feature maps
    assert SegmentConfig(exact=True).resolve(shapes).descriptor == "rgb"  # exact implies rgb
    assert SegmentConfig(analysis_resolution=1024).resolve(shapes).analysis_resolution == shapes.resolution
    assert cfg.resolve(shapes) == cfg  # idempotent: resolving twice changes nothing
    assert SegmentConfig(consensus=[3, 2]).resolve(shapes).consensus == (3, 2)  # a tuple, in the given order


def test_default_crossovers_reach_the_analysis_resolution(shapes):
    every = default_crossovers(shapes)
    c = shapes.style_layout.default_crossover
    assert every == sorted({min(max(x, 1), shapes.num_ws - 1) for x in range(c - 3, c + 1)})
    low = default_crossovers(shapes, 4)
    reaching = sum(1 for r in shapes.style_layout.slot_resolutions if r <= 4)
    assert max(low) <= max(reaching - 1, 1) and len(low) >= 1


@pytest.mark.parametrize("options, message", [
    ({"truncation_psi": float("nan")}, "truncation_psi must be a finite number"),
    ({"variants": 1}, "variants must be at least 2"),
    ({"clusters": 1}, "clusters must be at least 2"),
    ({"consensus": (1, 3)}, "consensus needs cluster counts of at least 2"),
    ({"consensus": ()}, "consensus needs cluster counts"),
    ({"analysis_resolution": 24}, "power of two >= 4"),
    ({"normalization": "whiten"}, "unknown normalization 'whiten'"),
    ({"descriptor": "pixels"}, "unknown descriptor 'pixels'"),
    ({"foreground_rule": "middle"}, "unknown foreground rule"),
    ({"refine": "bicubic"}, "unknown refine 'bicubic'"),
    ({"boundary": "snake"}, "unknown boundary method"),
    ({"noise_mode": "loud"}, "unknown noise mode"),
    ({"min_area": 0.5}, "min_area is a fraction"),
    ({"frame_penalty": -1}, "frame_penalty must lie in"),
    ({"batch_size": 0}, "batch size must be at least 1"),
    ({"feature_dim": 0}, "feature_dim must be at least 1"),
    ({"precision": "float16"}, "unknown precision 'float16'"),
])
def test_each_bad_value_is_one_clear_error(shapes, options, message):
    with pytest.raises(StylemixError, match=message):
        dataclasses.replace(SegmentConfig(), **options).resolve(shapes)


def test_features_need_a_generator_that_has_them():
    class Plain:  # the protocol without feature maps
        resolution, num_ws, w_dim, z_dim, c_dim = 16, 4, 8, 8, 0
        style_layout = type("L", (), {"default_crossover": 2, "slot_resolutions": (4, 8, 16, 16)})()
    with pytest.raises(StylemixError, match="exposes no feature maps: use descriptor rgb"):
        SegmentConfig(descriptor="features").resolve(Plain())
    assert SegmentConfig().resolve(Plain()).descriptor == "rgb"


def test_as_dict_is_json_with_ranges_as_text(shapes):
    d = SegmentConfig(crossover=(2, 5)).resolve(shapes).as_dict()
    assert d["crossover"] == "2-5" and json.loads(json.dumps(d)) == {**d, "consensus": list(d["consensus"])}
    assert set(d) == {f.name for f in dataclasses.fields(SegmentConfig)} - {"instances"}


def test_instance_settings_nest_in_the_config_outside_its_json(shapes):
    """One object configures a run; the instance settings stay out of ``as_dict`` (seedSSSS.json's settings, an
    export's digest), which the instance record holds when a detector runs, so those are what they were."""
    nested = SegmentConfig(variants=8, instances=InstanceConfig(classes="person", conf=0.5))
    assert nested.instances.conf == 0.5 and SegmentConfig().instances == InstanceConfig()
    assert nested.as_dict() == SegmentConfig(variants=8).as_dict()
    assert "classes" not in nested.instances.box_settings() and "crop_margins" in nested.instances.box_settings()
    with pytest.raises(StylemixError, match="instances must be an InstanceConfig"):
        SegmentConfig(instances={"conf": 0.5}).resolve(shapes)


@pytest.mark.parametrize("options, message", [
    ({"clusters": 1}, "instance clusters"), ({"crop_margins": ()}, "crop margins"),
    ({"crop_margins": (5.0,)}, "crop margins"), ({"max_box_fill": 0}, "max box fill"),
    ({"merge_overlap": 1.5}, "merge overlap"), ({"max_edge_cover": -0.1}, "max edge cover"),
    ({"min_margin": 1.0}, "min margin"), ({"min_crop": 1}, "min crop"),
    ({"conf": 1.5}, "detector confidence"), ({"iou": -0.1}, "detector NMS IoU"),
])
def test_instance_config_checks(options, message):
    InstanceConfig().check()
    with pytest.raises(StylemixError, match=message):
        InstanceConfig(**options).check()


def test_precision_auto_is_bfloat16_only_where_declared_and_native(shapes, monkeypatch):
    from stylemix import config
    assert shapes.variant_precision == "float32"  # the base class: nothing measured
    for native in (False, True):
        monkeypatch.setattr(config, "native_bfloat16", lambda device, native=native: native)
        assert SegmentConfig().resolve(shapes).precision == "float32"
        monkeypatch.setattr(shapes, "variant_precision", "bfloat16")
        assert SegmentConfig().resolve(shapes).precision == ("bfloat16" if native else "float32")
        assert SegmentConfig(exact=True).resolve(shapes).precision == "float32"  # the reference: no shortcut
        assert SegmentConfig(precision="float32").resolve(shapes).precision == "float32"
        monkeypatch.setattr(shapes, "variant_precision", "float32")
        assert SegmentConfig(precision="bfloat16").resolve(shapes).precision == "bfloat16"  # asked: given


def test_bfloat16_needs_a_module():
    class Plain:  # the protocol, not a torch module: nothing to convert
        resolution, num_ws, w_dim, z_dim, c_dim = 16, 4, 8, 8, 0
        style_layout = type("L", (), {"default_crossover": 2, "slot_resolutions": (4, 8, 16, 16)})()
        variant_precision = "bfloat16"
    assert SegmentConfig().resolve(Plain()).precision == "float32"
    with pytest.raises(StylemixError, match="precision bfloat16 needs a torch.nn.Module generator"):
        SegmentConfig(precision="bfloat16").resolve(Plain())


@pytest.mark.parametrize("field, value", [("crossover", "x"), ("crossover", [1, "a"]), ("variants", "24"),
                                          ("truncation_psi", None), ("consensus", 5), ("frame_penalty", "x"),
                                          ("feature_dim", 1.5), ("exact", "yes"), ("n_init", 0)])
def test_every_bad_value_is_one_stylemix_error(shapes, field, value):
    with pytest.raises(StylemixError, match=field.split("_")[0]):
        stylemix.segment(shapes, seed=0, config=stylemix.SegmentConfig(**{field: value}))


@pytest.mark.parametrize("seed", ["x", 1.5, True, -1])
def test_bad_seeds_and_parts_are_one_stylemix_error(shapes, seed):
    with pytest.raises(StylemixError, match="seed"):
        stylemix.segment(shapes, seed=seed)
    with pytest.raises(StylemixError, match="parts must be"):
        stylemix.segment(shapes, seed=0, parts=5)


def test_meta_names_the_boundary_that_ran(shapes):
    """features-matting needs feature maps: a generator without them gets matting, said in meta and a warning."""
    class Plain:  # the protocol without feature maps
        z_dim, c_dim, w_dim, num_ws, resolution = shapes.z_dim, 0, shapes.w_dim, shapes.num_ws, shapes.resolution
        style_layout = shapes.style_layout

        def mapping(self, z, c=None, truncation_psi=1.0, truncation_cutoff=None):
            return shapes.mapping(z)

        def synthesis(self, ws, noise_mode="const"):
            return shapes.synthesis(ws, noise_mode=noise_mode)

    with pytest.warns(RuntimeWarning, match="boundary features-matting needs the generator's feature maps"):
        seg = stylemix.segment(Plain(), seed=0, config=stylemix.SegmentConfig(variants=6))
    assert seg.meta["boundary"] == "matting" and seg.meta["settings"]["boundary"] == "features-matting"
    assert stylemix.segment(shapes, seed=0,
                            config=stylemix.SegmentConfig(variants=6)).meta["boundary"] == "features-matting"

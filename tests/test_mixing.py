import numpy as np
import pytest
import torch

from stylemix import mixing
from stylemix.errors import StylemixError


def test_seed_to_z_follows_nvlabs():
    z = mixing.seed_to_z(7, 512)
    assert z.shape == (1, 512) and z.dtype == np.float32
    np.testing.assert_array_equal(z, np.random.RandomState(7).randn(1, 512).astype(np.float32))


def test_variant_latents_are_a_prefix_stream():
    a = mixing.variant_latents(3, 4, 8)
    b = mixing.variant_latents(3, 10, 8)
    np.testing.assert_array_equal(a, b[:4])  # more variants extend the set, never change it
    assert not np.allclose(a, mixing.variant_latents(4, 4, 8))
    assert not np.allclose(a[0], mixing.seed_to_z(3, 8)[0])  # independent of the base latent


@pytest.mark.parametrize("spec,expected", [("6", 6), ("4-10", (4, 10)), ("4,7,10", [4, 7, 10])])
def test_parse_crossover(spec, expected):
    assert mixing.parse_crossover(spec) == expected


def test_variant_crossovers_fixed_range_and_cycle():
    np.testing.assert_array_equal(mixing.variant_crossovers(0, 3, 5, 18), [5, 5, 5])
    np.testing.assert_array_equal(mixing.variant_crossovers(0, 5, [4, 7], 18), [4, 7, 4, 7, 4])
    drawn = mixing.variant_crossovers(1, 200, (4, 6), 18)
    assert set(drawn.tolist()) == {4, 5, 6}
    np.testing.assert_array_equal(drawn, mixing.variant_crossovers(1, 200, (4, 6), 18))


@pytest.mark.parametrize("bad", [0, 18, (3, 20), (6, 4), [2, 19], []])
def test_crossover_out_of_range_is_an_error(bad):
    with pytest.raises(StylemixError):
        mixing.variant_crossovers(0, 4, bad, 18)


def test_mix_styles_keeps_slots_before_crossover():
    base = torch.zeros(1, 6, 3)
    other = torch.ones(2, 6, 3)
    mixed = mixing.mix_styles(base, other, np.array([2, 4]))
    assert mixed[0, :2].eq(0).all() and mixed[0, 2:].eq(1).all()
    assert mixed[1, :4].eq(0).all() and mixed[1, 4:].eq(1).all()

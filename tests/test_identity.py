"""Generator ids, arithmetic records and the random-stream registry (stylemix.identity, stylemix.mixing): what a
result is made of, named the same way on every machine."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

import stylemix
from stylemix import identity, mixing
from stylemix.errors import StylemixError
from stylemix.generators.shapes import ShapesGenerator
from stylemix.parts import PartBank, discover

PACKAGE = Path(stylemix.__file__).resolve().parent


@pytest.fixture(scope="module")
def msg():
    """The default generator, loaded here (its own module-scoped instance: a test nudges its mapping)."""
    try:
        return stylemix.load_generator("mobilestylegan-ffhq").eval()
    except StylemixError as exc:
        pytest.skip(f"default generator unavailable: {exc}")


def test_generator_id_is_cached_until_the_weights_change():
    net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 1))
    first = identity.generator_id(net)
    assert identity.generator_id(net) == first and net in identity._ID_CACHE
    with torch.no_grad():
        net[0].weight.add_(1.0)  # in place: the version counter moves
    changed = identity.generator_id(net)
    assert changed != first
    identity.forget_generator_id(net)
    assert identity.generator_id(net) == changed  # a fresh hash agrees with the cached one
    net.load_state_dict({k: torch.zeros_like(v) for k, v in net.state_dict().items()})
    assert identity.generator_id(net) not in (first, changed)
    net[1].weight = torch.nn.Parameter(torch.ones(1, 2))  # a new tensor object
    zeros = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 1))
    zeros.load_state_dict({k: torch.zeros_like(v) for k, v in zeros.state_dict().items()})
    assert identity.generator_id(net) != identity.generator_id(zeros)
    assert identity.generator_id(object()) is None


def test_derived_state_stays_out_of_the_id():
    """A buffer the generator computes at load (its ``derived_state``) may round differently on another machine:
    nudging it by one ulp leaves the id as it is, while a learned tensor nudged the same way changes it."""
    G = ShapesGenerator().eval()
    G.derived_state = ("w_avg",)
    before, legacy = identity.generator_id(G), identity.legacy_weights_sha256(G)
    with torch.no_grad():
        G.w_avg.copy_(torch.nextafter(G.w_avg, torch.full_like(G.w_avg, np.inf)))
    assert identity.generator_id(G) == before
    assert identity.legacy_weights_sha256(G) != legacy  # the old hash covered it
    learned = G.colour_proj
    with torch.no_grad():
        learned.copy_(torch.nextafter(learned, torch.full_like(learned, np.inf)))
    assert identity.generator_id(G) != before


def test_mobilestylegan_id_names_the_learned_tensors_only(msg):
    """MobileStyleGAN's w_avg is computed (in float64, on first truncation) and is no part of its state dict or id;
    the packaged bank names the generator by that id."""
    assert "w_avg" not in msg.state_dict()
    before = identity.generator_id(msg)
    with torch.inference_mode():
        msg.mapping(torch.zeros(1, 512), truncation_psi=0.5)
    assert msg.w_avg is not None and msg.w_avg.dtype == torch.float32
    assert identity.generator_id(msg) == before
    bank = PartBank.load("default", msg)  # checked against msg: no error
    assert bank.generator["id"] == before


def test_another_machine_keeps_the_bank_and_the_masks(msg, monkeypatch):
    """A machine whose float32 mapping rounds otherwise gives ws one ulp away: the packaged bank still applies and
    the masks stay within the documented tolerance (docs/method.md, Reproducibility: IoU >= 0.99 per mask)."""
    seeds = [0, 1]
    here = list(stylemix.segment_many(msg, seeds))
    original = msg.mapping

    def nudged(z, c=None, **kwargs):
        ws = original(z, c, **kwargs)
        return torch.nextafter(ws, torch.full_like(ws, np.inf))

    monkeypatch.setattr(msg, "mapping", nudged)
    there = list(stylemix.segment_many(msg, seeds))
    for a, b in zip(here, there):
        assert a.meta["foreground_from"] == b.meta["foreground_from"] == "part bank (fine)"
        iou = (a.foreground & b.foreground).sum() / max((a.foreground | b.foreground).sum(), 1)
        assert iou >= 0.99, (a.seed, iou)


def test_old_banks_are_matched_by_their_stored_hash_or_refused_in_one_line():
    G = ShapesGenerator(parts=True, coupling=0.3).eval()
    bank = discover(G, range(100, 104), n_parts=3, config=stylemix.SegmentConfig(variants=6),
                    settings=stylemix.PartSettings(prototypes=6, signature_variants=6, foreground_prototypes=8))
    old = dataclasses.replace(bank, generator={"family": G.family, "weights_sha256": identity.legacy_weights_sha256(G)})
    old.check_generator(G)  # recomputable here: accepted
    stale = dataclasses.replace(bank, generator={"family": G.family, "weights_sha256": "0" * 64})
    with pytest.raises(StylemixError, match=r"predates machine-independent generator ids .*stylemix discover"):
        stale.check_generator(G)
    other = ShapesGenerator(parts=True, coupling=0.5).eval()
    with pytest.raises(StylemixError, match="fitted on another generator"):
        bank.check_generator(other)


def test_arithmetic_is_checked_with_the_fix_in_the_line():
    here = identity.arithmetic("bfloat16", "cpu")
    assert here == {"precision": "bfloat16", "device": "cpu"}
    identity.check_arithmetic(None, here, "DS")  # nothing stored: nothing to compare
    identity.check_arithmetic(dict(here), here, "DS")
    with pytest.raises(StylemixError, match="made with float32 .* on cpu.* --precision float32"):
        identity.check_arithmetic(identity.arithmetic("float32", "cpu"), here, "DS")
    with pytest.raises(StylemixError, match="on a cuda device"):
        identity.check_arithmetic(identity.arithmetic("float32", "cuda:0"), here, "DS")


def test_export_resumed_under_another_precision_is_refused(tmp_path):
    from stylemix.export import export_dataset
    G = ShapesGenerator().eval()
    export_dataset(G, "0-1", tmp_path / "DS", variants=4, precision="float32", progress=False)
    with pytest.raises(StylemixError, match="made with float32 variant stacks on cpu.*--precision float32"):
        export_dataset(G, "0-3", tmp_path / "DS", variants=4, precision="bfloat16", resume=True, progress=False)


def test_random_streams_have_one_registry_and_distinct_ids():
    ids = list(mixing.STREAMS.values())
    assert len(ids) == len(set(ids))
    assert all(getattr(mixing, f"STREAM_{name.upper()}") == i for name, i in mixing.STREAMS.items())
    with pytest.raises(StylemixError, match="unknown random stream"):
        mixing.stream(0, max(ids) + 1)
    # No module keeps a stream id of its own: every STREAM_ constant lives in mixing.py.
    for path in PACKAGE.rglob("*.py"):
        if path.name == "mixing.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Assign):
                names = [t.id for t in node.targets if isinstance(t, ast.Name)]
                assert not any(n.startswith("STREAM_") for n in names), (path, names)


def test_cpu_model_is_a_name():
    assert isinstance(identity.cpu_model(), str) and identity.cpu_model()

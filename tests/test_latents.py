"""Latents instead of seeds: file formats, shapes, seeded variant streams, CLI names and errors, export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import stylemix
from stylemix import mixing
from stylemix.cli import main
from stylemix.errors import StylemixError
from stylemix.latents import latent_rows, read_latent_file


@pytest.fixture(scope="module")
def shapes():
    return stylemix.load_generator("shapes")


def seed_ws(G, seeds) -> np.ndarray:
    """``[B, num_ws, w_dim]``: the mapped w+ of NVlabs seeds (what a projector would hand over)."""
    z = np.concatenate([mixing.seed_to_z(s, G.z_dim) for s in seeds])
    with torch.no_grad():
        return G.mapping(torch.from_numpy(z)).numpy()


def test_ws_row_renders_the_seeds_image_and_streams_are_seeded(shapes) -> None:
    ws = seed_ws(shapes, [3, 5])
    by_seed = stylemix.segment(shapes, seed=3, config=stylemix.SegmentConfig(variants=8))
    one = stylemix.segment(shapes, ws=ws[0], config=stylemix.SegmentConfig(variants=8))
    assert one.name == "ws0000" and one.seed is None and one.row == 0
    assert np.array_equal(one.image, by_seed.image)  # the base is the given w, untouched
    again = list(stylemix.segment_many(shapes, ws=ws, config=stylemix.SegmentConfig(variants=8)))
    assert [s.name for s in again] == ["ws0000", "ws0001"]
    assert np.array_equal(again[0].labels, one.labels) and again[0].meta == {**one.meta, "timing_s":
                                                                              again[0].meta["timing_s"]}
    other = stylemix.segment(shapes, ws=ws[0], stream_base=7, config=stylemix.SegmentConfig(variants=8))
    assert other.meta["stream_key"] == [mixing.WS_STREAM_TAG, 7, 0] != one.meta["stream_key"]
    assert np.array_equal(other.image, one.image)
    # another base draws other variants; a row's stream is never a seed's ([seed, stream] has two entries)
    assert not np.array_equal(mixing.variant_latents(mixing.row_key(0, 7), 8, shapes.z_dim),
                              mixing.variant_latents(mixing.row_key(0, 0), 8, shapes.z_dim))
    assert not np.array_equal(mixing.variant_latents(mixing.row_key(0, 0), 8, shapes.z_dim),
                              mixing.variant_latents(0, 8, shapes.z_dim))


def test_w_rows_broadcast_and_z_rows_only_when_asked(shapes) -> None:
    ws = seed_ws(shapes, [4])
    w_rows = latent_rows(ws[:, 0], shapes.num_ws, shapes.w_dim, shapes.z_dim)
    assert w_rows.values.shape == (1, shapes.num_ws, shapes.w_dim) and np.array_equal(w_rows.values, ws)
    z = mixing.seed_to_z(4, shapes.z_dim)
    from_z = next(stylemix.segment_many(shapes, zs=z, config=stylemix.SegmentConfig(variants=8)))
    assert np.array_equal(from_z.image, stylemix.segment(shapes, seed=4,
                                                         config=stylemix.SegmentConfig(variants=8)).image)
    for bad, kind in ((np.zeros((2, shapes.w_dim + 1)), "w"), (np.zeros((2, 3, 4, 5)), "w"),
                      (np.zeros((2, shapes.z_dim + 1)), "z"), (np.zeros((0, shapes.w_dim)), "w"),
                      (np.full((1, shapes.w_dim), np.nan), "w")):
        with pytest.raises(StylemixError) as e:
            latent_rows(bad, shapes.num_ws, shapes.w_dim, shapes.z_dim, kind=kind)
        assert "\n" not in str(e.value)
    with pytest.raises(StylemixError, match="one of seeds, ws and zs"):
        next(stylemix.segment_many(shapes, [0], ws=ws))


def test_latent_files_npz_npy_and_no_pickles(tmp_path: Path, shapes) -> None:
    ws = seed_ws(shapes, [1, 2])
    np.savez(tmp_path / "projected_w.npz", w=ws[:1])
    np.save(tmp_path / "rows.npy", ws)
    np.save(tmp_path / "objects.npy", np.array([{"w": 1}], dtype=object))
    np.savez(tmp_path / "two.npz", a=ws, b=ws)
    assert np.array_equal(read_latent_file(tmp_path / "projected_w.npz"), ws[:1])
    assert np.array_equal(read_latent_file(tmp_path / "rows.npy"), ws)
    for name, what in (("objects.npy", "not a readable"), ("two.npz", "exactly one array"),
                       ("missing.npy", "does not exist")):
        with pytest.raises(StylemixError, match=what):
            read_latent_file(tmp_path / name)


def test_cli_segment_ws_names_rows_and_refuses_bad_input(tmp_path: Path, shapes) -> None:
    np.save(tmp_path / "rows.npy", seed_ws(shapes, [1, 2]))
    r = CliRunner().invoke(main, ["segment", "--network", "shapes", "--ws", str(tmp_path / "rows.npy"), "-n", "8",
                                  "--outdir", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "out").glob("*_mask.png")) == ["ws0000_mask.png", "ws0001_mask.png"]
    meta = json.loads((tmp_path / "out" / "ws0001.json").read_text())
    assert meta["ws_row"] == 1 and meta["latents_file"]["name"] == "rows.npy"
    np.save(tmp_path / "bad.npy", np.zeros((2, 7)))
    for args in (["--ws", str(tmp_path / "bad.npy")], ["--ws", str(tmp_path / "rows.npy"), "--seeds", "0"], [],
                 ["--seeds", "0", "--z"]):
        out = tmp_path / "never"
        r = CliRunner().invoke(main, ["segment", "--network", "shapes", *args, "--outdir", str(out)])
        assert r.exit_code == 1 and r.output.startswith("Error: ") and r.output.count("\n") == 1, (args, r.output)
        assert not out.exists()


def test_export_ws_names_rows_and_records_the_file(tmp_path: Path, shapes) -> None:
    from stylemix.export import export_dataset
    path = tmp_path / "rows.npy"
    np.save(path, seed_ws(shapes, [1, 2, 3]))
    summary = export_dataset("shapes", None, tmp_path / "DS", ws=path, format="coco", variants=8, progress=False)
    card = summary["card"]
    assert card["latents"]["file"] == "rows.npy" and card["latents"]["rows"] == 3
    assert sorted(p.name for p in (tmp_path / "DS" / "images" / "train").iterdir()) == [f"ws{r:04d}.png" for r in range(3)]
    coco = json.loads((tmp_path / "DS" / "annotations" / "instances_train.json").read_text())
    assert [im["file_name"] for im in coco["images"]] == [f"ws{r:04d}.png" for r in range(3)]
    with pytest.raises(StylemixError, match="either seeds or"):
        export_dataset("shapes", "0-2", tmp_path / "DS2", ws=path)

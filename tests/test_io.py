import os

import numpy as np
import pytest

from stylemix import io
from stylemix.errors import StylemixError


def test_parse_seeds():
    assert io.parse_seeds("0-3,7,2") == [0, 1, 2, 3, 7]
    assert io.parse_seeds("12") == [12]


@pytest.mark.parametrize("bad", ["", "a", "3-1", "1,,2", "-4", "1-2-3", str(2 ** 32)])
def test_bad_seeds(bad):
    with pytest.raises(StylemixError):
        io.parse_seeds(bad)


def test_png_round_trip(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    io.write_png(tmp_path / "a.png", rgb)
    np.testing.assert_array_equal(io.read_png(tmp_path / "a.png"), rgb)
    grey = rgb[:, :, 0]
    io.write_png(tmp_path / "b.png", grey)
    np.testing.assert_array_equal(io.read_png(tmp_path / "b.png"), grey)
    assert sorted(os.listdir(tmp_path)) == ["a.png", "b.png"]  # no temp files left behind


def test_atomic_write_leaves_old_content_on_failure(tmp_path):
    p = tmp_path / "x.bin"
    io.atomic_write_bytes(p, b"old")

    with pytest.raises(TypeError):
        io.atomic_write_bytes(p, object())  # type: ignore[arg-type]
    assert p.read_bytes() == b"old" and os.listdir(tmp_path) == ["x.bin"]


def test_atomic_writes_are_ordinary_files_not_private_ones(tmp_path):
    """The temp file of an atomic write is private (mkstemp's 0600); the written file has the mode of any new file
    (0666 less the umask), so a dataset can be shared."""
    from stylemix import io
    io.atomic_write_bytes(tmp_path / "a.bin", b"x")
    assert (tmp_path / "a.bin").stat().st_mode & 0o777 == 0o666 & ~io._umask()

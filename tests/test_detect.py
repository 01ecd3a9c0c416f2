"""The detector loader: importing Ultralytics leaves the process's environment as it was."""

import os

import pytest

from stylemix import detect


def test_importing_ultralytics_leaves_the_environment(monkeypatch):
    pytest.importorskip("ultralytics")
    monkeypatch.delenv("YOLO_OFFLINE", raising=False)
    monkeypatch.setenv("YOLO_AUTOINSTALL", "1")  # the user's own choice is kept, not overwritten
    before = dict(os.environ)
    assert detect._import_ultralytics() is not None
    assert dict(os.environ) == before

"""The scripts in bin/: each answers --help, refuses what it cannot do in one line, and does its job on a small
export (the Slurm array by simulating its variables, Ray on a private local cluster)."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import subprocess
from pathlib import Path

import pytest
import torch

BIN = Path(__file__).resolve().parents[1] / "bin"
SCRIPTS = ("export-ray", "export-slurm", "gpu-check")
EXPORT = ["--network", "shapes", "--seeds", "0-7", "-n", "4", "--format", "coco"]


def load(name: str):
    """A bin/ script as a module (they have no .py suffix)."""
    loader = importlib.machinery.SourceFileLoader(name.replace("-", "_"), str(BIN / name))
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
    loader.exec_module(module)
    return module


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / args[0]), *args[1:]], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("name", SCRIPTS)
def test_scripts_are_executable_with_help(name):
    assert os.access(BIN / name, os.X_OK)
    r = run(name, "--help")
    assert r.returncode == 0 and r.stdout.startswith(f"usage: {name}") and "Examples:" in r.stdout


# ---- export-slurm ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("env, shard", [({"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "4"}, (2, 4)),
                                        ({"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_COUNT": "8",
                                          "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_STEP": "1"}, (4, 8)),
                                        ({"SLURM_ARRAY_TASK_ID": "6", "SLURM_ARRAY_TASK_COUNT": "8",
                                          "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_STEP": "2"}, (3, 8))])
def test_slurm_task_position_in_the_array(env, shard):
    assert load("export-slurm").array_shard(env) == shard


@pytest.mark.parametrize("env, message", [({}, "SLURM_ARRAY_TASK_ID is not set"),
                                          ({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "4",
                                            "SLURM_ARRAY_TASK_STEP": "2"}, "not on the array's grid"),
                                          ({"SLURM_ARRAY_TASK_ID": "x", "SLURM_ARRAY_TASK_COUNT": "4"},
                                           "bad Slurm array variable")])
def test_slurm_refuses_outside_an_array(env, message):
    with pytest.raises(SystemExit, match=message):
        load("export-slurm").array_shard(env)


def test_slurm_outside_an_array_is_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    r = subprocess.run([str(BIN / "export-slurm"), "--", *EXPORT, "--outdir", str(tmp_path / "ds")],
                       capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode != 0 and r.stderr.strip().count("\n") == 0 and "SLURM_ARRAY_TASK_ID" in r.stderr
    assert not (tmp_path / "ds").exists()


def test_slurm_array_merges_to_the_single_machine_export(tmp_path, one_thread):
    """Three array tasks (simulated Slurm variables), in a shuffled order with the merge step run early (it says
    what is missing) and again at the end, give the files of one `stylemix export`, byte for byte."""
    from stylemix.cli import main as stylemix_main
    slurm = load("export-slurm")
    single, sharded = tmp_path / "single", tmp_path / "sharded"
    with pytest.raises(SystemExit) as done:
        stylemix_main(["export", *EXPORT, "--outdir", str(single)], prog_name="stylemix")
    assert done.value.code == 0
    for task in (2, 0):
        env = {"SLURM_ARRAY_TASK_ID": str(task), "SLURM_ARRAY_TASK_COUNT": "3", "SLURM_ARRAY_TASK_MIN": "0"}
        assert slurm.main(["--", *EXPORT, "--outdir", str(sharded)], env=env) == 0
    assert slurm.main(["--merge", "--outdir", str(sharded)]) == 1  # seeds of task 1 are missing: refused
    assert not (sharded / "manifest.jsonl").exists()
    env = {"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "3"}
    assert slurm.main(["--", *EXPORT, "--outdir", str(sharded)], env=env) == 0  # the last task merges
    assert slurm.main(["--", *EXPORT, "--outdir", str(sharded)], env=env) == 0  # a resubmitted task: no-op
    assert slurm.main(["--merge", "--outdir", str(sharded)]) == 0  # the merge job after the array
    want, got = tree(single), tree(sharded)
    assert sorted(got) == sorted(want) and "annotations/instances_train.json" in got
    for name in want:
        assert got[name] == want[name], name


def test_slurm_submission_script(tmp_path):
    r = run("export-slurm", "--print-sbatch", "4", "--gpus", "1", "--", "--seeds", "0-99", "--outdir", "my DS",
            "--device", "cuda")
    assert r.returncode == 0, r.stderr
    script = r.stdout
    assert "--array=0-3" in script and "--gres=gpu:1" in script and "--dependency=afterany:$array" in script
    assert "--merge --outdir" in script and "'\"'\"'my DS'\"'\"'" in script  # quoted twice: --wrap, then bash
    path = tmp_path / "job.sh"
    path.write_text(script)
    assert subprocess.run(["bash", "-n", str(path)]).returncode == 0  # valid bash
    r = run("export-slurm", "--", "--seeds", "0-3", "--outdir", "x", "--shard", "0/2")
    assert r.returncode == 2 and "leave --shard out" in r.stderr


# ---- export-ray ------------------------------------------------------------------------------------------------


def test_ray_without_a_cluster_is_one_line(tmp_path):
    pytest.importorskip("ray")
    r = run("export-ray", "--address", "127.0.0.1:1", "--", *EXPORT, "--outdir", str(tmp_path / "ds"))
    assert r.returncode == 1 and r.stderr.strip().count("\n") == 0 and "no Ray cluster at '127.0.0.1:1'" in r.stderr
    assert not (tmp_path / "ds").exists()
    r = run("export-ray", "--", *EXPORT, "--outdir", str(tmp_path / "ds"), "--ray")
    assert r.returncode == 2 and "--ray is this script's to set" in r.stderr


@pytest.mark.slow
def test_ray_export_on_a_cluster_equals_the_single_machine_export(tmp_path):
    """A private local cluster (--address local) stands in for an existing one (~30 s: Ray's start)."""
    pytest.importorskip("ray")
    from stylemix.cli import main as stylemix_main
    single, on_ray = tmp_path / "single", tmp_path / "ray"
    args = ["--network", "shapes", "--seeds", "0-3", "-n", "4"]
    with pytest.raises(SystemExit) as done:
        stylemix_main(["export", *args, "--outdir", str(single)], prog_name="stylemix")
    assert done.value.code == 0
    r = run("export-ray", "--address", "local", "--workers", "1", "--", *args, "--outdir", str(on_ray),
            env={"OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    assert tree(on_ray) == tree(single)


# ---- gpu-check -------------------------------------------------------------------------------------------------


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: gpu-check would check it")
def test_gpu_check_without_gpu_says_so_in_one_line():
    r = run("gpu-check")
    assert r.returncode == 1
    assert r.stdout.strip() == "gpu-check: no usable GPU here (torch sees no CUDA device); nothing to check"


def test_gpu_check_speed_table(one_thread):
    check = load("gpu-check")
    table, facts = check.speed_table("shapes", ["cpu"], [0, 1], repeats=2)
    lines = table.splitlines()
    assert lines[0] == "| device | render s | cluster s | postprocess s | total s |" and len(lines) == 3
    assert lines[2].startswith("| cpu | ") and facts["cpu"]["deterministic"] is True
    assert check.agreement(facts["cpu"]["masks"], facts["cpu"]["masks"]) == 1.0

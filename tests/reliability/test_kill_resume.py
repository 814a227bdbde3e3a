"""Kill anywhere, resume exactly.

Each scenario SIGKILLs a real `lavise train` / `lavise explain` process at one point (mid-extraction,
at every kind of atomic-write boundary, mid-training, or at a random moment from outside), checks that
nothing half-written is visible under a final name, reruns the same command and compares every output
with an uninterrupted run byte for byte (``.npz`` archives by content: zip headers carry a timestamp).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from relutil import Lavise, make_manifest, npz_equal, visible_files, wait_for

from lavise.errors import RunError
from lavise.explain import Explanations
from lavise.features import FeatureCache
from lavise.run import RunFolder

KEY = "?" * 20  # a cache folder's name


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("kill")
    m = make_manifest(root / "data", n=24)
    common = ["--batch-size", "4", "--workers", "0", "--quiet"]
    train = ["train", "--model", "python:relmodels:tiny", "--layer", "block2", "--reference", f"manifest:{m}",
             "--embeddings", f"glove:{root / 'data' / 'tiny.txt'}", "--out", "run", "--epochs", "4", "--seed", "1", *common]
    explain = ["explain", "run", "--images", f"manifest:{m}", "--vocabulary", "concepts", "-p", "5", "-s", "2", "-x", "3",
               *common]
    base = root / "base"
    base.mkdir()
    lav = Lavise(base)
    r = lav(train)
    assert r.code == 0, r
    shutil.copytree(base / "run", root / "trained")  # the state after training, for the explain scenarios
    r = lav(explain)
    assert r.code == 0, r
    return {"root": root, "train": train, "explain": explain, "base": base / "run", "trained": root / "trained"}


def assert_same(run: Path, ref: Path, exact_manifest: bool = True) -> None:
    """Every visible file of ``run`` equals ``ref``'s; leftovers are only hidden temporary files."""
    a, b = visible_files(run), visible_files(ref)
    assert sorted(a) == sorted(b)
    for name in a:
        if name.endswith(".npz"):
            assert npz_equal(run / name, ref / name), name
        elif name == "manifest.json" and not exact_manifest:
            continue
        else:
            assert a[name] == b[name], f"{name} differs from the uninterrupted run"
    hidden = [p for p in run.rglob(".*") if not any(q.name.startswith(".") for q in p.relative_to(run).parents if q.name)]
    assert all(p.name.endswith(".tmp") for p in hidden), hidden


def assert_nothing_half_written(run: Path, ref: Path) -> None:
    """After a kill: every visible file is complete (equal to the finished run's) and the manifest lists only valid parts."""
    if not run.exists():
        return
    rf = RunFolder(run)
    for part in rf.manifest()["parts"]:
        assert rf.has(part, verify=True), f"manifest lists {part} but its files are not intact"
    done = visible_files(ref)
    for name, data in visible_files(run).items():
        if name == "manifest.json":
            continue
        assert name in done, f"unexpected file {name}"
        if name.endswith(".npz"):
            assert npz_equal(run / name, ref / name), name
        else:
            assert data == done[name], f"{name} is visible but not the finished file"
    for cache in (run / "cache").glob(KEY) if (run / "cache").is_dir() else []:
        c = FeatureCache.open(cache)
        assert (cache / "features.f16").stat().st_size == 2 * c.features.size


TRAIN_KILLS = {
    "mid-extraction after checkpoints": ("forward", 4),  # forward 1 sizes the layer, then one per batch
    "between stats and progress of a checkpoint": ("replace", "stats*.npz", 3, "after"),
    "merge moved features, before the cache rename": ("replace", "features.f16", 1, "after"),
    "cache complete in temp folder, before rename": ("replace", KEY, 1, "before"),
    "mid-training": ("step", 3),
    "explainer written, config and manifest not": ("replace", "explainer.safetensors", 1, "after"),
    "all files written, manifest not": ("replace", "manifest.json", 1, "before"),
}


@pytest.mark.parametrize("point", list(TRAIN_KILLS))
def test_train_killed_then_resumed_matches_uninterrupted(env, tmp_path, point):
    lav = Lavise(tmp_path)
    r = lav(env["train"], kill=TRAIN_KILLS[point])
    assert r.killed, f"kill point not reached: {r}"
    assert_nothing_half_written(tmp_path / "run", env["trained"])
    assert not RunFolder(tmp_path / "run").has("explainer", verify=True)
    r = lav(env["train"])
    assert r.code == 0, r
    assert_same(tmp_path / "run", env["trained"])


def test_train_killed_without_checkpoint_restarts_extraction(env, tmp_path):
    lav = Lavise(tmp_path)
    r = lav(env["train"], kill=("forward", 5), env={"LAVISE_CHECKPOINT_SECONDS": "1000"})
    assert r.killed, r
    r = lav(env["train"])
    assert r.code == 0, r
    assert_same(tmp_path / "run", env["trained"])


def test_explain_on_half_trained_run_is_a_clear_error(env, tmp_path):
    lav = Lavise(tmp_path)
    assert lav(env["train"], kill=TRAIN_KILLS["explainer written, config and manifest not"]).killed
    r = lav(env["explain"])
    assert r.code == 2 and r.log.startswith("lavise: error: ") and "no complete explainer" in r.log, r
    assert len(r.log.strip().splitlines()) == 1


EXPLAIN_KILLS = {
    "mid target extraction": ("forward", 3),
    "between stats and progress of a checkpoint": ("replace", "stats*.npz", 2, "after"),
    "json written, csv and manifest not": ("replace", "explanations.json", 1, "after"),
    "both written, manifest not": ("replace", "manifest.json", 1, "before"),
}


@pytest.mark.parametrize("point", list(EXPLAIN_KILLS))
def test_explain_killed_then_resumed_matches_uninterrupted(env, tmp_path, point):
    shutil.copytree(env["trained"], tmp_path / "run")
    lav = Lavise(tmp_path)
    r = lav(env["explain"], kill=EXPLAIN_KILLS[point])
    assert r.killed, f"kill point not reached: {r}"
    assert_nothing_half_written(tmp_path / "run", env["base"])
    with pytest.raises(RunError):
        Explanations.load(tmp_path / "run")
    r = lav(env["explain"])
    assert r.code == 0, r
    assert_same(tmp_path / "run", env["base"])


def test_rerun_killed_over_old_explanations_never_reads_the_mix(env, tmp_path):
    """An explain with other settings, killed after replacing explanations.json: the old manifest entry no longer verifies."""
    shutil.copytree(env["base"], tmp_path / "run")
    lav = Lavise(tmp_path)
    other = [a if a != "3" else "1" for a in env["explain"]]  # -x 1
    assert lav(other, kill=("replace", "explanations.json", 1, "after")).killed
    with pytest.raises(RunError, match="no complete explanations"):
        Explanations.load(tmp_path / "run")
    assert lav(env["explain"]).code == 0
    assert_same(tmp_path / "run", env["base"])


@pytest.mark.parametrize("command", ["train", "explain"])
def test_external_kill_at_a_random_moment(env, tmp_path, command):
    """``kill -9`` from outside while the process extracts (slowed to 50 ms per batch), then resume."""
    if command == "explain":
        shutil.copytree(env["trained"], tmp_path / "run")
    lav = Lavise(tmp_path)
    p = lav.start(env[command], env={"RELMODELS_SLEEP": "0.05"})

    def progressed():
        for prog in (tmp_path / "run" / "cache").glob(".*.partial/rank0/progress.json"):
            try:
                return json.loads(prog.read_text())["progress"]["batches"] >= 2
            except (OSError, ValueError):
                return False
        return False

    assert wait_for(progressed, timeout=120), p.log.read_text()
    p.kill()
    p.join()
    assert p.exitcode == -9
    ref = env["trained"] if command == "train" else env["base"]
    assert_nothing_half_written(tmp_path / "run", ref)
    r = lav(env[command])
    assert r.code == 0, r
    assert_same(tmp_path / "run", ref)


def test_same_command_same_seed_gives_identical_bytes(env, tmp_path):
    lav = Lavise(tmp_path)
    assert lav(env["train"]).code == 0
    assert lav(env["explain"]).code == 0
    assert (tmp_path / "run" / "explanations.json").read_bytes() == (env["base"] / "explanations.json").read_bytes()
    assert_same(tmp_path / "run", env["base"])

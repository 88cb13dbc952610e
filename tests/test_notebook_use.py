"""Notebooks as people use them: every cell run twice builds what one run builds, a setting changed
once in 02 carries through 03 to 05, the protocol switch is safe to save, a re-run after the last
cell unmounted Drive stops plainly, and the set-up cell outside a checkout says what to do."""

import collections
import json
import os
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from conftest import ROOT, run_cells
from PIL import Image
from skimage import data

import utils

NO_PROTOCOLS = {"utils.protocols_to_run(RUN_FULL_PROTOCOLS)": "[]",  # the runners have tests of their own
                "RUN_ABLATION = utils.smoke_mode()": "RUN_ABLATION = False"}


@pytest.fixture
def smoke_series(synthetic_root, tmp_path, monkeypatch):
    """Smoke mode on the shared synthetic dataset, a fresh work folder and one photo to score."""
    Image.fromarray(data.astronaut()).save(tmp_path / "me.jpg")
    monkeypatch.setenv("FBP_SMOKE", "1")
    monkeypatch.setenv("FBP_DATA_DIR", str(synthetic_root))
    monkeypatch.setenv("FBP_WORK_DIR", str(tmp_path / "work"))
    monkeypatch.setenv("FBP_PHOTO", str(tmp_path / "me.jpg"))
    monkeypatch.delenv("FBP_CONFIG", raising=False)
    return tmp_path / "work" / "smoke"


def pipeline_ops(dataset: tf.data.Dataset) -> collections.Counter:
    """The operations of a tf.data pipeline, its mapped functions' included, by type."""
    graph = tf.compat.v1.GraphDef.FromString(dataset._as_serialized_graph().numpy())
    nodes = [*graph.node, *(node for function in graph.library.function for node in function.node_def)]
    return collections.Counter(node.op for node in nodes)


def plain(value):
    """A JSON-able structure as JSON would store it (numpy numbers as floats)."""
    return json.loads(json.dumps(value, default=float))


def test_every_cell_run_twice_builds_what_one_run_builds(smoke_series):
    once = run_cells("02_frozen_head")
    twice = run_cells("02_frozen_head", twice=True)
    assert plain(twice["frozen"]) == plain(once["frozen"])
    heads = [namespace["model"].get_layer("score").get_weights() for namespace in (once, twice)]
    for a, b in zip(*heads, strict=True):
        np.testing.assert_array_equal(a, b)
    assert utils.read_run(twice["RUN"])["frozen"] == plain(twice["frozen"])  # what is shown is saved

    tuned = run_cells("03_finetune", twice=True)
    cfg, run = tuned["cfg"], tuned["RUN"]
    single = tuned["train_images"].map(tuned["augment"], num_parallel_calls=tf.data.AUTOTUNE)
    assert pipeline_ops(tuned["train"]) == pipeline_ops(single)  # augmented once, not twice
    assert pipeline_ops(tuned["train"])["CropAndResize"] == 1
    history = utils.read_history(run / "history_finetune.csv")
    assert history["epoch"].tolist() == list(range(1, cfg.finetune_epochs + 1))  # each epoch trained once
    assert tuned["history"].epoch == []  # the second run of the cell found the run finished
    assert utils.read_run(run)["finished"]

    evaluated = run_cells("04_evaluation", edits=NO_PROTOCOLS)
    report = json.loads((run / "evaluation.json").read_text())
    again = run_cells("04_evaluation", twice=True, edits=NO_PROTOCOLS)
    assert json.loads((run / "evaluation.json").read_text()) == report
    pd.testing.assert_frame_equal(again["predictions"], evaluated["predictions"])

    scored = run_cells("05_score_your_face")
    rescored = run_cells("05_score_your_face", twice=True)
    assert scored["rows"] and rescored["rows"] == scored["rows"]
    assert [face.label for face in rescored["scored"]] == ["me.jpg, face 1"]


def test_a_setting_changed_in_02_alone_carries_through_03_to_05(smoke_series, capsys):
    default = run_cells("02_frozen_head")["RUN"]
    changed = run_cells("02_frozen_head", edits={'utils.Config(protocol="fold1")':
                                                 'utils.Config(protocol="fold1", head_lr=3e-3)'})
    run = changed["RUN"]
    assert run != default and changed["cfg"].head_lr == 3e-3
    os.utime(default / "run.json")  # the other run is the newest folder: never a reason to take it
    tuned = run_cells("03_finetune")
    assert tuned["RUN"] == run and tuned["cfg"] == changed["cfg"] and utils.read_run(run)["finished"]
    assert f"Run {run.name} (set up by notebook 02): protocol fold1" in capsys.readouterr().out
    scoring = run_cells("05_score_your_face")
    assert scoring["RUN"] == run and scoring["rows"]
    assert "fine-tuned (best epoch" in capsys.readouterr().out


def test_the_protocol_switch_is_safe_to_save(monkeypatch, capsys):
    monkeypatch.delenv("FBP_SMOKE", raising=False)
    monkeypatch.delenv("FBP_CONFIG", raising=False)
    assert utils.protocols_to_run(False) == [] and "RUN_FULL_PROTOCOLS = True" in capsys.readouterr().out
    assert utils.protocols_to_run(True) == ["5-fold", "60/40"]
    monkeypatch.setenv("FBP_SMOKE", "1")
    assert utils.protocols_to_run(True) == ["5-fold"] and utils.protocols_to_run(False) == []
    # the copy of 04 a runner executes for one fold, from a saved notebook with the switch on
    monkeypatch.setenv("FBP_CONFIG", json.dumps({"protocol": "fold2"}))
    assert utils.protocols_to_run(True) == []
    assert "RUN_FULL_PROTOCOLS does nothing here" in capsys.readouterr().out
    [cell] = [c for c in nbformat.read(ROOT / "notebooks" / "04_evaluation.ipynb", as_version=4).cells
              if "utils.run_protocol(" in c.source]
    assert "for protocol in utils.protocols_to_run(RUN_FULL_PROTOCOLS):" in cell.source
    assert utils.switched_on(True, "RUN_ABLATION", "") is False  # the ablation's switch likewise


def test_work_on_an_unmounted_drive_stops_with_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setattr(utils, "in_colab", lambda: True)
    monkeypatch.setattr(utils, "DRIVE_MOUNT", tmp_path / "drive")
    monkeypatch.setattr(utils, "DRIVE_HOME", tmp_path / "drive" / "MyDrive")
    run = tmp_path / "drive" / "MyDrive" / "scut-fbp5500" / "runs" / "fold1-0123456789"
    for step in (lambda: utils.read_run(run), lambda: utils.save_in_turn(run, "best.json", [np.zeros(2)])):
        with pytest.raises(utils.DriveNotMountedError, match=r"Run the cell with `utils.mount_drive\(\)`"):
            step()
    assert not (tmp_path / "drive" / "MyDrive").exists()  # nothing written to the VM's disk
    (tmp_path / "drive" / "MyDrive").mkdir(parents=True)  # mounted again
    assert utils.read_run(run) == {}


def test_the_set_up_cell_outside_a_checkout_says_what_to_do(tmp_path, monkeypatch):
    setup = nbformat.read(ROOT / "notebooks" / "05_score_your_face.ipynb", as_version=4).cells[1].source
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match="not in a checkout: run it from one \\(git clone https://github.com/"):
        exec(compile(setup, "set-up cell", "exec"), {})
    assert Path.cwd() == tmp_path

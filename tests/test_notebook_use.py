"""Notebooks as people use them: every cell run twice builds what one run builds, a setting changed
once in 02 carries through 03 to 05 (two checks that each environment's smoke series runs), the
switches of 04 are safe to save, a re-run after the last cell unmounted Drive stops plainly, and the
set-up cell without the project installed says what to do."""

import collections
import importlib.util
import json
import os
import re
from pathlib import Path

import keras
import nbformat
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from conftest import ROOT, run_cells

import utils
from fbp import environment, errors, experiments, runs


def pipeline_ops(dataset: tf.data.Dataset) -> collections.Counter:
    """The operations of a tf.data pipeline, its mapped functions' included, by type."""
    graph = tf.compat.v1.GraphDef.FromString(dataset._as_serialized_graph().numpy())
    nodes = [*graph.node, *(node for function in graph.library.function for node in function.node_def)]
    return collections.Counter(node.op for node in nodes)


def plain(value):
    """A JSON-able structure as JSON would store it (numpy numbers as floats)."""
    return json.loads(json.dumps(value, default=float))


# The two checks below build on a finished smoke series, the one each environment runs once
# (tests/test_notebooks.py runs it as the README's first command, tests/test_colab.py as a Colab
# user): its work folder and a photo are set in the environment, as the series had them.

def check_every_cell_run_twice(capsys) -> None:
    """Every code cell of 02 to 05 run twice, in this process, builds what the series built once:
    the same stage 1 (figures and head, saved again), pipeline, evaluation and scores; the finished
    fine-tune is kept, not trained again."""
    run = utils.current_run().folder
    record = utils.read_json(run / "run.json")
    head = keras.models.load_model(run / "frozen.keras").get_layer("score").get_weights()
    report = json.loads((run / "evaluation.json").read_text())
    predictions = pd.read_csv(run / "predictions.csv")
    finetuned = (run / "finetuned.keras").stat().st_mtime_ns
    # the saved model holds weights, not the optimizer's state (that would triple its size)
    assert (run / "finetuned.keras").stat().st_size < 1.05 * (run / "frozen.keras").stat().st_size

    twice = run_cells("02_frozen_head", twice=True)
    timing = "seconds_per_epoch"  # the one figure a second run of the head measures anew
    assert twice["RUN"].folder == run and twice["frozen"][timing] > 0
    assert {**plain(twice["frozen"]), timing: None} == {**record["frozen"], timing: None}
    for a, b in zip(head, twice["model"].get_layer("score").get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    saved = utils.read_json(run / "run.json")
    assert saved["frozen"] == plain(twice["frozen"]) and saved["finished"]  # shown is saved; 03's kept
    assert f"Stage 1 of run {run.name} saved again" in capsys.readouterr().out

    tuned = run_cells("03_finetune", twice=True)
    assert f"Run {run.name} is already fine-tuned" in capsys.readouterr().out
    assert (run / "finetuned.keras").stat().st_mtime_ns == finetuned
    cfg = tuned["cfg"]
    single = tuned["train_images"].map(tuned["augment"], num_parallel_calls=tf.data.AUTOTUNE)
    assert pipeline_ops(tuned["train"]) == pipeline_ops(single)  # augmented once, not twice
    assert pipeline_ops(tuned["train"])["CropAndResize"] == 1
    history = utils.read_history(run / "history_finetune.csv")
    assert history["epoch"].tolist() == list(range(1, cfg.finetune_epochs + 1))  # each epoch trained once
    assert tuned["history"].epoch == []  # the run was finished: the cell trains nothing again
    assert utils.read_json(run / "run.json")["finished"]

    again = run_cells("04_evaluation", twice=True)
    assert json.loads((run / "evaluation.json").read_text()) == report
    pd.testing.assert_frame_equal(again["predictions"].drop(columns="path").reset_index(drop=True),
                                  predictions, check_dtype=False)

    scored = run_cells("05_score_your_face")
    rescored = run_cells("05_score_your_face", twice=True)
    assert scored["rows"] and rescored["rows"] == scored["rows"]
    assert [face.label for face in rescored["scored"]] == ["me.jpg, face 1"]


def check_a_setting_changed_in_02_alone(capsys) -> None:
    """A setting changed in 02's parameters cell makes a new run that 05 scores at once with its
    stage 1, and that 03 fine-tunes and 05 then scores, though the series' run is newer."""
    default = utils.current_run().folder
    changed = run_cells("02_frozen_head", edits={'utils.Config(protocol="fold1")':
                                                 'utils.Config(protocol="fold1", head_lr=3e-3)'})
    run = changed["RUN"].folder
    assert run != default and changed["cfg"].head_lr == 3e-3
    os.utime(default / "run.json")  # the other run is the newest folder: never a reason to take it
    early = run_cells("05_score_your_face")
    said = capsys.readouterr().out
    assert early["RUN"].folder == run and early["RUN"].stage == "frozen head"
    assert f"Run {run.name}: ResNet50 (" in said and "; frozen head, trained by" in said
    assert "scoring with the frozen-head model" in said and "me.jpg, face 1: score" in said
    tuned = run_cells("03_finetune")
    assert tuned["RUN"].folder == run and tuned["cfg"] == changed["cfg"]
    assert utils.read_json(run / "run.json")["finished"]
    said = capsys.readouterr().out
    assert f"Run {run.name} (set up by notebook 02): ResNet50 (" in said and "head_lr 0.003" in said
    scoring = run_cells("05_score_your_face")
    assert scoring["RUN"].folder == run and scoring["rows"]
    assert "fine-tuned (best epoch" in capsys.readouterr().out


def test_06s_switches_are_safe_to_save(monkeypatch, capsys):
    cells = nbformat.read(ROOT / "notebooks" / "06_experiments.ipynb", as_version=4).cells
    ran = []
    monkeypatch.setattr(utils, "run_protocol", lambda protocol, cfg, data: ran.append(protocol))
    monkeypatch.setattr(utils, "run_ablation", lambda cfg, data, across_folds: ran.append(
        "ablation across folds" if across_folds else "ablation"))
    monkeypatch.setattr(utils, "ablation_verdict", lambda table: "")
    monkeypatch.setattr(utils, "ablation_family", lambda table: "")
    monkeypatch.setattr(utils, "hub_login", lambda: None)
    monkeypatch.setattr(utils, "publish_bundle", lambda bundle, repo: ran.append(f"publish {bundle}"))

    def run_with(switch: str, saved: bool, across_folds: bool = False) -> list[str]:
        """What 06's cell of this switch runs (protocols, or the ablation) with the switch saved so."""
        [cell] = [c for c in cells if c.cell_type == "code" and f"{switch} = False  #" in c.source]
        ran.clear()
        source = cell.source.replace(f"{switch} = False", f"{switch} = {saved}")
        exec(source.replace("ABLATION_ACROSS_FOLDS = False", f"ABLATION_ACROSS_FOLDS = {across_folds}"),
             {"utils": utils, "cfg": None, "DATA": None, "BUNDLE": "run.zip", "display": lambda shown: None})
        return list(ran)

    monkeypatch.delenv("FBP_SMOKE", raising=False)
    monkeypatch.delenv("FBP_CONFIG", raising=False)
    assert run_with("RUN_FULL_PROTOCOLS", False) == []
    assert "set RUN_FULL_PROTOCOLS = True above" in capsys.readouterr().out
    assert run_with("RUN_FULL_PROTOCOLS", True) == ["5-fold", "60/40"]
    assert run_with("RUN_ABLATION", False) == []
    assert "set RUN_ABLATION = True above" in capsys.readouterr().out
    assert run_with("RUN_ABLATION", True) == ["ablation"]
    assert run_with("RUN_ABLATION", True, across_folds=True) == ["ablation across folds"]
    assert run_with("RUN_ABLATION", False, across_folds=True) == []
    assert run_with("PUBLISH", False) == [] and "set PUBLISH = True above" in capsys.readouterr().out
    assert run_with("PUBLISH", True) == ["publish run.zip"]
    monkeypatch.setenv("FBP_SMOKE", "1")  # the full protocols: the 5-fold one only
    assert run_with("RUN_FULL_PROTOCOLS", True) == ["5-fold"] and run_with("RUN_FULL_PROTOCOLS", False) == []
    # the runners execute 02 to 04 for each fold, never 06: 04, which they run, has no switch
    evaluation = nbformat.read(ROOT / "notebooks" / "04_evaluation.ipynb", as_version=4).cells
    assert not [c for c in evaluation if any(f"{s} = " in c.source for s in ("RUN_", "PUBLISH"))]


def test_work_on_an_unmounted_drive_stops_with_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setattr(environment, "in_colab", lambda: True)
    monkeypatch.setattr(environment, "_DRIVE_MOUNT", tmp_path / "drive")
    monkeypatch.setattr(environment, "DRIVE_HOME", tmp_path / "drive" / "MyDrive")
    run = tmp_path / "drive" / "MyDrive" / "scut-fbp5500" / "runs" / "fold1-0123456789"
    for step in (lambda: utils.read_json(run / "run.json"),
                 lambda: runs._save_in_turn(run, "best.json", [np.zeros(2)])):
        with pytest.raises(errors.DriveNotMountedError, match=r"Run the cell with `utils.mount_drive\(\)`"):
            step()
    assert not (tmp_path / "drive" / "MyDrive").exists()  # nothing written to the VM's disk
    (tmp_path / "drive" / "MyDrive").mkdir(parents=True)  # mounted again
    assert utils.read_json(run / "run.json") == {}


def test_the_set_up_cell_without_the_project_installed_says_what_to_do(tmp_path, monkeypatch):
    from IPython.core.inputtransformer2 import TransformerManager

    setup = nbformat.read(ROOT / "notebooks" / "05_score_your_face.ipynb", as_version=4).cells[1].source
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None if name == "fbp" else
                        find_spec(name, *args))
    monkeypatch.chdir(tmp_path)
    home = re.escape(experiments._project_home())
    said = rf"Outside Colab, run pip install -e \. in a clone of github.com/{home}"
    with pytest.raises(SystemExit, match=said):
        exec(compile(TransformerManager().transform_cell(setup), "set-up cell", "exec"), {})
    assert Path.cwd() == tmp_path

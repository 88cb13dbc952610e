"""Training: it learns what is learnable (and not shuffled labels), resumes after a kill,
never trains a finished stage again."""

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from conftest import ROOT

import utils

SMOKE = utils.Config().smoke()


def held_out_pc(root, cfg=SMOKE) -> float:
    """Both stages in smoke mode, then PC on the protocol's test part."""
    utils.train_frozen_head(cfg, root)
    utils.fine_tune(cfg, root, verbose=0)
    model = utils.load_run_model(utils.run_dir(cfg))
    test = utils.load_protocol(root, cfg.protocol)["test"]
    return utils.regression_metrics(test["score"], utils.predict_scores(model, test, cfg.image_size))["pc"]


def shuffled_copy(root, destination):
    """The same dataset with the scores shuffled across images in every label file."""
    copy = shutil.copytree(root, destination / utils.DATASET_DIRNAME)
    labels = utils.all_labels(copy)
    shuffled = dict(zip(labels["file"], np.random.default_rng(0).permutation(labels["score"]),
                        strict=True))
    for path in (copy / "train_test_files").rglob("*.txt"):
        lines = [line.split() for line in path.read_text().splitlines() if line]
        path.write_text("".join(f"{n} {shuffled[n]:.6f}\n" for n, _ in lines))
    return copy


def test_the_two_stages_learn_a_learnable_dataset(synthetic_root, work):
    assert held_out_pc(synthetic_root) >= 0.8


def test_the_two_stages_do_not_learn_shuffled_labels(synthetic_root, work, tmp_path):
    assert held_out_pc(shuffled_copy(synthetic_root, tmp_path)) < 0.5


def test_a_finished_stage_is_not_trained_again(small_root, work, capsys, monkeypatch):
    cfg = replace(SMOKE, finetune_epochs=1)
    utils.train_frozen_head(cfg, small_root)
    utils.fine_tune(cfg, small_root, verbose=0)
    monkeypatch.setattr(utils, "build_model", lambda *a, **k: pytest.fail("trained again"))
    assert utils.train_frozen_head(cfg, small_root)["frozen"]
    assert utils.fine_tune(cfg, small_root)["finished"]
    assert "already" in capsys.readouterr().out
    assert utils.latest_run() == utils.run_dir(cfg)


def test_the_run_record_holds_what_05_needs(small_root, work):
    cfg = replace(SMOKE, protocol="60/40", finetune_epochs=1)
    record = utils.train_frozen_head(cfg, small_root)
    assert utils.run_dir(cfg).name == "60-40"
    assert record["protocol"] == "60/40" and record["config"]["image_size"] == 64
    scores = utils.all_labels(small_root)["score"]
    assert sorted(record["dataset_scores"]) == pytest.approx(sorted(scores), abs=1e-4)
    assert set(record["versions"]) >= {"tensorflow", "keras", "python"}
    assert record["sizes"] == {"train": 33, "val": 3, "test": 24}  # 10 % of each group, rounded


def test_fine_tune_needs_stage_one(small_root, work):
    with pytest.raises(FileNotFoundError, match="run notebook 02"):
        utils.fine_tune(SMOKE, small_root)


RESUMABLE = textwrap.dedent("""
    import sys
    from dataclasses import replace
    sys.path.insert(0, {root!r})
    import utils
    cfg = replace(utils.Config().smoke(), finetune_epochs=3)
    utils.train_frozen_head(cfg, {data!r})
    utils.fine_tune(cfg, {data!r}, verbose=2)
""")


def test_a_killed_fine_tune_resumes_from_its_last_epoch(small_root, work, tmp_path):
    script = tmp_path / "train.py"
    script.write_text(RESUMABLE.format(root=str(ROOT), data=str(small_root)))
    backup = work / "runs" / "fold1" / "backup"
    env = {**os.environ, "FBP_WORK_DIR": str(work)}
    first = subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 300
    while utils.resumed_epoch(backup) < 1 and first.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    first.send_signal(signal.SIGKILL)
    first.communicate()
    killed_after = utils.resumed_epoch(backup)
    assert 1 <= killed_after < 3, "the kill should land after the first epoch and before the end"
    assert not (work / "runs" / "fold1" / "finetuned.keras").exists()

    second = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True,
                            timeout=600)
    assert second.returncode == 0, second.stdout + second.stderr
    assert f"Resuming the fine-tune of fold1 after epoch {killed_after} of 3" in second.stdout
    assert f"Epoch {killed_after + 1}/3" in second.stdout and "Epoch 1/3" not in second.stdout
    history = utils.read_history(work / "runs" / "fold1" / "history_finetune.csv")
    assert history["epoch"].tolist() == [1, 2, 3]
    assert utils.read_run(work / "runs" / "fold1")["finished"]
    assert (work / "runs" / "fold1" / "finetuned.keras").is_file() and not backup.exists()


def test_history_keeps_the_last_row_of_an_epoch_logged_twice(tmp_path):
    log = tmp_path / "h.csv"
    pd.DataFrame({"epoch": [0, 1, 1, 2], "loss": [3.0, 2.0, 1.9, 1.0]}).to_csv(log, index=False)
    history = utils.read_history(log)
    assert history["epoch"].tolist() == [1, 2, 3] and history["loss"].tolist() == [3.0, 1.9, 1.0]


def test_ridge_recovers_a_linear_rule():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 10))
    y = x @ np.arange(10) + 3
    alpha, prediction = utils.ridge_baseline(x[:150], y[:150], x[150:])
    assert alpha == 0.1
    np.testing.assert_allclose(prediction, y[150:], atol=0.1)


def test_latest_run_prefers_the_newest_finished_run(work):
    for name, finished in [("fold1", True), ("fold2", False)]:
        utils.update_run(utils.run_dir(replace(SMOKE, protocol=name)), finished=finished)
        time.sleep(0.01)
    assert utils.latest_run().name == "fold1"
    assert utils.latest_run(finished=False).name == "fold2"
    with pytest.raises(FileNotFoundError, match="notebooks 02 and 03"):
        utils.latest_run(work / "elsewhere")

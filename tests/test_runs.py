"""Runs you can trust: a run is identified by everything that shaped it, smoke runs share nothing
with real ones, and a lost VM (killed anywhere) never corrupts the best model or names the wrong
epoch."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import asdict, replace
from pathlib import Path

import keras
import nbformat
import numpy as np
import pandas as pd
import pytest
from conftest import ROOT, train

import utils
from fbp import dataset, environment, errors, experiments, runs, settings, synthetic

SMOKE = replace(utils.Config().smoke(), finetune_epochs=3)


def stage_one(cfg, root, monkeypatch) -> Path:
    """Run notebook 02 with these settings and data; returns the run's folder."""
    return runs._run_dir(cfg, train(cfg, root, monkeypatch, ["02_frozen_head"])["record"]["dataset"])


def test_a_smoke_run_and_a_real_run_share_nothing(small_root, work, monkeypatch):
    monkeypatch.setenv("FBP_SMOKE", "1")
    assert utils.work_dir() == work / "smoke"
    smoke_run = stage_one(SMOKE, small_root, monkeypatch)
    fingerprint = utils.dataset_fingerprint(dataset.all_labels(small_root))
    assert utils.current_run(dataset=fingerprint).folder == smoke_run  # as 03 finds it for the runner
    assert smoke_run.parent == work / "smoke" / "runs"
    assert utils.read_json(smoke_run / "run.json")["smoke"] is True
    assert "SMOKE RUN" in runs.Run.at(smoke_run).describe()
    monkeypatch.delenv("FBP_SMOKE")
    real_run = utils.current_run(dataset=fingerprint).folder  # the same settings outside smoke mode
    assert real_run != smoke_run and not (real_run / "run.json").exists()  # the smoke run is not offered
    assert stage_one(SMOKE, small_root, monkeypatch) == real_run  # trains anew, in the real work folder
    assert real_run.parent == work / "runs" and utils.read_json(real_run / "run.json")["smoke"] is False
    assert "SMOKE" not in runs.Run.at(real_run).describe()


def test_a_changed_setting_trains_a_new_run_and_keeps_the_old(small_root, work, monkeypatch, capsys):
    first = stage_one(SMOKE, small_root, monkeypatch)
    changed = replace(SMOKE, head_lr=2e-3)
    second = stage_one(changed, small_root, monkeypatch)
    out = capsys.readouterr().out
    assert f"{first.name}: head_lr 0.001 -> 0.002" in out  # says what differs from the saved run
    assert second != first and (first / "frozen.keras").is_file() and (second / "frozen.keras").is_file()
    assert [utils.read_json(run / "run.json")["config"]["head_lr"] for run in (first, second)] == [1e-3, 2e-3]


def test_other_data_is_another_run(small_root, work, monkeypatch, tmp_path):
    stage_one(SMOKE, small_root, monkeypatch)
    other = synthetic.make_synthetic_dataset(tmp_path / "other", n=60, image_size=48, seed=1,
                                             with_ratings=False)
    datasets = [utils.dataset_fingerprint(dataset.all_labels(root)) for root in (other, small_root)]
    assert datasets[0] != datasets[1]
    stage_one(SMOKE, other, monkeypatch)
    folders = {runs._run_dir(SMOKE, fingerprint) for fingerprint in datasets}
    assert len(folders) == 2 and all((run / "frozen.keras").is_file() for run in folders)


def test_fine_tune_with_other_settings_than_stage_one_says_what_differs(small_root, work, monkeypatch):
    stage_one(SMOKE, small_root, monkeypatch)
    with pytest.raises(errors.RunNotFoundError, match=r"run notebook 02 with the same settings(.|\n)*"
                       r"finetune_lr 1e-05 -> 2e-05"):
        train(replace(SMOKE, finetune_lr=2e-5), small_root, monkeypatch, ["03_finetune"])


def test_03_to_05_continue_the_run_02_set_up_never_the_newest(work, small_root, monkeypatch, capsys):
    with pytest.raises(errors.RunNotFoundError, match="No run chosen yet: run notebook 02 first"):
        utils.current_run()
    run = utils.open_run(SMOKE, dataset.all_labels(small_root))  # what 02's cells do
    said = capsys.readouterr().out
    assert f"Run {run.name} (set up): ResNet50" in said and "Notebooks 03 to 06 continue this run" in said
    assert run.stage == "set up" and run.stage in runs._STAGES
    runs._update_run(run.folder, **run.identity, frozen={"epochs": 3})
    fingerprint, folder = run.identity["dataset"], run.folder
    for cfg in (replace(SMOKE, protocol="60/40"), replace(SMOKE, head_lr=2e-3)):  # newer, finished runs
        time.sleep(0.01)
        runs._update_run(runs._run_dir(cfg, fingerprint), **runs._run_identity(cfg, fingerprint),
                         frozen={"epochs": 3}, finished=True, finetune={"best_epoch": 2})
    assert utils.current_run() == run
    assert utils.current_run(dataset=fingerprint) == run
    said = capsys.readouterr().out
    assert f"Run {folder.name} (set up by notebook 02): ResNet50 (image_size 64" in said
    named = runs._run_dir(replace(SMOKE, protocol="60/40"), fingerprint)
    assert utils.current_run(named.name) == runs.Run.at(named)  # RUN_NAME
    with pytest.raises(errors.RunNotFoundError, match=f"There is no run called 'nope'(.|\n)*{named.name}"):
        utils.current_run("nope")
    with pytest.raises(errors.RunMismatchError, match=f"trained on dataset {fingerprint}, and this one is"):
        utils.current_run(dataset="f" * 16)
    # a protocol runner's fold: 02 opens the fold's run but leaves the user's current run alone
    fold2 = replace(SMOKE, protocol="fold2")
    monkeypatch.setenv("FBP_CONFIG", json.dumps(asdict(fold2)))
    labels = dataset.all_labels(small_root)
    assert utils.open_run(fold2, labels) == utils.current_run(dataset=fingerprint) != run
    monkeypatch.delenv("FBP_CONFIG")
    assert utils.current_run() == run


def test_every_error_utils_raises_for_the_user_is_shown_plainly():
    raised = [value for value in vars(errors).values()
              if isinstance(value, type) and issubclass(value, Exception)]
    assert errors.RunMismatchError in raised
    assert all(issubclass(error, errors.USER_ERRORS) for error in raised)


def test_framing_is_kept_per_dataset(small_root, work, tmp_path):
    framing = utils.framing_for(dataset.all_labels(small_root))
    assert framing == synthetic.SYNTHETIC_FRAMING
    assert (work / f"framing-{utils.dataset_fingerprint(dataset.all_labels(small_root))}.json").is_file()
    real_like = synthetic.make_synthetic_dataset(tmp_path / "other", n=60, image_size=48, seed=1,
                                                 with_ratings=False)
    (real_like / "synthetic_framing.json").unlink()  # a dataset whose framing must be measured
    with pytest.raises(errors.FramingError, match="Faces were found in only 0"):
        utils.framing_for(dataset.all_labels(real_like))  # not the other dataset's (drawn) framing


def state_epoch(backup) -> int:
    """The epoch of the last backup, 0 if none."""
    state = backup / "state.json"
    return json.loads(state.read_text())["epoch"] if state.is_file() else 0


# Notebook 03 in a process of its own, after 02 ran in this one: a VM lost mid-fine-tune, then a new VM
# where the user runs 03 again.
RESUMABLE = textwrap.dedent("""
    import sys
    from dataclasses import replace
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    import pytest
    import conftest
    import utils
    cfg = replace(utils.Config().smoke(), finetune_epochs=3)
    conftest.train(cfg, Path({data!r}), pytest.MonkeyPatch(), ["03_finetune"])
""")


def test_a_killed_fine_tune_resumes_from_its_last_epoch(small_root, work, tmp_path, monkeypatch):
    script = tmp_path / "train.py"
    script.write_text(RESUMABLE.format(tests=str(ROOT / "tests"), data=str(small_root)))
    folder = stage_one(SMOKE, small_root, monkeypatch)
    backup = folder / "backup"
    env = {**os.environ, "FBP_WORK_DIR": str(work)}
    first = subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 300
    while state_epoch(backup) < 1 and first.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    first.send_signal(signal.SIGKILL)
    first.communicate()
    killed_after = state_epoch(backup)
    assert 1 <= killed_after < 3, "the kill should land after the first epoch and before the end"
    assert not (folder / "finetuned.keras").exists()

    second = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True,
                            timeout=600)
    assert second.returncode == 0, second.stdout + second.stderr
    assert f"Resuming the fine-tune of run {folder.name} after epoch {killed_after} of 3" in second.stdout
    assert f"Epoch {killed_after + 1}/3" in second.stdout and "Epoch 1/3" not in second.stdout
    history = utils.read_history(folder / "history_finetune.csv")
    assert history["epoch"].tolist() == [1, 2, 3]
    assert utils.read_json(folder / "run.json")["finished"]
    assert (folder / "finetuned.keras").is_file() and not backup.exists()
    assert not list(folder.glob("*.npz")) and not list(folder.glob("*.tmp*"))


class Killed(Exception):
    """Stands for the VM going away."""


def kill_at_epoch_2(monkeypatch, callback, method="on_epoch_end"):
    """Make a callback's method 'lose the VM' at the end of epoch 2 (before it does its work)."""
    real = getattr(callback, method)

    def maybe_kill(self, epoch, logs=None):
        if epoch == 1:
            raise Killed
        return real(self, epoch, logs)

    monkeypatch.setattr(callback, method, maybe_kill)


def half_written_checkpoint(monkeypatch):
    """Make the second write of the best checkpoint (epoch 2's) stop halfway, as a kill would."""
    real, calls = np.savez, []

    def savez(file, *arrays):
        if Path(file.name).name.startswith("best"):
            calls.append(file)
        if len(calls) == 2:
            file.write(b"PK\x03\x04 half a file")
            raise Killed
        return real(file, *arrays)

    monkeypatch.setattr(runs.np, "savez", savez)


def final_val_loss(folder, root) -> float:
    """The validation loss of the saved fine-tuned model, measured anew."""
    model = keras.models.load_model(folder / "finetuned.keras", safe_mode=True)
    model.compile(loss="mse")
    val = utils.load_protocol(root, SMOKE.protocol)["val"]
    return model.evaluate(utils.make_dataset(val, SMOKE.image_size, 16), verbose=0)


@pytest.mark.parametrize("where", ["between log and checkpoint", "during the checkpoint write",
                                   "between checkpoint and backup"],
                         ids=["killed_before_checkpoint", "killed_during_checkpoint", "killed_before_backup"])
def test_a_vm_lost_at_the_worst_moment_keeps_the_best_epoch(small_root, work, monkeypatch, where):
    cfg = replace(SMOKE, finetune_epochs=2)
    folder = stage_one(cfg, small_root, monkeypatch)
    with monkeypatch.context() as patch:
        if where == "between log and checkpoint":
            kill_at_epoch_2(patch, utils.BestCheckpoint)
        elif where == "during the checkpoint write":
            patch.setattr(utils.BestCheckpoint, "improves", lambda self, logs: True)  # epoch 2 writes
            half_written_checkpoint(patch)
        else:
            kill_at_epoch_2(patch, utils.EpochBackup)
        with pytest.raises(Killed):
            train(cfg, small_root, patch, ["03_finetune"])
    assert state_epoch(folder / "backup") == 1
    best_before = utils.read_json(folder / "best.json")
    assert (folder / best_before["file"]).is_file()  # best.json never names a missing file

    record = train(cfg, small_root, monkeypatch, ["03_finetune"])["record"]  # the new VM resumes
    best = utils.read_json(folder / "best.json")
    history = utils.read_history(folder / "history_finetune.csv", best)
    assert history["epoch"].tolist() == [1, 2]
    assert record["finetune"]["best_epoch"] == best["epoch"]
    assert record["finetune"]["chosen_on"] == best["monitor"] == "val_loss"  # the score's alone
    assert record["finetune"]["best_value"] == pytest.approx(history["val_loss"].min())
    assert history.set_index("epoch").loc[best["epoch"], "val_loss"] == pytest.approx(best["value"])
    assert final_val_loss(folder, small_root) == pytest.approx(best["value"], rel=1e-3)


def test_the_log_keeps_the_row_of_the_checkpoint_on_disk(tmp_path):
    log = tmp_path / "h.csv"
    pd.DataFrame({"epoch": [1, 2, 2, 3], "val_loss": [3.0, 2.0, 2.5, 1.0]}).to_csv(log, index=False)
    assert utils.read_history(log)["val_loss"].tolist() == [3.0, 2.5, 1.0]  # else the last row
    best = {"epoch": 2, "monitor": "val_loss", "value": 2.0}  # on disk: epoch 2's first run
    history = utils.read_history(log, best)
    assert history["epoch"].tolist() == [1, 2, 3] and history["val_loss"].tolist() == [3.0, 2.0, 1.0]


def test_a_protocol_run_echoes_each_line_its_notebooks_print(tmp_path, monkeypatch, capsys):
    """One line per finished line of the fold's notebook, a redrawn progress bar in its last state."""
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        'print("Epoch 1/2")\nprint("1/9 bar" + "\\b" * 7 + "\\r9/9 done - val_loss: 0.1")\n'
        'import sys; sys.stdout.write("half "); sys.stdout.flush(); print("a line")')])
    (tmp_path / "notebooks").mkdir()
    nbformat.write(notebook, tmp_path / "notebooks" / "tiny.ipynb")
    monkeypatch.setattr(environment, "NOTEBOOKS", tmp_path / "notebooks")
    monkeypatch.setenv("FBP_WORK_DIR", str(tmp_path / "work"))
    experiments._run_notebook("tiny", SMOKE, tmp_path, tmp_path / "fold")
    echoed = [line for line in capsys.readouterr().out.splitlines() if "|" in line]
    assert echoed == ["  fold1 | Epoch 1/2", "  fold1 | 9/9 done - val_loss: 0.1", "  fold1 | half a line"]
    assert (tmp_path / "fold" / "tiny.ipynb").is_file()


def fake_fold_notebooks(fingerprint: str, calls: list):
    """A stand-in for run_notebook: writes what notebooks 02, 03 and 04 would write for a fold
    (tiny model files; 04 reports the current model's stage: PC .80 frozen, .90 fine-tuned)."""
    def run(name, cfg, data_root, folder, label=None):
        calls.append((name, cfg.protocol))
        folder.mkdir(parents=True, exist_ok=True)
        if name == "02_frozen_head":
            (folder / "frozen.keras").write_bytes(f"frozen {cfg.protocol}".encode())
            runs._update_run(folder, **runs._run_identity(cfg, fingerprint), frozen={"epochs": 1})
        elif name == "03_finetune":
            (folder / "finetuned.keras").write_bytes(f"tuned {cfg.protocol}".encode())
            utils.save_json(folder / "reference-finetuned.json",
                            {"files": [cfg.protocol], "true": [3.0], "predicted": [3.1]})
            runs._update_run(folder, finished=True, finetune={"best_epoch": 1})
        else:
            model = runs.Run.at(folder).current_model()
            utils.save_json(folder / "evaluation.json", {
                "protocol": cfg.protocol, "model": model["stage"], "evaluated": model, "n": 10,
                "PC": 0.9 if model["stage"] == "finetuned" else 0.8, "MAE": 0.2, "RMSE": 0.3})
    return run


@pytest.fixture
def fake_notebooks(small_root, work, monkeypatch) -> tuple[str, list]:
    """run_notebook replaced by fake_fold_notebooks: the dataset's id and the calls it records."""
    fingerprint, calls = utils.dataset_fingerprint(dataset.all_labels(small_root)), []
    monkeypatch.setattr(experiments, "_run_notebook", fake_fold_notebooks(fingerprint, calls))
    return fingerprint, calls


def test_a_protocol_reevaluates_a_fold_evaluated_before_its_fine_tune(small_root, fake_notebooks):
    # the user ran 02 and 04 for fold 1, then the 5-fold protocol (which runs 03 for fold 1)
    fingerprint, calls = fake_notebooks
    fold1 = runs._run_dir(SMOKE, fingerprint)
    experiments._run_notebook("02_frozen_head", SMOKE, small_root, fold1)
    experiments._run_notebook("04_evaluation", SMOKE, small_root, fold1)
    assert "test PC 0.800 (frozen head model" in runs.Run.at(fold1).describe()
    assert runs.Run.at(fold1).stage == "evaluated"
    table = utils.run_protocol("5-fold", SMOKE, small_root)
    assert calls.count(("04_evaluation", "fold1")) == 2  # evaluated again after its fine-tune
    assert table["stage"].tolist() == ["finetuned"] * 7 and table.loc["fold1", "PC"] == 0.9
    assert table.loc["mean", "PC"] == pytest.approx(0.9)
    assert "test PC 0.900 (fine-tuned model" in runs.Run.at(fold1).describe()
    assert "MAE 0.20" in utils.accuracy_note(runs.Run.at(fold1))
    calls.clear()
    utils.run_protocol("5-fold", SMOKE, small_root)
    assert calls == []  # every fold trained and evaluated from its current model: nothing to redo


def test_no_note_or_description_quotes_an_earlier_models_evaluation(work, small_root, monkeypatch):
    fingerprint, calls = utils.dataset_fingerprint(dataset.all_labels(small_root)), []
    run = fake_fold_notebooks(fingerprint, calls)
    folder = runs._run_dir(SMOKE, fingerprint)
    for name in ("02_frozen_head", "04_evaluation", "03_finetune"):  # fine-tuned after 04 ran
        run(name, SMOKE, small_root, folder)
    report, why_not = runs.Run.at(folder).evaluation(), runs.Run.at(folder).why_not_evaluated()
    assert report is None and why_not.startswith("notebook 04 evaluated an earlier model of this run")
    assert runs.Run.at(folder).stage == "fine-tuned"
    note = utils.accuracy_note(runs.Run.at(folder))
    assert note.startswith(f"This run's model: {why_not}.")
    assert "0.80" not in note and "paper's" in note
    assert why_not in runs.Run.at(folder).describe() and "0.80" not in runs.Run.at(folder).describe()


def test_05s_five_fold_models_are_found_once_the_5_fold_protocol_is_done(small_root, fake_notebooks):
    fingerprint, _ = fake_notebooks
    fold1 = runs._run_dir(SMOKE, fingerprint)
    experiments._run_notebook("02_frozen_head", SMOKE, small_root, fold1)
    experiments._run_notebook("03_finetune", SMOKE, small_root, fold1)
    assert runs.Run.at(fold1).folds() == []  # one fold trained: 05 scores with its model alone
    utils.run_protocol("5-fold", SMOKE, small_root)
    folds = [fold.folder for fold in runs.Run.at(fold1).folds()]
    assert folds == [runs._run_dir(replace(SMOKE, protocol=f"fold{k}"), fingerprint) for k in range(1, 6)]
    other = replace(SMOKE, seed=1)  # fold 1 with other settings: the protocol done is not its own
    experiments._run_notebook("02_frozen_head", other, small_root, runs._run_dir(other, fingerprint))
    assert runs.Run.at(runs._run_dir(other, fingerprint)).folds() == []


def test_once_the_fold_models_score_the_accuracy_note_quotes_their_mean_and_sd(small_root, fake_notebooks):
    fingerprint, _ = fake_notebooks
    fold1 = runs._run_dir(SMOKE, fingerprint)
    experiments._run_notebook("02_frozen_head", SMOKE, small_root, fold1)
    utils.run_protocol("5-fold", SMOKE, small_root)
    folds = [fold.folder for fold in runs.Run.at(fold1).folds()]
    pc, mae, rmse = 0.88 + 0.01 * np.arange(5), 0.20 + 0.01 * np.arange(5), 0.30 - 0.01 * np.arange(5)
    for k, fold in enumerate(folds):  # each fold's own figures
        report = utils.read_json(fold / "evaluation.json")
        utils.save_json(fold / "evaluation.json", {**report, "PC": pc[k], "MAE": mae[k], "RMSE": rmse[k]})
    note = utils.accuracy_note(runs.Run.at(fold1))
    assert note.startswith("The 5 fold models that score here, each on its own fold's 10 test faces")
    assert (f"MAE {mae.mean():.2f} ± {mae.std(ddof=1):.2f} and RMSE {rmse.mean():.2f} ± "
            f"{rmse.std(ddof=1):.2f} score points, PC {pc.mean():.3f} ± {pc.std(ddof=1):.3f}.") in note
    assert "PC 0.900 ± 0.016" in note and "0.880" not in note  # not fold 1's own
    (folds[2] / "evaluation.json").unlink()  # a fold not evaluated: the run's own figures, so labelled
    said = utils.accuracy_note(runs.Run.at(fold1))
    assert said.startswith("This run's fine-tuned model on its 10 test faces (fold1")


def test_every_recipe_chooses_its_epoch_by_the_scores_own_validation_loss(tmp_path):
    assert utils.selection_loss(SMOKE) == "val_loss"  # squared error on the score alone: the loss
    distribution = replace(SMOKE, label_distribution=True)
    assert utils.selection_loss(distribution) == "val_score_loss"  # not MSE + weight x KL
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, name="score")])
    checkpoint = utils.BestCheckpoint(tmp_path, utils.selection_loss(distribution))
    checkpoint.set_model(model)
    checkpoint.on_train_begin()
    checkpoint.on_epoch_end(0, {"val_loss": 1.0, "val_score_loss": 0.5})
    checkpoint.on_epoch_end(1, {"val_loss": 0.8, "val_score_loss": 0.6})  # the sum better, the score worse
    best = utils.read_json(tmp_path / "best.json")
    assert (best["epoch"], best["monitor"], best["value"]) == (1, "val_score_loss", 0.5)


class Trained(Exception):
    """What train_and_evaluate was asked to train, stopping there."""


def stop_before_training(monkeypatch) -> None:
    """Make the runners stop where training would begin, naming the runs they would train."""
    def train_and_evaluate(runs, data_root, what, stage_one_only=()):
        raise Trained(list(runs))
    monkeypatch.setattr(experiments, "_train_and_evaluate", train_and_evaluate)
    monkeypatch.setattr(experiments, "_run_notebook", lambda *a, **k: pytest.fail("a notebook ran"))


def test_the_ablation_skips_a_recipe_the_dataset_lacks_for_before_training_any(small_root, work,
                                                                                monkeypatch, capsys):
    stop_before_training(monkeypatch)
    recipes = experiments._ablation_recipes(SMOKE)
    with pytest.raises(Trained) as trained:
        utils.run_ablation(SMOKE, small_root)  # the release without All_Ratings.xlsx
    assert trained.value.args[0] == [name for name, cfg in recipes.items() if not cfg.label_distribution]
    printed = capsys.readouterr().out.splitlines()
    skipped = [name for name, cfg in recipes.items() if cfg.label_distribution]
    assert printed == [f"Skipped {name}: {small_root} lacks All_Ratings.xlsx, the raters' sheet that its "
                       "distribution head learns from. Add it to include this recipe." for name in skipped]
    assert "ResNet50, seed 1" in trained.value.args[0]  # the seed check is a recipe of its own


def test_a_protocol_whose_fold_cannot_run_stops_before_any_fold_trains(small_root, work, monkeypatch):
    stop_before_training(monkeypatch)
    for name in ("train_3.txt", "test_3.txt"):
        next(small_root.glob(f"train_test_files/*/cross_validation_3/{name}")).unlink()
    lacking = "nothing was trained: fold3 needs the label files of fold3"
    with pytest.raises(errors.DatasetLayoutError, match=lacking):
        utils.run_protocol("5-fold", SMOKE, small_root)
    with pytest.raises(errors.DatasetLayoutError, match="baseline, ResNet50, lacks the label files of fold3"):
        utils.run_ablation(SMOKE, small_root, across_folds=True)  # every recipe needs every fold
    with pytest.raises(Trained):
        utils.run_ablation(SMOKE, small_root)  # on fold 1 alone, the recipes without the sheet train


def test_the_seed_control_sees_the_same_validation_faces_and_an_older_run_keeps_its_own(work, small_root):
    fingerprint = utils.dataset_fingerprint(dataset.all_labels(small_root))
    run, seed_control = runs.Run.of(SMOKE, fingerprint), runs.Run.of(replace(SMOKE, seed=1), fingerprint)
    assert "val_seed" not in run.identity  # seed 0 carves as it always did: the same run as before
    assert run.val_seed == seed_control.val_seed == settings.VALIDATION_SEED

    def validation(val_seed: int) -> set[str]:
        return set(utils.load_protocol(small_root, "fold1", SMOKE.val_fraction, val_seed)["val"]["file"])

    assert validation(run.val_seed) == validation(seed_control.val_seed)  # only the seed changed
    before = {k: v for k, v in seed_control.identity.items() if k not in ("val_seed", "fingerprint")}
    older = runs.Run(work / "runs" / "made-before", {"fingerprint": runs._fingerprint_of(before), **before})
    assert older.val_seed == 1 and validation(older.val_seed) != validation(run.val_seed)  # as it trained
    assert older.identity["fingerprint"] != seed_control.identity["fingerprint"]  # a new run, not that one

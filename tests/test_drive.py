"""A free Google Drive: what the series deletes or replaces never fills its bin, a run checks for
room before it writes, and a resume survives a missing or damaged backup. The stand-in Drive
(tests/colab_stub/google/colab/drive.py) counts the bin as Drive does."""

import json
import shutil
from dataclasses import replace
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import stand_in_drive, train

import utils
from fbp import environment, errors, runs

SMOKE = utils.Config().smoke()


@pytest.fixture
def drive(tmp_path, monkeypatch):
    """The stand-in Drive mounted in this process, the work folder on it, as in Colab."""
    stub = stand_in_drive()
    monkeypatch.setenv("COLAB_STUB_DRIVE", str(tmp_path / "google-drive"))
    mount = tmp_path / "content" / "drive"
    stub.mount(str(mount))
    monkeypatch.setenv("FBP_WORK_DIR", str(mount / "MyDrive" / "scut-fbp5500"))
    monkeypatch.setattr(environment, "DRIVE_HOME", mount / "MyDrive")
    try:
        yield stub
    finally:
        stub.flush_and_unmount()


def test_the_stand_in_drive_bins_deleted_and_replaced_files_but_not_overwrites(drive, tmp_path,
                                                                                 monkeypatch):
    home = environment.DRIVE_HOME
    (home / "a").write_bytes(b"x" * 1000)
    (home / "a").write_bytes(b"y" * 10)  # overwritten in place: one file, nothing binned
    (home / "b").write_bytes(b"z" * 300)
    (home / "b").replace(home / "a")  # the replaced file goes to the bin
    assert drive.bin_bytes() == 10
    (home / "a").unlink()
    (home / "c").mkdir()
    (home / "c" / "d").write_bytes(b"w" * 50)
    shutil.rmtree(home / "c")
    assert drive.bin_bytes() == 10 + 300 + 50
    (tmp_path / "local").write_bytes(b"v" * 70)
    (tmp_path / "local").unlink()  # the VM's own disk has no bin
    assert drive.bin_bytes() == 360
    monkeypatch.setenv("COLAB_STUB_DRIVE_QUOTA", "1000")
    (home / "e").write_bytes(b"u" * 40)
    usage = shutil.disk_usage(home)
    assert (usage.total, usage.used, usage.free) == (1000, 400, 600)
    environment.discard(home / "e")  # emptied, then deleted: the bin keeps none of it
    assert drive.bin_bytes() == 360


def test_a_fine_tune_leaves_almost_nothing_in_drives_bin(drive, small_root, monkeypatch):
    cfg = replace(SMOKE, finetune_epochs=4)  # ResNet50's real file sizes: 94 MB of weights
    record = train(cfg, small_root, monkeypatch)["record"]
    folder = runs._run_dir(cfg, record["dataset"])
    assert record["finished"] and record["finetune"]["epochs"] == 4
    assert drive.bin_bytes() < 1e6, drive.binned()  # the goal: under 200 MB per run (was ~1.3 GB)
    assert not list(folder.rglob("*.npz")) and not (folder / "backup").exists()
    on_drive = drive.drive_bytes()
    assert on_drive < 3 * (folder / "frozen.keras").stat().st_size  # two models and small records


def test_a_drive_without_room_says_so_before_training(drive, small_root, monkeypatch):
    monkeypatch.setattr(environment, "in_colab", lambda: True)
    record = train(SMOKE, small_root, monkeypatch, ["02_frozen_head"])["record"]
    folder = runs._run_dir(SMOKE, record["dataset"])
    monkeypatch.setenv("COLAB_STUB_DRIVE_QUOTA", str(drive.drive_bytes() + drive.bin_bytes() + 300e6))
    with pytest.raises(errors.NoSpaceError) as caught:
        train(SMOKE, small_root, monkeypatch, ["03_finetune"])
    message = str(caught.value)
    assert message.startswith("Your Google Drive has 0.30 GB free, and this fine-tune needs about 0.8")
    assert "drive.google.com/drive/trash" in message and folder.name in message
    assert not (folder / "backup").exists() and not (folder / "history_finetune.csv").exists()
    assert not list(folder.glob("best*"))
    monkeypatch.delenv("FBP_CONFIG")  # as in 04's own kernel: 4 stage-1 models, 5 fine-tuned ones and
    with pytest.raises(errors.NoSpaceError, match="the 5-fold protocol needs about 1\\.6. GB more"):
        utils.run_protocol("5-fold", SMOKE, small_root)  # one fine-tune's backups at a time


# --- Resuming from what a lost VM left -----------------------------------------------------------

def tiny_model() -> keras.Model:
    """A compiled two-layer model: enough for a training state with optimizer slots."""
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4), keras.layers.Dense(1, name="score")])
    model.compile(optimizer=keras.optimizers.AdamW(1e-2), loss="mse")
    return model


def trained_three_epochs(folder: Path) -> tuple[keras.Model, list[np.ndarray]]:
    """A tiny model trained 3 epochs of 2 steps with both callbacks; its weights after each epoch."""
    x = np.random.default_rng(0).normal(size=(8, 3)).astype("float32")
    model, weights = tiny_model(), []
    keep = keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: weights.append(model.get_weights()))
    model.fit(x, x.sum(axis=1), validation_data=(x, x.sum(axis=1)), batch_size=4, epochs=3, verbose=0,
              callbacks=[utils.BestCheckpoint(folder, "val_loss"), utils.EpochBackup(folder / "backup"),
                         keep])
    return model, weights


def damage(path: Path, how: str) -> None:
    """Break a saved file as a lost VM or a full Drive would."""
    if how == "missing":
        path.unlink()
    elif how == "cut short":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:  # Drive over quota keeps an empty file in place of the real one
        path.write_bytes(b"")


@pytest.mark.parametrize("how", ["missing", "cut short", "empty"])
def test_a_damaged_backup_resumes_from_the_one_before(tmp_path, capsys, how):
    _, weights = trained_three_epochs(tmp_path)
    state = json.loads((tmp_path / "backup" / "state.json").read_text())
    assert state["epoch"] == 3 and state["previous"]["epoch"] == 2
    damage(tmp_path / "backup" / state["file"], how)
    model = tiny_model()
    assert utils.restore_training(model, tmp_path, 5, 2) == 2
    out = capsys.readouterr().out
    assert f"The save of epoch 3 ({state['file']}) is {'missing' if how == 'missing' else 'damaged'}" in out
    assert "Resuming the fine-tune of run" in out and "after epoch 2 of 5" in out
    for restored, saved in zip(model.get_weights(), weights[1], strict=True):
        np.testing.assert_array_equal(restored, saved)
    assert int(model.optimizer.iterations.numpy()) == 4  # the optimizer's state came back too


def test_without_a_whole_backup_it_resumes_from_the_best_weights(tmp_path, capsys):
    trained_three_epochs(tmp_path)
    for path in (tmp_path / "backup").glob("*.npz"):
        damage(path, "empty")
    best = utils.read_json(tmp_path / "best.json")
    model = tiny_model()
    assert utils.restore_training(model, tmp_path, 5, 2) == best["epoch"]
    assert "resuming after epoch" in capsys.readouterr().out
    with np.load(tmp_path / best["file"]) as saved:
        np.testing.assert_array_equal(model.get_weights()[0], saved["arr_0"])
    assert int(model.optimizer.iterations.numpy()) == 2 * best["epoch"]  # the schedule goes on


def test_with_nothing_whole_it_starts_again(tmp_path, capsys):
    trained_three_epochs(tmp_path)
    for path in [*(tmp_path / "backup").glob("*.npz"), *tmp_path.glob("best-*.npz")]:
        damage(path, "missing")
    assert utils.restore_training(tiny_model(), tmp_path, 5, 2) == 0
    assert "starts again from stage 1's model" in capsys.readouterr().out


def test_a_new_save_never_touches_the_file_the_record_names(tmp_path, monkeypatch):
    trained_three_epochs(tmp_path)
    state = json.loads((tmp_path / "backup" / "state.json").read_text())
    named = (tmp_path / "backup" / state["file"]).read_bytes()

    def killed(file, *arrays):
        file.write(b"PK half")
        raise KeyboardInterrupt  # the VM goes away mid-write

    monkeypatch.setattr(runs.np, "savez", killed)
    model = tiny_model()
    model.optimizer.build(model.trainable_variables)
    with pytest.raises(KeyboardInterrupt):
        runs._save_in_turn(tmp_path / "backup", "state.json", model.weights, epoch=4)
    assert json.loads((tmp_path / "backup" / "state.json").read_text()) == state
    assert (tmp_path / "backup" / state["file"]).read_bytes() == named


# --- The code that trained a run ----------------------------------------------------------------

def test_a_run_records_its_code_and_a_resume_with_other_code_says_so(tmp_path, capsys, monkeypatch):
    now = runs._code_version()
    if now["commit"] is None:
        pytest.skip("not a git checkout")
    assert len(now["commit"]) == 40 and isinstance(now["changed"], bool)
    other = {"commit": "0123456789" * 4, "changed": False}
    with monkeypatch.context() as patch:
        patch.setattr(runs, "_code_version", lambda: other)
        trained_three_epochs(tmp_path)
    assert json.loads((tmp_path / "backup" / "state.json").read_text())["code"] == other
    utils.restore_training(tiny_model(), tmp_path, 5, 2)
    out = capsys.readouterr().out
    assert "its last epochs were trained by commit 0123456; this checkout is commit" in out
    assert f"install commit {other['commit']} (`git checkout` it" in out
    monkeypatch.setattr(runs, "_code_version", lambda: other)
    utils.restore_training(tiny_model(), tmp_path, 5, 2)
    assert "other code" not in capsys.readouterr().out  # the same code: nothing to say

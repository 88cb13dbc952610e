"""Benchmark: bytes written per fine-tune epoch by the checkpoint and the backup (what goes to
Drive in Colab), the previous way (Keras' ModelCheckpoint with weights and optimizer, and
BackupAndRestore with double_checkpoint) against ours (best weights only, one atomic backup).

Run by hand: .venv/bin/python tests/bench_drive_writes.py. ResNet50's weights do not depend on the
image size, so tiny images give the real file sizes. An epoch's bytes are the sizes of the files
that were created or rewritten in the run's folder during it (a copy counts: on Drive it is uploaded
again), from the start of the epoch to the end of its last callback.
"""

import sys
import tempfile
from pathlib import Path

import keras
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import model_from_notebook

import utils

EPOCHS, SIZE, IMAGES = 3, 32, 32


def file_versions(folder: Path) -> dict:
    """Every file below a folder with its identity (inode, modification time) and size."""
    return {p: ((p.stat().st_ino, p.stat().st_mtime_ns), p.stat().st_size)
            for p in folder.rglob("*") if p.is_file()}


class WriteMeter(keras.callbacks.Callback):
    """Records the bytes of the files written during each epoch (put it first and last)."""

    def __init__(self, folder: Path, per_epoch: list, start: bool):
        super().__init__()
        self.folder, self.per_epoch, self.start = folder, per_epoch, start

    def on_epoch_begin(self, epoch, logs=None):
        if self.start:
            self.per_epoch.append(file_versions(self.folder))

    def on_epoch_end(self, epoch, logs=None):
        if not self.start:
            before = self.per_epoch[-1]
            self.per_epoch[-1] = sum(size for path, (identity, size) in file_versions(self.folder).items()
                                     if before.get(path, (None,))[0] != identity)


def measure(policy: str, ours: bool) -> list[int]:
    """Bytes written in each epoch of a short fine-tune under a dtype policy."""
    folder = Path(tempfile.mkdtemp())
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (IMAGES, SIZE, SIZE, 3), dtype=np.uint8)
    scores = rng.uniform(1, 5, IMAGES).astype("float32")
    model = model_from_notebook(SIZE)  # then as notebook 03 prepares it
    model.get_layer("resnet50").trainable = True
    utils.use_precision(model, policy)
    model.compile(optimizer=keras.optimizers.AdamW(1e-5, weight_decay=1e-4), loss="mse")
    if ours:
        saving = [utils.BestCheckpoint(folder), utils.EpochBackup(folder / "backup")]
    else:
        saving = [keras.callbacks.ModelCheckpoint(str(folder / "best.weights.h5"), save_best_only=True,
                                                  save_weights_only=True, monitor="val_loss"),
                  keras.callbacks.BackupAndRestore(str(folder / "backup"), double_checkpoint=True,
                                                   delete_checkpoint=False)]
    per_epoch: list[int] = []
    model.fit(images, scores, validation_data=(images, scores), batch_size=16, epochs=EPOCHS, verbose=0,
              callbacks=[WriteMeter(folder, per_epoch, True), *saving, WriteMeter(folder, per_epoch, False)])
    return per_epoch


if __name__ == "__main__":
    for policy in ("float32", "mixed_float16"):
        for ours in (False, True):
            mb = [round(b / 1e6) for b in measure(policy, ours)]
            name = "ours (best weights only, one atomic backup)" if ours else "before (Keras callbacks)"
            print(f"{policy:14s} {name:46s} MB written per epoch: {mb}")

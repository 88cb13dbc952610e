"""Benchmark: what the series occupies on Google Drive and leaves in its bin, measured on the
stand-in Drive (tests/colab_stub/google/colab/drive.py), which counts a deleted or replaced file's
bytes in the bin as Drive does.

Run by hand: .venv/bin/python tests/bench_drive_writes.py. ResNet50's files do not depend on the
image size, so smoke runs (64 px, untrained weights, a 60-face synthetic dataset) give the real
sizes of models, backups and checkpoints. Each protocol's runs are trained with notebooks 02 and
03's own cells, one after another as 04's runner does: first one fold with a long fine-tune (how
the bin grows with the epochs), then the other folds and the 60/40 split. The occupancy is polled
every 0.1 s during training for its peak.
"""

import os
import sys
import tempfile
import threading
from dataclasses import replace
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import stand_in_drive, train

import utils
from fbp import experiments, runs, synthetic

FEATURES_5500 = 5500 * 2048 * 4 + 128  # the feature cache of the real dataset (.npy)
ZIP_BYTES = 172e6                                  # the release zip (its size on Google Drive)


def mounted_drive(home: Path):
    """The stand-in Drive mounted in this process, with the work folder on it."""
    stub = stand_in_drive()
    os.environ["COLAB_STUB_DRIVE"] = str(home / "google-drive")
    stub.mount(str(home / "content" / "drive"))
    os.environ["FBP_WORK_DIR"] = str(home / "content" / "drive" / "MyDrive" / "scut-fbp5500")
    return stub


class Peak:
    """The largest occupancy of the Drive (files and bin) seen while a block runs."""

    def __init__(self, stub):
        self.stub, self.peak, self.running = stub, 0, True

    def poll(self):
        while self.running:
            try:
                self.peak = max(self.peak, self.stub.drive_bytes() + self.stub.bin_bytes())
            except (FileNotFoundError, ValueError):  # a file went, or the bin's record was being written
                pass
            threading.Event().wait(0.1)

    def __enter__(self):
        self.thread = threading.Thread(target=self.poll, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.running = False
        self.thread.join()


def main():
    home = Path(tempfile.mkdtemp())
    stub = mounted_drive(home)
    root = synthetic.make_synthetic_dataset(home / "data", n=60, image_size=48, with_ratings=False)
    monkeypatch = pytest.MonkeyPatch()
    base = utils.Config().smoke()
    mb = 1e6
    try:
        for epochs in (2, 6):
            cfg = replace(base, finetune_epochs=epochs, seed=epochs)  # a run of its own each
            before_files, before_bin = stub.drive_bytes(), stub.bin_bytes()
            with Peak(stub) as peak:
                record = train(cfg, root, monkeypatch)["record"]
            folder = runs._run_dir(cfg, record["dataset"])
            rise = peak.peak - before_files - before_bin
            held = experiments._folder_bytes(folder)
            print(f"one run, {epochs} fine-tune epochs: run folder {held / mb:.0f} MB, "
                  f"peak while training {rise / mb:.0f} MB above the start, "
                  f"bin +{(stub.bin_bytes() - before_bin) / mb:.3f} MB")
        stub_start = (stub.drive_bytes(), stub.bin_bytes())
        protocols = [f"fold{k}" for k in range(1, 6)] + ["60/40"]
        with Peak(stub) as peak:
            for protocol in protocols:
                train(replace(base, protocol=protocol, finetune_epochs=3), root, monkeypatch)
        folders = [f for f, r in runs.saved_runs(Path(os.environ["FBP_WORK_DIR"]))
                if r["config"]["protocol"] in protocols and r["config"]["finetune_epochs"] == 3]
        held = sum(experiments._folder_bytes(f) for f in folders)
        cache = sum(p.stat().st_size for p in Path(os.environ["FBP_WORK_DIR"]).rglob("features-*.npy"))
        print(f"5-fold + 60/40 (6 runs, 3 epochs each): run folders {held / mb:.0f} MB, peak "
              f"{(peak.peak - sum(stub_start)) / mb:.0f} MB above the start, bin "
              f"+{(stub.bin_bytes() - stub_start[1]) / mb:.3f} MB; this dataset's feature cache "
              f"{cache / mb:.2f} MB")
        total = held + FEATURES_5500 + ZIP_BYTES
        print(f"the whole protocol with the release zip ({ZIP_BYTES / mb:.0f} MB) and the real dataset's "
              f"feature cache ({FEATURES_5500 / mb:.0f} MB): {total / 1e9:.2f} GB after it; "
              f"{(total + peak.peak - sum(stub_start) - held) / 1e9:.2f} GB at its peak")
        print("binned files:", stub.binned()[:10], "...")
    finally:
        monkeypatch.undo()
        stub.flush_and_unmount()


if __name__ == "__main__":
    main()

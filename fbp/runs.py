"""runs"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.metadata
import json
import os
import subprocess
import sys
import time
import zipfile
from dataclasses import asdict
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import tensorflow as tf

from fbp import dataset, environment, evaluation, faces, network, settings
from fbp.errors import GPUMemoryError, RunMismatchError, RunNotFoundError


def _run_identity(cfg: settings.Config, dataset: str) -> dict:
    """Everything that shapes a run's model (settings, dataset, recipe version, smoke or not),
    with a fingerprint of it all."""
    identity = {"config": asdict(cfg), "dataset": dataset, "recipe": settings.RECIPE_VERSION,
                "smoke": environment.smoke_mode()}
    return {"fingerprint": _fingerprint_of(identity), **identity}


def _fingerprint_of(identity: dict) -> str:
    """A short hash of a run's identity (settings, dataset, recipe, smoke)."""
    return hashlib.sha1(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:10]


def run_dir(cfg: settings.Config, dataset: str, root: Path | None = None) -> Path:
    """The run's own folder, named by its protocol and fingerprint, e.g. runs/fold1-3fa2c1d0e4."""
    fingerprint = _run_identity(cfg, dataset)["fingerprint"]
    return Path(root or environment.work_dir()) / "runs" / f"{cfg.protocol.replace('/', '-')}-{fingerprint}"


def _update_run(path: Path, **fields) -> dict:
    """Merge fields into run.json, written atomically so a lost VM never leaves half a file."""
    record = {**environment.read_json(Path(path) / "run.json"), **fields}
    environment.save_json(Path(path) / "run.json", record)
    return record


def saved_runs(root: Path | None = None) -> list[tuple[Path, dict]]:
    """Every run folder of the work folder with its record, the most recently updated first."""
    records = sorted((Path(root or environment.work_dir()) / "runs").glob("*/run.json"),
                     key=lambda p: p.stat().st_mtime, reverse=True)
    return [(path.parent, json.loads(path.read_text())) for path in records]


def _current_run_file() -> Path:
    """Where notebook 02 names the run that notebooks 03, 04 and 05 continue."""
    return environment.work_dir() / "runs" / "current.json"


def open_run(cfg: settings.Config, labels: pd.DataFrame) -> tuple[Path, dict]:
    """This run's folder and identity; says which stages it has done, names the saved runs made with
    other settings or data (kept, never reused), and makes it the run that 03, 04 and 05 continue
    (not when a protocol runner runs this fold: the user's own run stays theirs)."""
    identity = _run_identity(cfg, dataset.dataset_fingerprint(labels))
    folder = run_dir(cfg, identity["dataset"])
    record = environment.read_json(folder / "run.json")
    stage = ("fine-tuned" if record.get("finished") else "stage 1 done" if record.get("frozen")
             else "new")
    print(f"Run {folder.name} ({stage}): {describe_settings(identity['config'])}.")
    if not environment.one_fold_of_a_protocol():
        environment.save_json(_current_run_file(), {"run": folder.name, **identity})
        print("Notebooks 03, 04 and 05 continue this run.")
    print(_other_runs_note(identity), end="")
    return folder, identity


def current_run(name: str | None = None, dataset: str | None = None) -> tuple[Path, dict]:
    """The run to continue and its identity: the fold a protocol runner passed (FBP_CONFIG), else
    the saved run called name, else the one notebook 02 set up last (never a guess such as the
    newest folder). Checks it was made on this dataset, when given, and says which run it is."""
    if environment.one_fold_of_a_protocol():
        cfg = settings.Config().for_environment()
        identity, folder = _run_identity(cfg, dataset), run_dir(cfg, dataset)
        how = "this fold of the protocol"
    else:  # a named run's record, or the identity notebook 02 wrote with the run's name
        chosen = environment.work_dir() / "runs" / name / "run.json" if name else _current_run_file()
        identity = environment.read_json(chosen)
        if not identity:
            saved = ", ".join(folder.name for folder, _ in saved_runs()) or "none yet"
            if name:
                folder = environment.work_dir() / "runs"
                raise RunNotFoundError(f"There is no run called {name!r} in {folder}. Saved "
                                       f"runs: {saved}. Set RUN_NAME to one of them, or to None.")
            raise RunNotFoundError(
                "No run chosen yet: run notebook 02 first (its parameters cell sets up the run that "
                f"notebooks 03, 04 and 05 continue), or set RUN_NAME to a saved run ({saved}).")
        folder = environment.work_dir() / "runs" / (name or identity.pop("run"))
        how = "named in RUN_NAME" if name else "set up by notebook 02"
    if identity.get("recipe") != settings.RECIPE_VERSION:
        raise RunMismatchError(
            f"Run {folder.name} was made by version {identity.get('recipe')} of the training recipe, and "
            f"this checkout's is {settings.RECIPE_VERSION}: its saved models do not fit this code. "
            "Run notebook 02 "
            "(and 03) to make the run again with this version, or set RUN_NAME to a run made by it.")
    if dataset and identity["dataset"] != dataset:
        raise RunMismatchError(
            f"Run {folder.name} was trained on dataset {identity['dataset']}, and this one is {dataset}: "
            "its test faces would not be this dataset's. Point FBP_DATA_DIR at the dataset it was "
            "trained on, or run notebook 02 on this one.")
    print(f"Run {folder.name} ({how}): {describe_settings(identity['config'])}.")
    return folder, identity


def describe_settings(config: dict) -> str:
    """A run's settings in words: its backbone (+ distribution, with label_distribution) and the other
    settings that differ from Config's defaults, the protocol aside (the run's name says it), e.g.
    'ConvNeXtTiny + distribution (head_lr 0.003)'."""
    defaults = asdict(settings.Config())
    recipe = config.get("backbone", defaults["backbone"])
    recipe += " + distribution" if config.get("label_distribution") else ""
    changed = [f"{k} {v!r}" for k, v in config.items()
               if k not in ("protocol", "backbone", "label_distribution") and v != defaults.get(k)]
    return f"{recipe} ({', '.join(changed)})" if changed else recipe


def describe_code(code: dict | None) -> str:
    """A commit in words, e.g. 'commit 3a7d21c (with local changes)'."""
    if not code or not code.get("commit"):
        return "code of unknown version (not a git checkout)"
    return f"commit {code['commit'][:7]}" + (" (with local changes)" if code.get("changed") else "")


def describe_run(folder: Path) -> str:
    """A run in a line: its settings and dataset, the stage it reached and the code that trained it,
    its test PC if notebook 04 evaluated its current model (else why not), and SMOKE RUN for one."""
    record, tuned = environment.read_json(Path(folder) / "run.json"), {}
    stage = "stage 1 only (frozen head)"
    if record.get("finished"):
        tuned = record["finetune"]
        stage = f"fine-tuned (best epoch {tuned['best_epoch']} of {record['config']['finetune_epochs']})"
    report, why_not = current_evaluation(folder)
    tested = (f"test PC {report['PC']:.3f} ({STAGE_NAMES[report['model']]} model, notebook 04)" if report
              else why_not)
    smoke = (" SMOKE RUN (synthetic data, untrained weights): its figures mean nothing."
             if record.get("smoke") else "")
    return (f"Run {Path(folder).name}: {describe_settings(record['config'])}, dataset {record['dataset']}; "
            f"{stage}, trained by {describe_code(tuned.get('code', record.get('code')))}; {tested}.{smoke}")


def trained_on(record: dict) -> str:
    """The runtime that fine-tuned a run, from its record: e.g. 'Tesla T4, TF 2.20.0', or 'stage 1 only'."""
    tuned = record.get("finetune")
    if not tuned:
        return "stage 1 only"
    return f"{tuned.get('runtime', 'unrecorded')}, TF {record['versions']['tensorflow']}"


def _other_runs_note(identity: dict, root: Path | None = None) -> str:
    """Names the saved runs of the same protocol made with other settings or data (kept, never
    reused), each with what differs, e.g. '  fold1-3fa2c1d0e4: head_lr 0.001 -> 0.002'."""
    def fields(record: dict) -> dict:  # a record's or identity's settings, recipe, smoke flag and dataset
        return {**record["config"], **{key: record.get(key) for key in ("recipe", "smoke", "dataset")}}

    new, lines = fields(identity), []
    for folder, record in saved_runs(root):
        old = fields(record)
        if old["protocol"] == new["protocol"] and record["fingerprint"] != identity["fingerprint"]:
            changed = ", ".join(f"{k} {old.get(k)!r} -> {v!r}" for k, v in new.items() if old.get(k) != v)
            lines.append(f"  {folder.name}: {changed}")
    if not lines:
        return ""
    return "Runs of this protocol with other settings or data (kept, not reused):\n" + "\n".join(lines)


def history_frame(history: dict) -> pd.DataFrame:
    """A Keras history as a table with a 1-based epoch column."""
    frame = pd.DataFrame(history)
    frame.insert(0, "epoch", np.arange(1, len(frame) + 1))
    return frame


def _versions() -> dict:
    """Versions that matter for reproducing a run."""
    return {"python": sys.version.split()[0], "tensorflow": tf.__version__,
            "keras": keras.__version__, "numpy": np.__version__}


@functools.lru_cache(maxsize=1)
def _code_version() -> dict:
    """The commit of the code this kernel imported and whether its files differ from it (None where
    unknown): recorded with every stage and backup, so a run says which code trained it. Asked of git
    (a checkout) or of pip's record (installed from GitHub, as in Colab) once per kernel."""
    if not environment.IN_CHECKOUT:
        try:
            installed = importlib.metadata.distribution("how-attractive")
            origin = json.loads(installed.read_text("direct_url.json"))
            return {"commit": origin["vcs_info"]["commit_id"], "changed": False}
        except (importlib.metadata.PackageNotFoundError, TypeError, KeyError, ValueError):
            return {"commit": None, "changed": None}

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(environment.CHECKOUT), *args], capture_output=True,
                              text=True, check=True).stdout.strip()
    try:
        return {"commit": git("rev-parse", "HEAD"), "changed": bool(git("status", "--porcelain", "-uno"))}
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "changed": None}


def record_stage_one(folder: Path, identity: dict, labels: pd.DataFrame, model: keras.Model,
                     parts: dict, test_features: np.ndarray, history: dict, frozen: dict,
                     head_seconds: float | None = None) -> dict:
    """Keep stage 1 as the cells above made and showed it: frozen.keras, history_head.csv, the
    percentile's reference, and run.json with the identity, sizes, framing, the stage's figures and
    its head's seconds per epoch on cached features (the tables' time for a run kept at stage 1).
    A stage 1 saved before with the same settings is replaced (a fine-tune made from it is kept)."""
    before = environment.read_json(folder / "run.json")
    folder.mkdir(parents=True, exist_ok=True)
    history_frame(history).to_csv(folder / "history_head.csv", index=False)
    environment.write_atomically(folder / "frozen.keras", model.save, empty_old=True)
    _save_reference(folder, "frozen", model, parts["test"], identity["config"]["image_size"], test_features)
    record = _update_run(folder, **identity, versions=_versions(), code=_code_version(),
                        framing=faces.framing_for(labels), frozen=frozen, head_seconds_per_epoch=head_seconds,
                        sizes={name: len(part) for name, part in parts.items()})
    if before.get("frozen"):
        tuned = before.get("finished") or (folder / "best.json").is_file()
        print(f"Stage 1 of run {folder.name} saved again: the figures above replace those saved before "
              "with the same settings." + (" The fine-tune of notebook 03 began from the stage 1 saved "
                                           "before (the same recipe): it is kept." if tuned else ""))
    return record


_MAP_SAMPLE = 32                # faces whose maps set the colour scale


def _save_reference(folder: Path, stage: str, model: keras.Model, frame: pd.DataFrame,
                   image_size: int, features: np.ndarray | None = None) -> Path:
    """Keep the stage's test predictions, true scores, mean features and map colour scale for 05 (None
    for a model without a contribution map: has_contribution_map)."""
    if features is None:
        images = dataset.make_dataset(frame, image_size, 64)
        features = network.feature_extractor(model).predict(images, verbose=0)
    features = np.asarray(features, dtype=float)
    kernel, bias = (keras.ops.convert_to_numpy(w).astype(float) for w in model.get_layer("score").weights)
    predicted = features @ kernel[:, 0] + bias[0]
    mean_features = features.mean(axis=0)
    maps = None
    if network.has_contribution_map(model):
        batches = dataset.make_dataset(frame.head(_MAP_SAMPLE), image_size, _MAP_SAMPLE)
        sample = np.concatenate([x for x, _ in batches])
        maps = network.contribution_maps(model, sample, mean_features)[1]
    return environment.save_json(Path(folder) / f"reference-{stage}.json", {
        "stage": stage, "set": f"the {len(frame):,} test faces of {Path(folder).name}",
        "files": frame["file"].tolist(), "true": frame["score"].round(4).tolist(),
        "predicted": predicted.round(4).tolist(), "mean_features": mean_features.tolist(),
        "map_scale": None if maps is None else float(np.percentile(np.abs(maps), 98))})  # of |cell|


def stage_one_record(folder: Path, identity: dict) -> dict:
    """The run's record once notebook 02 has done its stage 1 with these settings and data."""
    record = environment.read_json(folder / "run.json")
    if record.get("fingerprint") != identity["fingerprint"] or not record.get("frozen"):
        raise RunNotFoundError(
            f"Stage 1 of run {folder.name} is not done: run notebook 02 with the same settings "
            "(and data) first: its parameters cell is the one place to change them."
            f"\n{_other_runs_note(identity)}".rstrip())
    return record


def _save_in_turn(folder: Path, record: str, variables: list, **info) -> dict:
    """Save variables over the older of two files (e.g. state-a.npz and state-b.npz for state.json),
    then name it, with its size and info, in the JSON record, which keeps the save before as
    'previous': whenever a VM is lost, the newer whole file is named and the other is untouched."""
    folder, stem = Path(folder), Path(record).stem
    latest = environment.read_json(folder / record)  # stops first if Drive is not mounted
    name = f"{stem}-b.npz" if latest and latest["file"] == f"{stem}-a.npz" else f"{stem}-a.npz"
    folder.mkdir(parents=True, exist_ok=True)
    size = _save_arrays_in_place(folder / name, variables)
    previous = {k: v for k, v in latest.items() if k != "previous"} if latest else None
    entry = {**info, "file": name, "bytes": size, "previous": previous}
    environment.save_json(folder / record, entry)
    return entry


def _save_arrays_in_place(path: Path, variables: list) -> int:
    """Overwrite a file in place with the variables' values as an .npz (on Drive an overwrite
    leaves nothing in the bin, a delete or a replacing rename the whole old file); returns its
    size, once the file on disk has it."""
    with open(path, "wb") as file:
        np.savez(file, *[keras.ops.convert_to_numpy(v) for v in variables])
        file.flush()
        os.fsync(file.fileno())
        size = file.tell()
    if Path(path).stat().st_size != size:
        raise OSError(f"{path} holds {Path(path).stat().st_size:,} bytes after {size:,} were written: "
                      "is the disk (or your Drive) full?")
    return size


def _newest_whole(folder: Path, entry: dict | None) -> tuple[dict, list[np.ndarray]] | None:
    """The newest save of a record (its latest, then its previous) whose file is whole, with its
    arrays; a damaged or missing one is named and skipped."""
    while entry:
        path = Path(folder) / entry["file"]
        try:
            if entry.get("bytes") not in (None, path.stat().st_size):
                raise ValueError(f"{path.stat().st_size:,} bytes of {entry['bytes']:,}")
            with np.load(path) as saved:
                return entry, [saved[f"arr_{i}"] for i in range(len(saved.files))]
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as error:
            reason = "missing" if isinstance(error, FileNotFoundError) else f"damaged: {error}"
            print(f"The save of epoch {entry['epoch']} ({path.name}) is {reason} (a VM lost while "
                  "writing, or a full Drive?); it is skipped.")
        entry = entry.get("previous")
    return None


class EpochBackup(keras.callbacks.Callback):
    """After every epoch, the training state (weights and optimizer state) over the older of two
    files, then named in state.json: a lost VM resumes from the last whole epoch, and on Drive
    nothing goes to the bin. (Keras' BackupAndRestore deletes and renames, and keeps the optimizer
    twice under mixed precision.)"""

    def __init__(self, folder: Path):
        super().__init__()
        self.folder = Path(folder)

    def on_epoch_end(self, epoch, logs=None):
        _save_in_turn(self.folder, "state.json", [*self.model.weights, *self.model.optimizer.variables],
                     epoch=epoch + 1, precision=self.model.dtype_policy.name, code=_code_version())


class BestCheckpoint(keras.callbacks.Callback):
    """Keeps the weights (no optimizer state) of the epoch with the lowest value of a logged validation
    loss (selection_loss's), over the older of two files, then named with its epoch, that value and
    the logged row in best.json, so the record never names weights that were not saved whole."""

    def __init__(self, folder: Path, monitor: str):
        super().__init__()
        self.folder, self.monitor, self.best = Path(folder), monitor, None

    def on_train_begin(self, logs=None):
        self.best = environment.read_json(self.folder / "best.json")  # what is on disk now

    def improves(self, logs: dict) -> bool:
        """True when this epoch's validation loss beats the best so far."""
        return not self.best or logs[self.monitor] < self.best["value"]

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.improves(logs):
            self.best = _save_in_turn(self.folder, "best.json", self.model.weights, epoch=epoch + 1,
                                     monitor=self.monitor, value=float(logs[self.monitor]),
                                     logs={k: float(v) for k, v in logs.items()})


class EpochLog(keras.callbacks.CSVLogger):
    """Keras' CSVLogger, appending, with epochs counted from 1 as Keras' bar and the head's log count
    them, and each epoch's seconds (validation included)."""

    def __init__(self, path: Path):
        super().__init__(str(path), append=True)
        self.started = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch + 1, {**(logs or {}), "seconds": time.perf_counter() - self.started})


def restore_training(model: keras.Model, folder: Path, epochs: int, steps_per_epoch: int) -> int:
    """Load the last good training state of the run into the compiled model and return the epochs
    it has done: all of them for a finished run; else the newest whole backup (weights and optimizer);
    else the best weights with a fresh optimizer; else none (0). Says which, and when other code
    trained the run so far."""
    folder = Path(folder)
    if environment.read_json(folder / "run.json").get("finished"):
        print(f"Run {folder.name} is already fine-tuned with these settings and data.")
        return epochs
    model.optimizer.build(model.trainable_variables)  # its slots must exist before loading
    state = environment.read_json(folder / "backup" / "state.json")
    found = _newest_whole(folder / "backup", state)
    if found:
        saved, arrays = found
        if saved.get("precision", model.dtype_policy.name) != model.dtype_policy.name:
            raise RunMismatchError(
                f"Run {folder.name} was training in {saved['precision']} (on a GPU with tensor cores) "
                f"and this runtime computes in {model.dtype_policy.name}: its optimizer state does not fit. "
                "Connect to a T4 GPU (Runtime > Change runtime type) and run this notebook again.")
        model.set_weights(arrays[:len(model.weights)])
        for variable, value in zip(model.optimizer.variables, arrays[len(model.weights):], strict=True):
            variable.assign(value)
        print(f"Resuming the fine-tune of run {folder.name} after epoch {saved['epoch']} of {epochs}.")
    elif found := _newest_whole(folder, environment.read_json(folder / "best.json")):
        saved, arrays = found
        model.set_weights(arrays)
        model.optimizer.iterations.assign(saved["epoch"] * steps_per_epoch)  # the schedule goes on
        print(f"No whole backup of run {folder.name} is left: resuming after epoch {saved['epoch']}, "
              "whose best weights are whole, with a fresh optimizer state.")
    else:
        saved = {"epoch": 0, "code": environment.read_json(folder / "run.json").get("code")}
        if state:
            print(f"No whole backup of run {folder.name} is left: its fine-tune starts again from "
                  "stage 1's model.")
    recorded, now = saved.get("code"), _code_version()
    if recorded and recorded != now:  # other code trained the run so far: say so, and how to match it
        what = "its last epochs were" if saved["epoch"] else "its stage 1 was"
        match = (f" To continue with the same code, install commit {recorded['commit']} (`git checkout` it "
                 "in a checkout; in Colab, add @ and the commit to the set-up cell's address), restart the "
                 "kernel and run this notebook again." if recorded.get("commit") not in (None, now["commit"])
                 else "")
        print(f"Note: {what} trained by {describe_code(recorded)}; this checkout is {describe_code(now)}, "
              f"so training goes on with other code.{match}")
    return int(saved["epoch"])


@contextlib.contextmanager
def plain_out_of_memory(cfg: settings.Config):
    """Around training: the GPU running out of memory becomes a plain message naming a batch size
    to try, half this one (the epochs saved so far are kept)."""
    try:
        yield
    except (tf.errors.ResourceExhaustedError, tf.errors.InternalError) as error:
        if isinstance(error, tf.errors.InternalError) and "out of memory" not in str(error).lower():
            raise
        raise GPUMemoryError(
            f"The GPU ran out of memory fine-tuning {cfg.backbone} at {cfg.image_size} px in batches of "
            f"{cfg.batch_size}. Restart the session (Runtime > Restart session: TensorFlow keeps the "
            f"memory it took), set batch_size={max(1, cfg.batch_size // 2)} in notebook 02's parameters "
            "cell and run 02 (seconds: its features are cached), then this notebook. A new batch size makes "
            "a new run, which fine-tunes from the start; this run's saved epochs stay on Drive.") from None


def read_history(path: Path, best: dict | None = None) -> pd.DataFrame:
    """A training log (1-based epochs), keeping the last row of an epoch logged twice around a lost
    VM, except the row of the best checkpoint on disk (given as best.json), which is always kept."""
    frame = pd.read_csv(path)
    keep = ~frame.duplicated("epoch", keep="last")
    if best:
        saved = (frame["epoch"] == best["epoch"]) & np.isclose(frame[best["monitor"]], best["value"])
        if saved.any():
            keep = (keep & (frame["epoch"] != best["epoch"])) | (saved & ~saved.duplicated(keep="last"))
    return frame[keep].reset_index(drop=True)


def record_finetune(folder: Path, model: keras.Model, parts: dict, image_size: int,
                    precision: str) -> dict:
    """Finish the fine-tune once: the best epoch's weights in a copy of the (float32) model, saved
    as finetuned.keras with its reference and figures in run.json (with the runtime, the median
    seconds per epoch and the peak GPU memory of the kernel that finished it); then backups and
    checkpoints go (emptied first, so that Drive's bin keeps none of them)."""
    folder = Path(folder)
    record = environment.read_json(folder / "run.json")
    if not record.get("finished"):
        found = _newest_whole(folder, environment.read_json(folder / "best.json"))
        if found is None:
            raise RunNotFoundError(
                f"No whole copy of the best weights of run {folder.name} is left. Delete best.json "
                "and the backup folder in it, then run this notebook again: the fine-tune trains anew.")
        best, weights = found
        final = type(model).from_config(model.get_config())  # uncompiled: no optimizer state to save
        final.set_weights(weights)
        environment.write_atomically(folder / "finetuned.keras", final.save, empty_old=True)
        _save_reference(folder, "finetuned", final, parts["test"], image_size)
        val_pred = network.predict_scores(final, parts["val"], image_size)
        history = read_history(folder / "history_finetune.csv", best)
        record = _update_run(folder, finished=True, finetune={
            "epochs": len(history), "best_epoch": best["epoch"], "chosen_on": best["monitor"],
            "best_value": best["value"],
            "val": evaluation.regression_metrics(parts["val"]["score"], val_pred), "precision": precision,
            "code": _code_version(), "runtime": environment.accelerator(),
            "peak_gpu_gb": environment.peak_gpu_gb(),
            "seconds_per_epoch": float(history["seconds"].median())})
    leftovers = [*folder.glob("backup/*"), *folder.glob("best-*.npz"), *folder.glob("*.tmp.*")]
    for leftover in leftovers:  # finetuned.keras holds it all now
        environment.discard(leftover)
    if (folder / "backup").is_dir():
        (folder / "backup").rmdir()
    return record


def current_model_path(folder: Path) -> Path:
    """The file of a run's best model: fine-tuned if that stage is done, else the frozen-head one."""
    for name in ("finetuned.keras", "frozen.keras"):
        if (Path(folder) / name).is_file():
            return Path(folder) / name
    raise RunNotFoundError(f"No trained model in {folder}: run notebooks 02 and 03 first.")


def current_model(folder: Path) -> dict:
    """Which model a run has now (what 04 evaluates and 05 scores with): its stage and a hash of its file."""
    path = current_model_path(folder)
    return {"stage": path.stem, "file": path.name, "sha1": environment.file_hash(path, "sha1")[:12]}


STAGE_NAMES = {"frozen": "frozen-head", "finetuned": "fine-tuned"}


def final_stage(folder: Path) -> str:
    """The stage a run ends at: "finetuned", or "frozen" for a frozen-only backbone (fine_tunes)."""
    backbone = environment.read_json(Path(folder) / "run.json")["config"]["backbone"]
    return "finetuned" if settings.fine_tunes(backbone) else "frozen"


STAGE_ONE_ONLY = "(stage 1 only)"  # how the ablation and results tables name a run kept at stage 1


def stage_words(stage: str, seconds: float | None = None) -> str:
    """The stage a table's row was evaluated at: fine-tuned, or stage 1 only with its head's seconds
    per epoch on cached features (when notebook 02 recorded them)."""
    if stage == "finetuned":
        return STAGE_NAMES[stage]
    timing = "" if seconds is None else f", {seconds:.2g} s per epoch on cached features"
    return f"{STAGE_NAMES[stage]} {STAGE_ONE_ONLY}{timing}"


def current_evaluation(folder: Path) -> tuple[dict | None, str]:
    """Notebook 04's evaluation.json if it measured the run's current model, else None and why: none
    yet, or one made from an earlier model (a frozen head since fine-tuned: 04 must run again)."""
    report = environment.read_json(Path(folder) / "evaluation.json")
    if report and report.get("evaluated") == current_model(folder):
        return report, ""
    return None, ("notebook 04 evaluated an earlier model of this run, not its current one: run 04 again"
                  if report else "not evaluated yet (notebook 04 does it)")


def out_of_fold_path(folder: Path) -> Path | None:
    """Where the 5-fold protocol keeps, once for its five folds, the out-of-fold reference of a fold's
    run (beside the runs, named by the settings the folds share); None for a run of another protocol."""
    record = environment.read_json(Path(folder) / "run.json")
    if not record["config"]["protocol"].startswith("fold"):
        return None
    shared = {**{k: record[k] for k in ("dataset", "recipe", "smoke")},
              "config": {**record["config"], "protocol": "5-fold"}}
    return Path(folder).parent / f"reference-5fold-{_fingerprint_of(shared)}.json"

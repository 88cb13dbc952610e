"""A run (Run): its folder, named by its settings' fingerprint, its identity, stage, models,
evaluation and reference; each stage's saves, and resuming training after a lost VM."""

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
from dataclasses import asdict, dataclass, replace
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
    if cfg.seed != settings.VALIDATION_SEED:  # its validation faces are not those of its own seed
        identity["val_seed"] = settings.VALIDATION_SEED
    return {"fingerprint": _fingerprint_of(identity), **identity}


def _fingerprint_of(identity: dict) -> str:
    """A short hash of a run's identity (settings, dataset, recipe, smoke)."""
    return hashlib.sha1(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:10]


def _run_dir(cfg: settings.Config, dataset: str, root: Path | None = None) -> Path:
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


def open_run(cfg: settings.Config, labels: pd.DataFrame) -> Run:
    """This run; says its stage, names the saved runs made with other settings or data (kept, never
    reused), and makes it the run that 03 to 06 continue (not when a protocol runner runs this fold:
    the user's own run stays theirs)."""
    run = Run.of(cfg, dataset.dataset_fingerprint(labels))
    print(f"Run {run.name} ({run.stage}): {describe_settings(run.identity['config'])}.")
    if not environment.one_fold_of_a_protocol():
        environment.save_json(_current_run_file(), {"run": run.name, **run.identity})
        print("Notebooks 03 to 06 continue this run.")
    print(_other_runs_note(run.identity), end="")
    return run


def current_run(name: str | None = None, dataset: str | None = None) -> Run:
    """The run to continue: the fold a protocol runner passed (FBP_CONFIG), else the saved run called
    name, else the one notebook 02 set up last (never a guess such as the newest folder). Checks it
    was made by this recipe version and on this dataset, when given, and says which run it is."""
    if environment.one_fold_of_a_protocol():
        run, how = Run.of(settings.Config().for_environment(), dataset), "this fold of the protocol"
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
                f"notebooks 03 to 06 continue), or set RUN_NAME to a saved run ({saved}).")
        run = Run(environment.work_dir() / "runs" / (name or identity["run"]), _identity_in(identity))
        how = "named in RUN_NAME" if name else "set up by notebook 02"
    if run.identity.get("recipe") != settings.RECIPE_VERSION:
        raise RunMismatchError(
            f"Run {run.name} was made by version {run.identity.get('recipe')} of the training recipe, and "
            f"this checkout's is {settings.RECIPE_VERSION}: its saved models do not fit this code. "
            "Run notebook 02 "
            "(and 03) to make the run again with this version, or set RUN_NAME to a run made by it.")
    if dataset and run.identity["dataset"] != dataset:
        raise RunMismatchError(
            f"Run {run.name} was trained on dataset {run.identity['dataset']}, and this one is {dataset}: "
            "its test faces would not be this dataset's. Point FBP_DATA_DIR at the dataset it was "
            "trained on, or run notebook 02 on this one.")
    print(f"Run {run.name} ({how}): {describe_settings(run.identity['config'])}.")
    return run


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



MODEL_STAGES = {"frozen": "frozen head", "finetuned": "fine-tuned"}  # a model file's stem: its stage
_STAGES = ("set up", *MODEL_STAGES.values(), "evaluated")  # a run's stages in order, in every message's words
STAGE_ONE_ONLY = "(stage 1 only)"  # how the ablation and results tables name a run kept at stage 1
_IDENTITY = ("fingerprint", "config", "dataset", "recipe", "smoke", "val_seed")  # run.json's identity fields


def _identity_in(record: dict) -> dict:
    """The identity fields of a run.json (or of the record notebook 02 keeps of the current run)."""
    return {key: record[key] for key in _IDENTITY if key in record}


@functools.lru_cache(maxsize=64)
def _model_hash(path: Path, version: tuple[int, int, int]) -> str:
    """A model file's short hash, computed once per kernel for each version of the file (its inode,
    modification time and size: a model is saved by renaming a new file into place), as every stage,
    description and bundle asks for it."""
    return environment.file_hash(path, "sha1")[:12]


def stage_words(stage: str, seconds: float | None = None) -> str:
    """The model stage a table's row was evaluated at: fine-tuned, or the frozen head, stage 1 only, with
    its head's seconds per epoch on cached features (when notebook 02 recorded them)."""
    if stage == "finetuned":
        return MODEL_STAGES[stage]
    timing = "" if seconds is None else f", {seconds:.2g} s per epoch on cached features"
    return f"{MODEL_STAGES[stage]} {STAGE_ONE_ONLY}{timing}"


@dataclass
class Reference:
    """Out-of-sample predictions for dataset faces beside their raters' scores, and the average face."""

    true: np.ndarray
    predicted: np.ndarray
    mean_features: np.ndarray
    map_scale: float | None    # colour scale of the contribution maps, in score points (None: no map)
    source: str                # which faces, which predictions, in words


@dataclass(frozen=True)
class Run:
    """A run of the recipe: its folder (runs/<protocol>-<fingerprint>) and its identity (settings,
    dataset, recipe version, smoke or not, and their fingerprint). What it has done is read from its
    files whenever asked, so a Run is never out of date after a cell or a runner trained it."""

    folder: Path
    identity: dict

    @classmethod
    def of(cls, cfg: settings.Config, dataset: str, root: Path | None = None) -> Run:
        """The run these settings make on this dataset (its folder may not exist yet)."""
        return cls(_run_dir(cfg, dataset, root), _run_identity(cfg, dataset))

    @classmethod
    def at(cls, folder: Path) -> Run:
        """The run saved in a folder, its identity read from its run.json."""
        record = environment.read_json(Path(folder) / "run.json")
        if not record:
            raise RunNotFoundError(f"No run is saved in {folder}: it has no run.json.")
        return cls(Path(folder), _identity_in(record))

    @property
    def name(self) -> str:
        """Its folder's name, e.g. fold1-3fa2c1d0e4."""
        return self.folder.name

    @property
    def config(self) -> settings.Config:
        """Its settings."""
        return settings.Config(**self.identity["config"])

    @property
    def val_seed(self) -> int:
        """The seed that carved its validation faces: VALIDATION_SEED, or its own seed for a run made
        before that existed."""
        return self.identity.get("val_seed", self.identity["config"]["seed"])

    @property
    def record(self) -> dict:
        """Its run.json: the identity, versions, framing, sizes and each stage's figures."""
        return environment.read_json(self.folder / "run.json")

    def models(self) -> dict[str, Path]:
        """Its trained models' files by stage ('frozen', then 'finetuned')."""
        return {stage: path for stage in MODEL_STAGES if (path := self.folder / f"{stage}.keras").is_file()}

    def model_path(self) -> Path:
        """The file of its latest model: fine-tuned once stage 2 is done, else the frozen-head one."""
        models = self.models()
        if not models:
            raise RunNotFoundError(f"Run {self.name} has no trained model yet: run notebook 02 first.")
        return list(models.values())[-1]

    @property
    def final(self) -> str:
        """The model stage the run ends at: 'finetuned', or 'frozen' for a frozen-only backbone."""
        return "finetuned" if settings.fine_tunes(self.identity["config"]["backbone"]) else "frozen"

    def current_model(self) -> dict:
        """Its latest model (what 04 evaluates and 05 scores with): its stage, file and a hash of it."""
        path = self.model_path()
        saved = path.stat()  # a file saved again is another version, hashed again
        return {"stage": path.stem, "file": path.name,
                "sha1": _model_hash(path, (saved.st_ino, saved.st_mtime_ns, saved.st_size))}

    def evaluation(self) -> dict | None:
        """Notebook 04's evaluation.json if it measured the run's latest model, else None (see
        why_not_evaluated): a frozen head since fine-tuned must be evaluated again."""
        report = environment.read_json(self.folder / "evaluation.json")
        measured = report and self.models() and report.get("evaluated") == self.current_model()
        return report if measured else None

    def why_not_evaluated(self) -> str:
        """Why evaluation() is None: never evaluated, or evaluated for an earlier model."""
        if (self.folder / "evaluation.json").is_file():
            return "notebook 04 evaluated an earlier model of this run, not its current one: run 04 again"
        return "not evaluated yet (notebook 04 does it)"

    @property
    def stage(self) -> str:
        """How far the run has come, in _STAGES' words."""
        if self.evaluation():
            return _STAGES[-1]
        models = self.models()
        return MODEL_STAGES[list(models)[-1]] if models else _STAGES[0]

    def describe(self) -> str:
        """The run in a line: its settings and dataset, its latest model and the code that trained it,
        its test PC if notebook 04 evaluated that model (else why not), and SMOKE RUN for one."""
        record, tuned = self.record, {}
        trained = MODEL_STAGES[self.model_path().stem] if self.models() else "no model trained yet"
        if record.get("finished"):
            tuned = record["finetune"]
            trained += f" (best epoch {tuned['best_epoch']} of {record['config']['finetune_epochs']})"
        report = self.evaluation()
        tested = (f"test PC {report['PC']:.3f} ({MODEL_STAGES[report['model']]} model, notebook 04)" if report
                  else self.why_not_evaluated())
        smoke = (" SMOKE RUN (synthetic data, untrained weights): its figures mean nothing."
                 if self.identity.get("smoke") else "")
        return (f"Run {self.name}: {describe_settings(self.identity['config'])}, dataset "
                f"{self.identity['dataset']}; {trained}, trained by "
                f"{describe_code(tuned.get('code', record.get('code')))}; {tested}.{smoke}")

    def stage_one(self) -> dict:
        """Its record, once notebook 02 has done its stage 1 with these settings and data."""
        record = self.record
        if record.get("fingerprint") != self.identity["fingerprint"] or not record.get("frozen"):
            raise RunNotFoundError(
                f"Stage 1 of run {self.name} is not done: run notebook 02 with the same settings "
                "(and data) first: its parameters cell is the one place to change them."
                f"\n{_other_runs_note(self.identity)}".rstrip())
        return record

    def save_stage_one(self, model: keras.Model, history: dict, frozen: dict, parts: dict,
                       labels: pd.DataFrame, test_features: np.ndarray) -> dict:
        """Keep stage 1 as notebook 02's cells made and showed it: frozen.keras, history_head.csv, the
        percentile's reference, and run.json with the identity, versions, sizes, the dataset's framing
        and the stage's figures (frozen). A stage 1 saved before with the same settings is replaced (a
        fine-tune made from it is kept)."""
        before, folder = self.record, self.folder
        folder.mkdir(parents=True, exist_ok=True)
        history_frame(history).to_csv(folder / "history_head.csv", index=False)
        environment.write_atomically(folder / "frozen.keras", model.save, empty_old=True)
        _save_reference(folder, "frozen", model, parts["test"], self.config.image_size, test_features)
        record = _update_run(folder, **self.identity, versions=_versions(), code=_code_version(),
                             framing=faces.framing_for(labels), frozen=frozen,
                             sizes={name: len(part) for name, part in parts.items()})
        if before.get("frozen"):
            tuned = before.get("finished") or (folder / "best.json").is_file()
            print(f"Stage 1 of run {self.name} saved again: the figures above replace those saved before "
                  "with the same settings." + (" The fine-tune of notebook 03 began from the stage 1 saved "
                                               "before (the same recipe): it is kept." if tuned else ""))
        return record

    def save_finetune(self, model: keras.Model, parts: dict, precision: str) -> dict:
        """Finish the fine-tune once: the best epoch's weights in a copy of the (float32) model, saved
        as finetuned.keras with its reference and figures in run.json (with the runtime, the median
        seconds per epoch and the peak GPU memory of the kernel that finished it); then backups and
        checkpoints go (emptied first, so that Drive's bin keeps none of them)."""
        folder, record = self.folder, self.record
        if not record.get("finished"):
            found = _newest_whole(folder, environment.read_json(folder / "best.json"))
            if found is None:
                raise RunNotFoundError(
                    f"No whole copy of the best weights of run {self.name} is left. Delete best.json and "
                    "the backup folder in it, then run this notebook again: the fine-tune trains anew.")
            best, weights = found
            final = type(model).from_config(model.get_config())  # uncompiled: no optimizer state to save
            final.set_weights(weights)
            environment.write_atomically(folder / "finetuned.keras", final.save, empty_old=True)
            _save_reference(folder, "finetuned", final, parts["test"], self.config.image_size)
            val_pred = network.predict_scores(final, parts["val"], self.config.image_size)
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

    def save_evaluation(self, predictions: pd.DataFrame, model: str, intervals: dict, groups: pd.DataFrame,
                        gaps: pd.DataFrame, human: dict | None) -> dict:
        """Keep notebook 04's evaluation of the model stage `model` ('frozen' or 'finetuned'):
        evaluation.json, the one layout every reader of it expects (its figures with their 95 %
        intervals, each stage's, the groups and their gaps, the raters' agreement, and which model file
        it measured), and predictions.csv."""
        figures = intervals[model]  # {metric: (value, low, high)}, from bootstrap_metrics
        identity = self.identity
        report = {"run": self.name, "fingerprint": identity["fingerprint"], "smoke": identity.get("smoke"),
                  "protocol": identity["config"]["protocol"], "model": model, "n": len(predictions),
                  "evaluated": self.current_model(),  # its file: a later model is evaluated anew
                  **{name: value for name, (value, low, high) in figures.items()},
                  "ci95": {name: [low, high] for name, (value, low, high) in figures.items()},
                  "stages": {stage: {name: values[0] for name, values in metrics.items()}
                             for stage, metrics in intervals.items()},
                  "groups": groups.drop(columns="who").to_dict(orient="index"),
                  "group_gaps": gaps.drop(columns="who").to_dict(orient="index"), "human": human}
        environment.save_json(self.folder / "evaluation.json", report)
        predictions.drop(columns="path").to_csv(self.folder / "predictions.csv", index=False)
        return report

    def reference(self, out_of_fold: bool = True) -> Reference:
        """What places its scores (notebook 05's percentile): the 5-fold protocol's out-of-fold
        predictions if done (and wanted), else its latest model's own test predictions."""
        stage = self.model_path().stem
        path = self.folder / f"reference-{stage}.json"
        if not path.is_file():
            raise RunNotFoundError(f"{path.name} is missing in {self.folder}: the run was trained by an "
                                   "older version of this project. Train it again with notebooks 02 and 03.")
        own = json.loads(path.read_text())
        joined = self.out_of_fold_path() if stage == self.final and out_of_fold else None
        scores = (joined and environment.read_json(joined)) or own
        source = (scores["set"] if scores is not own
                  else f"the {MODEL_STAGES[stage]} model's predictions for {own['set']}")
        return Reference(np.asarray(scores["true"], float), np.asarray(scores["predicted"], float),
                         np.asarray(own["mean_features"], float), own["map_scale"], source)

    def out_of_fold_path(self) -> Path | None:
        """Where the 5-fold protocol keeps, once for its five folds, the out-of-fold reference of a
        fold's run (beside the runs, named by the settings the folds share); None for a 60/40 run."""
        if not self.identity["config"]["protocol"].startswith("fold"):
            return None
        kept = ("dataset", "recipe", "smoke", "val_seed")
        shared = {**{k: self.identity[k] for k in kept if k in self.identity},
                  "config": {**self.identity["config"], "protocol": "5-fold"}}
        return self.folder.parent / f"reference-5fold-{_fingerprint_of(shared)}.json"

    def folds(self) -> list[Run]:
        """The runs of the 5-fold protocol made with this run's settings, once that protocol is done
        (its out-of-fold reference written); else []."""
        joined = self.out_of_fold_path()
        if joined is None or not joined.is_file():
            return []
        work = self.folder.parents[1]  # the work folder that holds runs/
        return [Run.of(replace(self.config, protocol=fold), self.identity["dataset"], work)
                for fold in dataset.FOLDS]

    def scoring_folds(self) -> list[Run]:
        """The fold runs whose models notebook 05 scores with: folds() once every one has reached its
        final stage (fine-tuned, or stage 1 for a frozen-only backbone), else []."""
        folds = self.folds()
        return folds if all(self.final in fold.models() for fold in folds) else []

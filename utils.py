"""Shared plumbing of the SCUT-FBP5500 notebook series.

The notebooks hold the recipe: the Keras calls that build, train and evaluate the model, the
analysis and the steps a photo goes through. This module holds what several notebooks share or a
reader need not see, in sections: errors (every one a user can fix), environment (Colab, Drive,
work folder, files written whole), data (fetching, validating, ratings, tf.data), model
(registered layers, the keras-hub presets, precision, feature cache), runs (settings, records, a
run in words, each stage's saves, checkpoints that survive a lost VM, the protocol and ablation
runners), evaluation (bootstrap, group gaps, folds, the ablation, published results), faces
(detection, alignment, reference, scoring, uploads and webcam). The smoke runs' synthetic dataset is made by
data/synthetic.py, which stands alone: this module imports it, never the reverse.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import warnings
import zipfile
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass, replace
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ chatter out of notebooks

import keras
import keras_hub  # registers its models for loading a saved one; about 0.5 s after Keras
import numpy as np
import pandas as pd
import tensorflow as tf

for _gpu in tf.config.list_physical_devices("GPU"):  # take GPU memory as needed, so that 04 and a
    tf.config.experimental.set_memory_growth(_gpu, True)  # fold's notebooks it runs share one GPU

# ---------------------------------------------------------------------------------------
# Errors: each a problem the user can fix, shown as its message alone (show_errors_plainly)
# ---------------------------------------------------------------------------------------


class DriveNotMountedError(Exception):
    """The work folder is on Google Drive, which is not mounted now."""


class NoSpaceError(Exception):
    """The work folder's disk (in Colab, your Drive) has no room for what a run will write."""


class DatasetError(Exception):
    """Base of every problem with the dataset that the user can fix."""


class DatasetLayoutError(DatasetError):
    """The folder is not laid out like the SCUT-FBP5500 release."""


class LabelFormatError(DatasetError):
    """A label line is not '<file name> <score>'."""


class ScoreRangeError(DatasetError):
    """A score lies outside the rating scale [1, 5]."""


class MissingImagesError(DatasetError):
    """Images named in the label files are not on disk."""


class CorruptImageError(DatasetError):
    """An image file cannot be decoded."""


class DownloadRefusedError(DatasetError):
    """Google Drive did not hand over the zip."""


class BadZipError(DatasetError):
    """The zip is broken or would write outside its target folder."""


class SettingError(ValueError):
    """A setting of Config that the recipe cannot use."""


class RunNotFoundError(FileNotFoundError):
    """A notebook needs a run, or a stage, model, file or evaluation of one, that is not there (yet)."""


class RunMismatchError(Exception):
    """A run does not fit its use: another recipe version, dataset or precision, other faces or stages."""


class FrozenOnlyError(Exception):
    """A backbone that notebook 03 does not fine-tune: its run stays at stage 1."""


class GPUMemoryError(Exception):
    """The GPU ran out of memory while training."""


class ConstantPredictionError(ValueError):
    """The model predicts one value for every face, so PC is undefined."""


class FramingError(Exception):
    """The dataset's face framing could not be measured."""


class PhotoError(Exception):
    """A photo that cannot be scored, with the reason in words."""


class BundleError(Exception):
    """A bundle (a trained run in one .zip) that cannot be made, fetched, opened or published."""


USER_ERRORS = (DriveNotMountedError, NoSpaceError, DatasetError, SettingError, RunNotFoundError,
               RunMismatchError, FrozenOnlyError, GPUMemoryError, ConstantPredictionError, FramingError,
               PhotoError, BundleError)

# ---------------------------------------------------------------------------------------
# Environment: Colab or local, smoke mode, where work is kept and how a file is written whole
# ---------------------------------------------------------------------------------------

REPO_DIR = Path(__file__).resolve().parent
LOCAL_DATA_DIR = REPO_DIR / "data"
COLAB_CONTENT = Path(os.environ.get("FBP_CONTENT_DIR", "/content"))  # Colab's working folder (tests move it)
DRIVE_MOUNT = COLAB_CONTENT / "drive"
DRIVE_HOME = DRIVE_MOUNT / "MyDrive"
DRIVE_PROJECT = DRIVE_HOME / "scut-fbp5500"


def in_colab() -> bool:
    """True inside a Google Colab runtime."""
    return "google.colab" in sys.modules


def smoke_mode() -> bool:
    """True when FBP_SMOKE=1 asks for a tiny, offline run."""
    return os.environ.get("FBP_SMOKE", "").strip() == "1"


def one_fold_of_a_protocol() -> bool:
    """True in a notebook that a protocol runner is running for one fold (it passes FBP_CONFIG)."""
    return bool(os.environ.get("FBP_CONFIG"))


def mount_drive() -> Path | None:
    """In Colab, mount Google Drive (asks the user once); elsewhere do nothing."""
    if not in_colab() or os.environ.get("FBP_WORK_DIR"):
        return None
    from google.colab import drive  # type: ignore[import-not-found]

    drive.mount(str(DRIVE_MOUNT))
    return DRIVE_HOME


def flush_drive() -> None:
    """In Colab, push every pending write to Drive (this unmounts it; later cells remount); not in
    a notebook that a protocol runner started with FBP_WORK_DIR, whose parent still uses Drive."""
    if in_colab() and DRIVE_HOME.is_dir() and not os.environ.get("FBP_WORK_DIR"):
        from google.colab import drive  # type: ignore[import-not-found]

        drive.flush_and_unmount()
        print("Drive flushed: every checkpoint and report is on your Drive.")


def work_home() -> Path:
    """Where work is kept: FBP_WORK_DIR, else Drive in Colab, else ./work."""
    if os.environ.get("FBP_WORK_DIR"):
        return Path(os.environ["FBP_WORK_DIR"]).expanduser()
    if in_colab() and DRIVE_HOME.is_dir():
        return DRIVE_PROJECT
    if in_colab():
        print(f"Drive is not mounted: work goes to {COLAB_CONTENT / 'scut-fbp5500-work'} and is lost "
              "with the VM. Run the 'mount Drive' cell to keep it.")
        return COLAB_CONTENT / "scut-fbp5500-work"
    return REPO_DIR / "work"


def work_dir() -> Path:
    """Folder for checkpoints, caches and reports: work_home(), its smoke/ sub-folder in smoke mode."""
    path = work_home() / "smoke" if smoke_mode() else work_home()  # smoke runs share nothing with real ones
    path.mkdir(parents=True, exist_ok=True)
    return path


def check_drive(path: Path) -> None:
    """Stop, with what to do, before reading or writing work on Google Drive while it is not mounted
    (the last cell of a notebook flushes and unmounts it): files would go to the VM's disk and be lost."""
    if in_colab() and Path(path).is_relative_to(DRIVE_MOUNT) and not DRIVE_HOME.is_dir():
        raise DriveNotMountedError(
            f"Google Drive is not mounted (the notebook's last cell flushed and unmounted it), so {path} "
            "cannot be read or written. Run the cell with `utils.mount_drive()` near the top again, "
            "then this cell.")


def write_atomically(path: Path, write: Callable[[Path], object], empty_old: bool = False) -> Path:
    """Write a file under a temporary name beside it (same suffix), then rename it into place: a lost
    VM never leaves half a file. empty_old empties the file it replaces first (a replaced file goes
    to Drive's bin whole, and counts there for 30 days)."""
    path = Path(path)
    check_drive(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.stem}.tmp{path.suffix}")
    write(temporary)
    if empty_old and path.exists():
        discard(path)
    temporary.replace(path)
    return path


def discard(path: Path) -> None:
    """Delete a file after emptying it: Google Drive keeps a deleted file in its bin, where it
    counts against the quota for 30 days; emptied first, it keeps nothing there."""
    os.truncate(path, 0)
    Path(path).unlink()


def file_hash(path: Path, algorithm: str = "sha256") -> str:
    """The hex digest of a file's bytes, read in blocks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_json(path: Path, data: dict) -> Path:
    """Write a JSON report atomically (numbers from numpy become plain floats)."""
    return write_atomically(path, lambda file: file.write_text(json.dumps(data, indent=1, default=float)))


def read_json(path: Path) -> dict:
    """A JSON record such as a run's run.json, {} if there is none (stopping first, with what to do,
    if it would be on Google Drive while Drive is not mounted)."""
    check_drive(path)
    return json.loads(Path(path).read_text()) if Path(path).is_file() else {}


def show_errors_plainly() -> None:
    """In a notebook, show the project's own errors (bad data, photos, missing runs) as their
    message alone: they say what is wrong and what to do, and a traceback would bury that.
    Any handler already installed (Colab's hint on a failed import) keeps its errors."""
    from IPython import get_ipython

    shell = get_ipython()
    if shell is None or getattr(shell, "fbp_plain_errors", False):
        return
    handled, previous = tuple(shell.custom_exceptions), shell.CustomTB

    def plain(shell, etype, value, tb, tb_offset=None):
        if not issubclass(etype, USER_ERRORS):
            return previous(etype, value, tb, tb_offset)
        message = [f"{etype.__name__}: {value}"]
        shell._showtraceback(etype, value, message)  # IPython ignores a custom handler's return
        return message

    shell.set_custom_exc(handled + USER_ERRORS, plain)
    shell.fbp_plain_errors = True


def accelerator() -> str:
    """The GPU's name (e.g. 'Tesla T4'), or 'CPU' without one."""
    gpus = tf.config.list_physical_devices("GPU")
    return tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU") if gpus else "CPU"


def peak_gpu_gb() -> float | None:
    """The most GPU memory TensorFlow has held in this kernel so far, in GB; None without a GPU."""
    if not tf.config.list_physical_devices("GPU"):
        return None
    return tf.config.experimental.get_memory_info("GPU:0")["peak"] / 1e9


def describe_runtime() -> str:
    """One line on TensorFlow, Keras and the accelerator, with a hint when there is no GPU."""
    line, device = f"TensorFlow {tf.__version__}, Keras {keras.__version__}, ", accelerator()
    if device != "CPU":
        return line + f"GPU: {device}"
    hint = ("Runtime > Change runtime type > T4 GPU" if in_colab()
            else "training the full model on a CPU takes many hours; use Colab's free T4")
    return line + f"no GPU found ({hint})."


# ---------------------------------------------------------------------------------------
# Data: the SCUT-FBP5500 release, its labels and protocols, validation, ratings, tf.data
# ---------------------------------------------------------------------------------------

GDRIVE_FILE_ID = "1w0TorBfTIqbquQVd6k3h_77ypnrvfGwf"
ZIP_NAME = "SCUT-FBP5500_v2.1.zip"
DATASET_DIRNAME = "SCUT-FBP5500_v2"
GROUPS = ("AF", "AM", "CF", "CM")
GROUP_NAMES = {"AF": "Asian female", "AM": "Asian male",
               "CF": "Caucasian female", "CM": "Caucasian male"}
OLD_PREFIXES = {"fty": "AF", "mty": "AM", "ftw": "CF", "mtw": "CM"}
FOLDS = ("fold1", "fold2", "fold3", "fold4", "fold5")  # the 5-fold protocol's folds
PROTOCOLS = (*FOLDS, "60/40")
NAME_PATTERN = re.compile(r"^(AF|AM|CF|CM|fty|mty|ftw|mtw)(\d+)\.jpg$")


def own_copy_help() -> str:
    """Where to put a copy of the zip that the user got by other means, for this place only."""
    if in_colab():
        return (f"Download the zip yourself (or from the dataset's Baidu mirror) and upload it to "
                f"{COLAB_CONTENT / ZIP_NAME} (Files pane, left) or to 'My Drive' as {ZIP_NAME}")
    return (f"Download the zip yourself (or from the dataset's Baidu mirror) and put it in "
            f"{LOCAL_DATA_DIR / ZIP_NAME}")


def refused_download_help(reason: str) -> str:
    """The message shown when Google Drive will not serve the zip, with the two ways out."""
    return (
        f"Google Drive did not hand over the SCUT-FBP5500 zip ({reason}).\n"
        "Busy shared files are often refused ('too many users have viewed or downloaded "
        "this file'). Two ways out:\n"
        f"  1. Open https://drive.google.com/file/d/{GDRIVE_FILE_ID}/view, add the file to "
        f"your own Drive (right-click > Make a copy) and name it {ZIP_NAME} in 'My Drive'"
        f"{'' if in_colab() else f', download it from there into {LOCAL_DATA_DIR}'}; "
        "then re-run this cell: the notebook finds it there.\n"
        f"  2. {own_copy_help()}; then re-run this cell."
    )


def no_connection_help() -> str:
    """The message shown when Google Drive cannot be reached at all."""
    return ("No connection: Google Drive (drive.google.com) could not be reached, so the "
            "SCUT-FBP5500 zip cannot be downloaded. Check that this machine is online and re-run "
            f"this cell. Without a connection: {own_copy_help()}; then re-run this cell.")


def is_connection_error(error: BaseException) -> bool:
    """True when an error (or one it was raised from) means the network could not be reached."""
    import requests

    while error is not None:
        if isinstance(error, requests.ConnectionError | requests.Timeout | ConnectionError):
            return True
        error = error.__cause__ or error.__context__
    return False


def is_html_file(path: Path) -> bool:
    """True when a downloaded file is a web page, not a zip."""
    head = Path(path).read_bytes()[:2048].lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html")) or b"<html" in head


def check_zip(path: Path) -> None:
    """Raise if the file is not a whole, readable zip."""
    path = Path(path)
    if is_html_file(path):
        raise DownloadRefusedError(refused_download_help(f"{path.name} is a web page, not a zip"))
    if not zipfile.is_zipfile(path):
        raise BadZipError(f"{path} is not a zip file (truncated download?). Delete it and re-run.")
    with zipfile.ZipFile(path) as archive:
        broken = archive.testzip()
    if broken:
        raise BadZipError(f"{path} is damaged ({broken} fails its checksum). Delete it and re-run.")


def safe_extract(zip_path: Path, target: Path) -> Path:
    """Extract a zip into target, all or nothing: into a staging folder, then moved into place
    (zipfile itself keeps members inside: it drops '..' and leading '/' from their names)."""
    zip_path, target = Path(zip_path), Path(target)
    check_zip(zip_path)
    target.mkdir(parents=True, exist_ok=True)
    staging = target / f".partial-{zip_path.stem}"
    shutil.rmtree(staging, ignore_errors=True)
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(staging)
    for item in staging.iterdir():
        destination = target / item.name
        if destination.is_dir():
            shutil.rmtree(destination)
        item.replace(destination)
    staging.rmdir()
    return target


def download_zip(destination: Path, file_id: str = GDRIVE_FILE_ID) -> Path:
    """Download the release zip from Google Drive with a progress bar (gdown writes a temporary
    file and moves it into place when whole; a cut download resumes); check it is a zip."""
    import gdown

    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        gdown.download(url=f"https://drive.google.com/uc?id={file_id}", output=str(destination), quiet=False,
                       resume=True)
    except Exception as error:  # gdown raises several types for quota, network and HTML pages
        if is_connection_error(error):
            raise DownloadRefusedError(no_connection_help()) from None
        raise DownloadRefusedError(refused_download_help(str(error).splitlines()[0])) from error
    if not destination.is_file():
        raise DownloadRefusedError(refused_download_help("nothing was written"))
    try:
        check_zip(destination)
    except DatasetError:
        destination.unlink()
        raise
    return destination


def zip_candidates() -> list[Path]:
    """Places where a copy of the release zip may already be: the cache, the user's Drive, uploads."""
    places = [work_dir() / ZIP_NAME, DRIVE_HOME / ZIP_NAME, COLAB_CONTENT / ZIP_NAME,
              LOCAL_DATA_DIR / ZIP_NAME]
    return list(dict.fromkeys(places))


def find_dataset_root(path: Path) -> Path:
    """The folder holding Images/ and train_test_files/: path itself or one level below."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise DatasetLayoutError(f"{path} does not exist or is not a folder. Point FBP_DATA_DIR "
                                 f"at the extracted {DATASET_DIRNAME} folder.")
    for candidate in [path, *sorted(p for p in path.iterdir() if p.is_dir())]:
        if (candidate / "Images").is_dir() and (candidate / "train_test_files").is_dir():
            return candidate
    found = ", ".join(sorted(p.name for p in path.iterdir())[:10]) or "nothing"
    raise DatasetLayoutError(
        f"{path} is not laid out like SCUT-FBP5500: expected Images/ and train_test_files/ "
        f"in it or in a folder inside it, found {found}. Point FBP_DATA_DIR at the extracted "
        f"{DATASET_DIRNAME} folder.")


def extracted_dataset(parent: Path) -> Path | None:
    """The release extracted below parent, or None; a folder that lacks label files or images (an
    unzip by hand cut short) is removed, to be extracted again."""
    folder = Path(parent) / DATASET_DIRNAME
    if not folder.is_dir():
        return None
    try:
        root = find_dataset_root(folder)
        all_labels(root)
    except DatasetError:
        print(f"{folder} is not completely extracted (an interrupted unzip?): extracting it again.")
        shutil.rmtree(folder)
        return None
    return root


def find_or_fetch_dataset() -> Path:
    """Locate the dataset: FBP_DATA_DIR, smoke data, a local copy, a cached zip, or download it."""
    if os.environ.get("FBP_DATA_DIR"):
        return find_dataset_root(Path(os.environ["FBP_DATA_DIR"]))
    if smoke_mode():
        from data.synthetic import make_synthetic_dataset

        return make_synthetic_dataset(work_dir() / "synthetic")
    local = extracted_dataset(LOCAL_DATA_DIR)
    if local:
        return local
    zip_path = next((p for p in zip_candidates() if p.is_file()), None)
    if zip_path is None:
        zip_path = download_zip(LOCAL_DATA_DIR / ZIP_NAME)
    print(f"Extracting {zip_path} to {LOCAL_DATA_DIR} ...")
    safe_extract(zip_path, LOCAL_DATA_DIR)
    cache = work_dir() / ZIP_NAME
    if not cache.exists():
        shutil.copyfile(zip_path, cache)
        print(f"Kept a copy of the zip in {cache}: next time nothing is downloaded.")
    root = extracted_dataset(LOCAL_DATA_DIR)
    if root is None:
        raise DatasetLayoutError(f"{zip_path} holds no {DATASET_DIRNAME} folder. Is it the "
                                 "SCUT-FBP5500 release? Delete it and re-run.")
    return root


def canonical_name(name: str) -> str:
    """The current release's name for an image: 'fty12.jpg' -> 'AF12.jpg'."""
    match = NAME_PATTERN.match(name)
    if not match:
        raise ValueError(f"'{name}' is not a SCUT-FBP5500 image name like AF1.jpg or fty1.jpg")
    prefix, number = match.groups()
    return f"{OLD_PREFIXES.get(prefix, prefix)}{number}.jpg"


def old_name(name: str) -> str:
    """The 2018 release's name of an image: 'AF12.jpg' -> 'fty12.jpg'."""
    new_to_old = {v: k for k, v in OLD_PREFIXES.items()}
    return new_to_old[name[:2]] + name[2:]


def read_labels(path: Path) -> pd.DataFrame:
    """Read a label file ('<file name> <score>' per line) of either release, checked line by line."""
    path = Path(path)
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        try:
            name, score = canonical_name(parts[0]), float(parts[1])
            if len(parts) != 2:
                raise ValueError
        except (ValueError, IndexError):
            raise LabelFormatError(f"{path}, line {number}: expected '<file name> <score>' "
                                   f"like 'AF1.jpg 2.883333', found {line!r}") from None
        if not 1.0 <= score <= 5.0:
            raise ScoreRangeError(f"{path}, line {number}: score {score} is outside the "
                                  "rating scale 1-5")
        rows.append((name, parts[0], score))
    if not rows:
        raise LabelFormatError(f"{path} holds no labels")
    frame = pd.DataFrame(rows, columns=["file", "original_name", "score"])
    frame["group"] = frame["file"].str[:2]  # AF, AM, CF or CM
    return frame


def protocol_files(root: Path, protocol: str) -> tuple[Path, Path]:
    """The (train, test) label files of a protocol: 'fold1'..'fold5' or '60/40'."""
    split_dir = Path(root) / "train_test_files"
    if protocol == "60/40":
        folders = sorted(split_dir.glob("split_of_60*"))
        names = ("train.txt", "test.txt")
    elif protocol in PROTOCOLS:
        k = protocol[-1]
        folders = sorted(split_dir.glob(f"*/cross_validation_{k}"))
        names = (f"train_{k}.txt", f"test_{k}.txt")
    else:
        raise ValueError(f"Unknown protocol {protocol!r}: choose one of {', '.join(PROTOCOLS)}")
    if not folders or not all((folders[0] / n).is_file() for n in names):
        raise DatasetLayoutError(f"The label files of protocol {protocol} ({' and '.join(names)}) "
                                 f"are not in {split_dir}. Is the release complete?")
    return folders[0] / names[0], folders[0] / names[1]


def locate_images(root: Path, frame: pd.DataFrame) -> pd.DataFrame:
    """The labels with each image's path; raises naming the images that are missing."""
    images = Path(root) / "Images"
    on_disk = {p.name for p in images.iterdir()}
    names = [f if f in on_disk else old_name(f) for f in frame["file"]]
    missing = [f for f, n in zip(frame["file"], names, strict=True) if n not in on_disk]
    if missing:
        raise MissingImagesError(
            f"{len(missing)} image(s) named in the label files are missing from {images}: "
            f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}. "
            "Re-extract the dataset (delete the folder and re-run) or fix FBP_DATA_DIR.")
    return frame.assign(path=[str(images / n) for n in names])


def load_protocol(root: Path, protocol: str = "fold1", val_fraction: float = 0.1,
                  seed: int = 0) -> dict[str, pd.DataFrame]:
    """The train, val and test parts of a protocol; val is carved from train, never from test."""
    train_file, test_file = protocol_files(root, protocol)
    train, test = read_labels(train_file), read_labels(test_file)
    overlap = set(train["file"]) & set(test["file"])
    if overlap:
        raise DatasetLayoutError(f"{len(overlap)} image(s) are both in {train_file.name} and "
                                 f"{test_file.name}, e.g. {min(overlap)}")
    val_mask = validation_mask(train, val_fraction, seed)
    parts = {"train": train[~val_mask], "val": train[val_mask], "test": test}
    for name, part in parts.items():
        parts[name] = locate_images(root, part.sort_values("file", key=natural_key).reset_index(drop=True))
    return parts


def natural_key(names: pd.Series) -> pd.Series:
    """Sort key putting AF2 before AF10."""
    return names.map(lambda n: (n[:2], int(re.sub(r"\D", "", n) or 0)))


def validation_mask(train: pd.DataFrame, fraction: float, seed: int) -> np.ndarray:
    """A deterministic validation subset of train, the same fraction from each group."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(train), dtype=bool)
    for _, rows in train.sort_values("file").groupby("group"):
        chosen = rng.permutation(rows.index.to_numpy())[: round(len(rows) * fraction)]
        mask[train.index.get_indexer(chosen)] = True
    return mask


def all_labels(root: Path) -> pd.DataFrame:
    """Every labelled image of the release (the union of fold 1's train and test files), with its
    path and size in bytes (what the dataset's fingerprint is made of)."""
    parts = [read_labels(p) for p in protocol_files(root, "fold1")]
    labels = locate_images(root, pd.concat(parts).sort_values("file", key=natural_key).reset_index(drop=True))
    return labels.assign(bytes=[os.path.getsize(p) for p in labels["path"]])


def dataset_fingerprint(frame: pd.DataFrame) -> str:
    """A hash of the image names, sizes and scores (of labels as all_labels gives them)."""
    text = "".join(f"{f}:{n}:{s:.6f};" for f, n, s in zip(frame["file"], frame["bytes"], frame["score"],
                                                         strict=True))
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def verify_images(paths: list[str], workers: int = 8) -> None:
    """Decode every image once (in threads, with a bar); raise naming the files that cannot be decoded."""
    from PIL import Image
    from tqdm.contrib.concurrent import thread_map

    def broken(path: str) -> str | None:
        try:
            with Image.open(path) as image:
                image.load()
            return None
        except Exception as error:
            return f"{Path(path).name} ({type(error).__name__}: {error})"

    bad = [r for r in thread_map(broken, paths, max_workers=workers, desc="checking images") if r]
    if bad:
        raise CorruptImageError(f"{len(bad)} image(s) cannot be decoded: {'; '.join(bad[:5])}. "
                                "Re-extract the dataset (delete the folder and re-run).")


def validate_dataset(root: Path) -> pd.DataFrame:
    """Check labels, images and every protocol before anything trains; return all labels."""
    labels = all_labels(root)
    for protocol in PROTOCOLS:
        load_protocol(root, protocol)
    stamp = Path(root) / ".verified.json"
    fingerprint = {"images": len(labels), "bytes": int(labels["bytes"].sum())}
    if not stamp.is_file() or json.loads(stamp.read_text()) != fingerprint:
        verify_images(labels["path"].tolist())
        try:
            stamp.write_text(json.dumps(fingerprint))
        except OSError:
            pass  # a read-only dataset folder is checked again next time, nothing worse
    return labels


def percentile_of(score: float, scores: np.ndarray) -> float:
    """Share (in %) of the scores strictly below a score: 'more attractive than X %'."""
    from scipy import stats

    return float(stats.percentileofscore(np.asarray(scores, dtype=float), score, kind="strict"))


RATERS = 60


def read_ratings(root: Path) -> pd.DataFrame | None:
    """Each image's rating by each of the 60 raters (Rater, file, Rating), or None without the file."""
    path = Path(root) / "All_Ratings.xlsx"
    if not path.is_file():
        return None
    expected = set(all_labels(root)["file"])
    workbook = pd.read_excel(path, sheet_name=None)
    sheets = [s for s in map(rating_columns, workbook.values()) if s is not None]
    ratings = next((s for s in sheets if ratings_complete(s, expected)), None)
    if ratings is None and sheets:
        ratings = pd.concat(sheets).drop_duplicates(["Rater", "file"])
    if ratings is None or not ratings_complete(ratings, expected):
        found = (f"{ratings['file'].nunique()} images and {ratings['Rater'].nunique()} raters in "
                 f"{len(ratings)} ratings" if ratings is not None
                 else "no sheet with the columns Rater, Filename and Rating")
        raise DatasetLayoutError(
            f"{path.name}: expected the dataset's {len(expected)} images x {RATERS} raters, each "
            f"image rated once by each rater, in its sheets {list(workbook)}; found {found}. "
            "Replace it with the release's own file, or remove it to skip the rater analysis.")
    return ratings.reset_index(drop=True)


def rating_columns(sheet: pd.DataFrame) -> pd.DataFrame | None:
    """A sheet's Rater, file and Rating columns (names matched ignoring case), or None."""
    columns = {str(c).strip().lower(): c for c in sheet.columns}
    if not {"rater", "filename", "rating"} <= set(columns):
        return None
    ratings = pd.DataFrame({"Rater": sheet[columns["rater"]],
                            "file": sheet[columns["filename"]].astype(str).str.strip(),
                            "Rating": pd.to_numeric(sheet[columns["rating"]], errors="coerce")})
    ratings = ratings[ratings["file"].str.match(NAME_PATTERN) & ratings["Rating"].notna()]
    return ratings.assign(file=ratings["file"].map(canonical_name))


def ratings_complete(ratings: pd.DataFrame, images: set[str]) -> bool:
    """True when each of the images, and no other, is rated once by each of 60 raters."""
    return (set(ratings["file"]) == images and ratings["Rater"].nunique() == RATERS
            and len(ratings) == len(images) * RATERS and not ratings.duplicated(["Rater", "file"]).any())


RATINGS = (1, 2, 3, 4, 5)
SHARES = [f"share_{rating}" for rating in RATINGS]  # of a face's raters who gave each rating


RATINGS_HELP = ("Replace All_Ratings.xlsx with the release's own file (it is in the zip), or set "
                "label_distribution=False in notebook 02's parameters cell to learn the scores alone.")


def rating_shares(root: Path, labels: pd.DataFrame) -> pd.DataFrame:
    """Per image (all_labels' rows), the share of its 60 raters who gave 1, 2, 3, 4 and 5, from
    All_Ratings.xlsx and checked against the labels; read once per dataset (a minute for the real
    file) and kept in the work folder."""
    # "checked": kept only once the checks below pass, so a file kept before they existed is not read
    path = work_dir() / f"rating-shares-checked-{dataset_fingerprint(labels)}.csv"
    if path.is_file():
        return pd.read_csv(path, index_col="file")
    ratings = read_ratings(root)
    if ratings is None:
        raise DatasetLayoutError(
            f"label_distribution=True learns how the 60 raters rated each face, which All_Ratings.xlsx "
            f"holds, and {root} has no All_Ratings.xlsx. Put the release's file there (it is in the "
            "zip), or set label_distribution=False in notebook 02's parameters cell.")
    check_rating_values(ratings)
    counts = pd.crosstab(ratings["file"], ratings["Rating"].astype(int))
    counts = counts.reindex(index=labels["file"], columns=list(RATINGS), fill_value=0)
    shares = counts.div(counts.sum(axis=1), axis=0).set_axis(SHARES, axis=1).rename_axis("file")
    check_shares_mean(shares, labels)
    write_atomically(path, lambda file: shares.to_csv(file))
    return shares


def check_rating_values(ratings: pd.DataFrame) -> None:
    """Refuse ratings that are not a whole point from 1 to 5, naming a few: a face's shares would
    leave them out or round them silently."""
    off = ratings[~ratings["Rating"].isin(RATINGS)]
    if len(off):
        named = "; ".join(f"rater {r.Rater} gave {r.file} {r.Rating:g}" for r in off.head(5).itertuples())
        raise DatasetLayoutError(
            f"All_Ratings.xlsx holds {len(off)} rating(s) off the scale of whole points from 1 to 5: "
            f"{named}. {RATINGS_HELP}")


def check_shares_mean(shares: pd.DataFrame, labels: pd.DataFrame) -> None:
    """Refuse shares whose mean (their face's mean rating) is not the face's score in the label files
    within 1e-4, naming a few faces with both numbers."""
    means = shares.to_numpy() @ np.array(RATINGS)
    scores = labels["score"].to_numpy()
    wrong = np.flatnonzero(~(np.abs(means - scores) <= 1e-4))  # NaN too: a face without ratings
    if len(wrong):
        named = "; ".join(f"{labels['file'].iloc[k]}: its ratings average {means[k]:.4f}, its label "
                          f"says {scores[k]:.4f}" for k in wrong[:5])
        raise DatasetLayoutError(
            f"All_Ratings.xlsx disagrees with the label files on {len(wrong)} face(s), whose score "
            f"should be the mean of their {RATERS} ratings ({named}). {RATINGS_HELP}")


def add_rating_shares(parts: dict[str, pd.DataFrame], root: Path, labels: pd.DataFrame) -> dict:
    """The protocol's parts with each face's rating shares as columns (SHARES), for a distribution head."""
    shares = rating_shares(root, labels)
    return {name: part.join(shares, on="file") for name, part in parts.items()}


def human_agreement_path(dataset: str) -> Path:
    """Where notebook 01 keeps the raters' agreement of a dataset (by its fingerprint) for 04."""
    return work_dir() / f"human_agreement-{dataset}.json"


def load_image(path: tf.Tensor, image_size: int) -> tf.Tensor:
    """Decode one image file to a uint8 tensor of image_size x image_size x 3."""
    image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    image = tf.image.resize(image, (image_size, image_size), antialias=True)
    return tf.cast(tf.round(tf.clip_by_value(image, 0.0, 255.0)), tf.uint8)


def targets(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """What the model learns of each face: its score and, when the frame has the raters' shares
    (add_rating_shares), their distribution; keyed by the model's outputs."""
    learned = {"score": frame["score"].to_numpy(dtype="float32")}
    if set(SHARES) <= set(frame.columns):
        learned["distribution"] = frame[SHARES].to_numpy(dtype="float32")
    return learned


def make_dataset(frame: pd.DataFrame, image_size: int, batch_size: int, training: bool = False,
                 seed: int = 0):
    """(uint8 image, targets) batches: decoded, resized and cached; shuffled when training
    (notebook 03 then maps its augmentation over them), else in the frame's order, as predict takes
    them (it reads the images, not the targets)."""
    if training:  # a random cache order lets a small shuffle buffer mix the groups well
        frame = frame.sample(frac=1.0, random_state=seed)
    paths = frame["path"].astype(str).to_numpy()
    data = tf.data.Dataset.from_tensor_slices((paths, targets(frame)))
    data = data.map(lambda p, y: (load_image(p, image_size), y),
                    num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).cache()
    if training:
        data = data.shuffle(min(len(frame), 1024), seed=seed, reshuffle_each_iteration=True)
    return data.batch(batch_size).prefetch(tf.data.AUTOTUNE)


# ---------------------------------------------------------------------------------------
# Model: the layers a saved model needs registered, mixed precision, the feature cache
# ---------------------------------------------------------------------------------------

# The backbones the recipe knows, by their keras.applications constructor, each with the module
# whose preprocess_input the model applies.
BACKBONES = {"ResNet50": "resnet50", "ConvNeXtTiny": "convnext", "EfficientNetV2S": "efficientnet_v2"}


@keras.saving.register_keras_serializable(package="fbp")
class ImageNetPreprocess(keras.layers.Layer):
    """The backbone's own preprocess_input, on uint8 images: for ResNet50 "caffe" mode (RGB->BGR,
    minus the ImageNet mean); for ConvNeXt and EfficientNetV2 nothing, as their models rescale and
    normalise their 0-255 input themselves (Keras' include_preprocessing)."""

    def __init__(self, backbone: str = "ResNet50", **kwargs):
        super().__init__(**kwargs)
        self.backbone = backbone

    def call(self, images):
        module = getattr(keras.applications, BACKBONES[self.backbone])
        return module.preprocess_input(keras.ops.cast(images, "float32"))

    def get_config(self):
        return {**super().get_config(), "backbone": self.backbone}


@keras.saving.register_keras_serializable(package="fbp")
class InferenceBatchNormalization(keras.layers.BatchNormalization):
    """BatchNormalization that always normalises with its stored (ImageNet) statistics, even while
    training (keras-team/keras#20285: fit's training=True overrides a call with training=False)."""

    def call(self, inputs, training=None, mask=None):
        return super().call(inputs, training=False, mask=mask)


def with_inference_batchnorm(model: keras.Model) -> keras.Model:
    """A copy of a model, weights included, with InferenceBatchNormalization for BatchNormalization;
    a keras-hub encoder, which has none (its LayerNormalization keeps no batch statistics), as it is."""
    if isinstance(model, keras_hub.models.Backbone):
        return model

    def swap(layer):
        batchnorm = isinstance(layer, keras.layers.BatchNormalization)
        kind = InferenceBatchNormalization if batchnorm else type(layer)
        return kind.from_config(layer.get_config())

    copy = keras.models.clone_model(model, clone_function=swap)
    copy.set_weights(model.get_weights())
    return copy


@keras.saving.register_keras_serializable(package="fbp")
class RatingShares(keras.layers.Layer):
    """The share of raters who would give each rating 1-5: each rater's impression of the face is
    taken as normal around a centre with a spread, both learned from the features (one Dense(2),
    zero at the start: centre 3, spread 0.74), and rounded to the scale (an ordinal probit)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.centre_and_spread = keras.layers.Dense(2, kernel_initializer="zeros", dtype="float32")

    def build(self, input_shape):
        self.centre_and_spread.build(input_shape)

    def call(self, features):
        both = self.centre_and_spread(keras.ops.cast(features, "float32"))
        centre, spread = 3.0 + both[:, :1], keras.ops.softplus(both[:, 1:]) + 0.05
        cuts = keras.ops.convert_to_tensor([[1.5, 2.5, 3.5, 4.5]], dtype="float32")  # between ratings
        below = 0.5 * (1 + keras.ops.erf((cuts - centre) / (spread * np.sqrt(2))))
        ends = keras.ops.concatenate([keras.ops.zeros_like(centre), below, keras.ops.ones_like(centre)],
                                     axis=1)  # the normal's mass below each cut, 0 and 1 at the ends
        return ends[:, 1:] - ends[:, :-1]


# --- foundation backbones: keras-hub presets as frozen feature extractors ---------------


@dataclass(frozen=True)
class Foundation:
    """A keras-hub preset offered as a backbone: its encoder and converter classes, its converter's
    size and normalisation (written here so that smoke runs build the same classes offline), the
    feature the heads take, a small network of the same class, and whether notebook 03 fine-tunes it."""

    encoder: str                # the keras_hub.models class of its image encoder
    converter: str              # the keras_hub.layers class of its image converter
    image_size: int             # the converter's size: the preset's own image_shape
    mean: tuple[float, ...]     # the converter's normalisation, of pixels in 0-1
    std: tuple[float, ...]
    resizing: dict              # the converter's interpolation settings
    feature: str                # what the heads take, and whose convention it is
    small: dict                 # a small network of the same class, for smoke runs and tests
    fine_tunes: bool            # whether a fine-tune fits a T4 at a usable batch
    bench: str                  # the estimate behind it (tests/bench_backbones.py)


IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# The presets' converters and sizes as keras-hub's conversion scripts made them
# (tools/checkpoint_conversion/convert_dinov2_checkpoints.py and convert_siglip_checkpoints.py):
# DINOv2 at its Hugging Face config's 518 px, ImageNet's mean and spread, bicubic; SigLIP 2 at 224 px,
# mean and spread 0.5, bicubic with antialiasing, stretched rather than cropped.
FOUNDATIONS = {
    "dinov2_base": Foundation(
        encoder="DINOV2Backbone", converter="DINOV2ImageConverter", image_size=518,
        mean=IMAGENET_MEAN, std=IMAGENET_STD, resizing={"interpolation": "bicubic"},
        feature="the class token after the final layer norm (768 numbers): DINOv2's own output for an "
                "image (x_norm_clstoken in facebookresearch/dinov2), which its linear evaluation reads, "
                "there optionally beside the mean of the patch tokens, left out here",
        small={"patch_size": 14, "num_layers": 2, "hidden_dim": 32, "num_heads": 2,
               "intermediate_dim": 64, "position_embedding_shape": (518, 518)},
        fine_tunes=False,
        bench="at 518 px (1,370 tokens) a fine-tune should keep about 1.5 GB of activations per face: "
              "est. peak 17.8 GB at batch 8, beyond a T4's 14 GB"),
    "siglip2_base_patch16_224": Foundation(
        encoder="SigLIPVisionEncoder", converter="SigLIPImageConverter", image_size=224,
        mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
        resizing={"interpolation": "bicubic", "antialias": True, "crop_to_aspect_ratio": False},
        feature="the attention-pooled image embedding (768 numbers): the output of SigLIP's MAP head, "
                "its image tower's embedding (keras-hub's SigLIPVisionEncoder, Hugging Face's "
                "pooler_output), which SigLIP's authors compare with text and probe",
        small={"patch_size": 16, "num_layers": 2, "hidden_dim": 32, "num_heads": 2, "intermediate_dim": 64},
        fine_tunes=True,
        bench="at 224 px (196 tokens), batch 32: est. peak 5.9 GB of a T4's 14 GB"),
}


@keras.saving.register_keras_serializable(package="fbp")
class ClassToken(keras.layers.Layer):
    """A ViT's class token: the first of the tokens it outputs (DINOv2's, after its final layer norm)."""

    def call(self, tokens):
        return tokens[:, 0]


def small_foundation(cfg: Config) -> tuple[keras.layers.Layer, keras.Model]:
    """For smoke runs and tests, offline: the preset's image converter (the layer "preprocess") with its
    normalisation, and a small randomly initialised network of its encoder's class, at the run's size."""
    spec, size = FOUNDATIONS[cfg.backbone], cfg.image_size
    converter = getattr(keras_hub.layers, spec.converter)(
        image_size=(size, size), scale=[1 / 255 / s for s in spec.std],
        offset=[-m / s for m, s in zip(spec.mean, spec.std, strict=True)], name="preprocess", **spec.resizing)
    return converter, getattr(keras_hub.models, spec.encoder)(**spec.small, image_shape=(size, size, 3))


def fine_tunes(backbone: str) -> bool:
    """Whether notebook 03 fine-tunes this backbone: every ImageNet CNN, and the presets a T4 can."""
    return backbone not in FOUNDATIONS or FOUNDATIONS[backbone].fine_tunes


def check_fine_tunes(cfg: Config) -> None:
    """Stop notebook 03, before it loads or writes anything, when the run's backbone is frozen-only."""
    if not fine_tunes(cfg.backbone):
        raise FrozenOnlyError(
            f"{cfg.backbone} is a frozen-only backbone: {FOUNDATIONS[cfg.backbone].bench} "
            "(tests/bench_backbones.py). Its run stays at stage 1: notebooks 04 and 05 use the model "
            "notebook 02 saved. Nothing was trained or written here.")


def has_contribution_map(model: keras.Model) -> bool:
    """Whether the model's pooled features are the average of its last feature map's cells (the
    keras.applications CNNs), so that a contribution map splits its score exactly."""
    return not isinstance(backbone_of(model), keras_hub.models.Backbone)


HEADS = ("score", "distribution")  # the model's outputs; the second with label_distribution only


def backbone_of(model: keras.Model) -> keras.Model:
    """The model's backbone (ResNet50, ConvNeXtTiny, ...): the one model among its layers."""
    return next(layer for layer in model.layers if isinstance(layer, keras.Model))


def load_model(path: Path) -> keras.Model:
    """A saved model, loaded with safe_mode=True (nothing in the file runs as code); one that does
    not load says so plainly."""
    try:
        return keras.models.load_model(path, safe_mode=True)
    except Exception as error:  # a damaged file, or one from other code: its message, not a traceback
        raise RunMismatchError(
            f"The model {Path(path).name} of run {Path(path).parent.name} does not load with Keras "
            f"{keras.__version__} ({type(error).__name__}: {str(error)[:300]}). It is damaged, or was made "
            "by another version of this project or of Keras (its run.json names both). Train the run "
            "again, or use a bundle made with this version.") from None


def feature_extractor(model: keras.Model) -> keras.Model:
    """The model up to the backbone's pooled features (the heads' input)."""
    return keras.Model(model.inputs, model.get_layer("score").input, name="features")


def weights_fingerprint(model: keras.Model) -> str:
    """A hash of the backbone's weights: equal hashes give equal features."""
    digest = hashlib.sha1()
    for weight in backbone_of(model).weights:
        digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(weight)).tobytes())
    return digest.hexdigest()[:16]


def precision_policy() -> str:
    """mixed_float16 on a GPU with tensor cores (a T4 and newer), else float32."""
    gpus = tf.config.list_physical_devices("GPU")
    details = tf.config.experimental.get_device_details(gpus[0]) if gpus else {}
    capability = details.get("compute_capability")
    return "mixed_float16" if capability and capability >= (7, 0) else "float32"


def use_precision(model: keras.Model, policy: str) -> None:
    """Make every layer compute under a dtype policy, nested ones included (a keras-hub encoder's
    blocks hold their dense and attention layers), except the preprocessing and the heads with what
    they hold (kept in float32 for a stable loss); the weights stay float32 either way."""
    def layers(parent):
        for layer in parent._flatten_layers(include_self=False, recursive=False):
            if layer.name not in ("preprocess", *HEADS) and not isinstance(layer, keras.layers.InputLayer):
                yield layer
                yield from layers(layer)

    model.dtype_policy = policy
    for layer in layers(model):
        layer.dtype_policy = policy


def compile_arguments(cfg: Config) -> dict:
    """model.compile's loss, loss_weights and metrics, the same for the head (02) and the whole model
    (03): squared error on the score (the blog's; MAE and RMSE in score points beside it), and with
    label_distribution the KL divergence of the predicted shares from the raters', weighted."""
    arguments = {"loss": {"score": "mse"}, "loss_weights": {"score": 1.0},
                 "metrics": {"score": [keras.metrics.MeanAbsoluteError(name="mae"),
                                       keras.metrics.RootMeanSquaredError(name="rmse")]}}
    if cfg.label_distribution:
        arguments["loss"]["distribution"] = keras.losses.KLDivergence()
        arguments["loss_weights"]["distribution"] = cfg.distribution_weight
    return arguments


def selection_loss(cfg: Config) -> str:
    """The figure that chooses every recipe's epoch (02's early stopping, 03's best checkpoint): the
    score's own squared error on the validation faces, which Keras logs as val_score_loss beside a
    second head's loss, and as val_loss without one."""
    return "val_score_loss" if cfg.label_distribution else "val_loss"


def cached_features(model: keras.Model, frame: pd.DataFrame, image_size: int, cache_dir: Path,
                    batch_size: int = 64) -> pd.DataFrame:
    """Pooled backbone features of every image in the frame (a row per file), computed once and
    cached on disk under a key of the images, the image size, the backbone and its weights, the recipe."""
    backbone = backbone_of(model)
    key = (f"{dataset_fingerprint(frame)}-{image_size}px-{backbone.name}-{weights_fingerprint(model)}"
           f"-r{RECIPE_VERSION}")
    path = Path(cache_dir) / f"features-{key}.npy"
    if path.is_file():
        print(f"Features loaded from the cache {path.name}.")
        return pd.DataFrame(np.load(path), index=frame["file"])
    print(f"{backbone.name} features of every image, once (Keras' bar counts batches):")
    images = make_dataset(frame, image_size, batch_size)  # predict takes the images, not the scores
    features = feature_extractor(model).predict(images, verbose=1).astype("float32")
    write_atomically(path, lambda file: np.save(file, features))
    return pd.DataFrame(features, index=frame["file"])


def predict_scores(model: keras.Model, frame: pd.DataFrame, image_size: int,
                   batch_size: int = 64, mirror: bool = False) -> np.ndarray:
    """Predicted scores of the frame's images (or of their horizontal mirrors), in its order."""
    images = make_dataset(frame, image_size, batch_size)  # predict takes the images, not the scores
    if mirror:
        images = images.map(lambda x, y: (tf.reverse(x, axis=[2]), y))
    return model.predict(images, verbose=0)["score"].ravel()


# ---------------------------------------------------------------------------------------
# Runs: settings, run folders and records, each stage's saves, the protocol and ablation runners
# ---------------------------------------------------------------------------------------

RECIPE_VERSION = 6  # bump whenever a change to the training code changes what a run's model means


@dataclass(frozen=True)
class Config:
    """Everything a user may want to change about a run."""

    protocol: str = "fold1"            # "fold1".."fold5" (each the blog's 80/20) or "60/40"
    backbone: str = "ResNet50"         # one of BACKBONES (keras.applications) or FOUNDATIONS (keras-hub)
    image_size: int | None = None      # None: 350, the blog's and the dataset's; a preset's converter's size
    weights: str | None = "imagenet"   # None only for smoke runs and tests; with a preset, the preset's own
    val_fraction: float = 0.1          # carved from the training part for model choice
    # A fine-tune at 350 px in batches of 32 should peak on a T4 at 8.5 GB with ResNet50, 6.8 with
    # ConvNeXtTiny and 9.4 with EfficientNetV2S, of about 15 (tests/bench_backbones.py; README,
    # "Backbones"): each could take more, and all keep the blog's 32, so that the ablation compares
    # backbones, not batch sizes.
    batch_size: int | None = None      # None: 32
    label_distribution: bool = False   # also learn the share of the 60 raters giving 1-5 (a second head)
    distribution_weight: float = 1.0   # its loss's weight beside the score's squared error
    head_lr: float = 1e-3
    head_epochs: int = 200             # an upper bound: early stopping ends it in seconds
    head_patience: int = 15
    finetune_lr: float = 5e-5          # peak of a cosine schedule with one epoch of warm-up
    finetune_epochs: int = 30          # the blog's count
    # AdamW's decoupled decay, not the paper's SGD L2 penalty: each step shrinks a weight by lr x decay.
    # Over a fold's fine-tune (about 124 steps an epoch, 30 epochs, cosine from 5e-5) that compounds to
    # about 0.46 % (0.35 % on 60/40), which 03 prints: a light touch. The guards against overfitting are
    # the epoch chosen on validation faces, the low rate and the augmentation.
    weight_decay: float = 0.05
    seed: int = 0

    def __post_init__(self):
        if self.backbone not in (*BACKBONES, *FOUNDATIONS):
            raise SettingError(f"backbone={self.backbone!r} is not one the recipe knows: choose one of "
                               f"{', '.join(map(repr, (*BACKBONES, *FOUNDATIONS)))}.")
        preset = FOUNDATIONS.get(self.backbone)
        if self.image_size is None:  # frozen: set once, so that the run's record names the size
            object.__setattr__(self, "image_size", preset.image_size if preset else 350)
        if preset and self.weights is not None and self.image_size != preset.image_size:
            raise SettingError(f"{self.backbone} takes {preset.image_size} px images, its image converter's "
                               f"size, and image_size={self.image_size} asks for another: leave image_size "
                               "out of the settings for it.")
        if self.batch_size is None:  # frozen: set once, so that the run's record names the batch
            object.__setattr__(self, "batch_size", 32)

    def smoke(self) -> Config:
        """The same settings shrunk to a run of a minute on a CPU, with untrained weights."""
        return replace(self, image_size=64, weights=None, batch_size=16, finetune_epochs=2,
                       finetune_lr=1e-5)

    def for_environment(self) -> Config:
        """The settings a protocol runner passed in FBP_CONFIG, else these (shrunk when FBP_SMOKE=1);
        says so when they replace these."""
        if one_fold_of_a_protocol():
            print("Notebook 04's runner is running this notebook for one fold: its settings "
                  "(FBP_CONFIG) replace this notebook's.")
            return Config(**json.loads(os.environ["FBP_CONFIG"]))
        if not smoke_mode():
            return self
        smoke, own = self.smoke(), asdict(self)
        changed = [f"{name} {value!r}" for name, value in asdict(smoke).items() if value != own[name]]
        if changed:
            print(f"Smoke mode (FBP_SMOKE=1): {', '.join(changed)} replace your settings, for a run "
                  "of a minute on a CPU.")
        return smoke


def run_identity(cfg: Config, dataset: str) -> dict:
    """Everything that shapes a run's model (settings, dataset, recipe version, smoke or not),
    with a fingerprint of it all."""
    identity = {"config": asdict(cfg), "dataset": dataset, "recipe": RECIPE_VERSION, "smoke": smoke_mode()}
    return {"fingerprint": fingerprint_of(identity), **identity}


def fingerprint_of(identity: dict) -> str:
    """A short hash of a run's identity (settings, dataset, recipe, smoke)."""
    return hashlib.sha1(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:10]


def run_dir(cfg: Config, dataset: str, root: Path | None = None) -> Path:
    """The run's own folder, named by its protocol and fingerprint, e.g. runs/fold1-3fa2c1d0e4."""
    fingerprint = run_identity(cfg, dataset)["fingerprint"]
    return Path(root or work_dir()) / "runs" / f"{cfg.protocol.replace('/', '-')}-{fingerprint}"


def update_run(path: Path, **fields) -> dict:
    """Merge fields into run.json, written atomically so a lost VM never leaves half a file."""
    record = {**read_json(Path(path) / "run.json"), **fields}
    save_json(Path(path) / "run.json", record)
    return record


def saved_runs(root: Path | None = None) -> list[tuple[Path, dict]]:
    """Every run folder of the work folder with its record, the most recently updated first."""
    records = sorted((Path(root or work_dir()) / "runs").glob("*/run.json"),
                     key=lambda p: p.stat().st_mtime, reverse=True)
    return [(path.parent, json.loads(path.read_text())) for path in records]


def current_run_file() -> Path:
    """Where notebook 02 names the run that notebooks 03, 04 and 05 continue."""
    return work_dir() / "runs" / "current.json"


def open_run(cfg: Config, labels: pd.DataFrame) -> tuple[Path, dict]:
    """This run's folder and identity; says which stages it has done, names the saved runs made with
    other settings or data (kept, never reused), and makes it the run that 03, 04 and 05 continue
    (not when a protocol runner runs this fold: the user's own run stays theirs)."""
    identity = run_identity(cfg, dataset_fingerprint(labels))
    folder = run_dir(cfg, identity["dataset"])
    record = read_json(folder / "run.json")
    stage = ("fine-tuned" if record.get("finished") else "stage 1 done" if record.get("frozen")
             else "new")
    print(f"Run {folder.name} ({stage}): {describe_settings(identity['config'])}.")
    if not one_fold_of_a_protocol():
        save_json(current_run_file(), {"run": folder.name, **identity})
        print("Notebooks 03, 04 and 05 continue this run.")
    print(other_runs_note(identity), end="")
    return folder, identity


def current_run(name: str | None = None, dataset: str | None = None) -> tuple[Path, dict]:
    """The run to continue and its identity: the fold a protocol runner passed (FBP_CONFIG), else
    the saved run called name, else the one notebook 02 set up last (never a guess such as the
    newest folder). Checks it was made on this dataset, when given, and says which run it is."""
    if one_fold_of_a_protocol():
        cfg = Config().for_environment()
        identity, folder, how = run_identity(cfg, dataset), run_dir(cfg, dataset), "this fold of the protocol"
    else:  # a named run's record, or the identity notebook 02 wrote with the run's name
        identity = read_json(work_dir() / "runs" / name / "run.json" if name else current_run_file())
        if not identity:
            saved = ", ".join(folder.name for folder, _ in saved_runs()) or "none yet"
            if name:
                raise RunNotFoundError(f"There is no run called {name!r} in {work_dir() / 'runs'}. Saved "
                                       f"runs: {saved}. Set RUN_NAME to one of them, or to None.")
            raise RunNotFoundError(
                "No run chosen yet: run notebook 02 first (its parameters cell sets up the run that "
                f"notebooks 03, 04 and 05 continue), or set RUN_NAME to a saved run ({saved}).")
        folder = work_dir() / "runs" / (name or identity.pop("run"))
        how = "named in RUN_NAME" if name else "set up by notebook 02"
    if identity.get("recipe") != RECIPE_VERSION:
        raise RunMismatchError(
            f"Run {folder.name} was made by version {identity.get('recipe')} of the training recipe, and "
            f"this checkout's is {RECIPE_VERSION}: its saved models do not fit this code. Run notebook 02 "
            "(and 03) to make the run again with this version, or set RUN_NAME to a run made by it.")
    if dataset and identity["dataset"] != dataset:
        raise RunMismatchError(
            f"Run {folder.name} was trained on dataset {identity['dataset']}, and this one is {dataset}: "
            "its test faces would not be this dataset's. Point FBP_DATA_DIR at the dataset it was "
            "trained on, or run notebook 02 on this one.")
    print(f"Run {folder.name} ({how}): {describe_settings(identity['config'])}.")
    return folder, identity


# --- a run in words --------------------------------------------------------------------


def describe_settings(config: dict) -> str:
    """A run's settings in words: its backbone (+ distribution, with label_distribution) and the other
    settings that differ from Config's defaults, the protocol aside (the run's name says it), e.g.
    'ConvNeXtTiny + distribution (head_lr 0.003)'."""
    defaults = asdict(Config())
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
    record, tuned = read_json(Path(folder) / "run.json"), {}
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


def other_runs_note(identity: dict, root: Path | None = None) -> str:
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


# --- stage 1 (notebook 02): the head's model, log, reference and record ----------------


def history_frame(history: dict) -> pd.DataFrame:
    """A Keras history as a table with a 1-based epoch column."""
    frame = pd.DataFrame(history)
    frame.insert(0, "epoch", np.arange(1, len(frame) + 1))
    return frame


def versions() -> dict:
    """Versions that matter for reproducing a run."""
    return {"python": sys.version.split()[0], "tensorflow": tf.__version__,
            "keras": keras.__version__, "numpy": np.__version__}


@functools.lru_cache(maxsize=1)
def code_version() -> dict:
    """The commit of the checkout whose utils this kernel imported (None outside a git checkout) and
    whether its files differ from it: recorded with every stage and backup, so a run says which code
    trained it. Asked of git once per kernel, not every epoch."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(REPO_DIR), *args], capture_output=True, text=True,
                              check=True).stdout.strip()
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
    before = read_json(folder / "run.json")
    folder.mkdir(parents=True, exist_ok=True)
    history_frame(history).to_csv(folder / "history_head.csv", index=False)
    write_atomically(folder / "frozen.keras", model.save, empty_old=True)
    save_reference(folder, "frozen", model, parts["test"], identity["config"]["image_size"], test_features)
    record = update_run(folder, **identity, versions=versions(), code=code_version(),
                        framing=framing_for(labels), frozen=frozen, head_seconds_per_epoch=head_seconds,
                        sizes={name: len(part) for name, part in parts.items()})
    if before.get("frozen"):
        tuned = before.get("finished") or (folder / "best.json").is_file()
        print(f"Stage 1 of run {folder.name} saved again: the figures above replace those saved before "
              "with the same settings." + (" The fine-tune of notebook 03 began from the stage 1 saved "
                                           "before (the same recipe): it is kept." if tuned else ""))
    return record


MAP_SAMPLE = 32                # faces whose maps set the colour scale


def save_reference(folder: Path, stage: str, model: keras.Model, frame: pd.DataFrame,
                   image_size: int, features: np.ndarray | None = None) -> Path:
    """Keep the stage's test predictions, true scores, mean features and map colour scale for 05 (None
    for a model without a contribution map: has_contribution_map)."""
    if features is None:
        features = feature_extractor(model).predict(make_dataset(frame, image_size, 64), verbose=0)
    features = np.asarray(features, dtype=float)
    kernel, bias = (keras.ops.convert_to_numpy(w).astype(float) for w in model.get_layer("score").weights)
    predicted = features @ kernel[:, 0] + bias[0]
    mean_features = features.mean(axis=0)
    maps = None
    if has_contribution_map(model):
        sample = np.concatenate([x for x, _ in make_dataset(frame.head(MAP_SAMPLE), image_size, MAP_SAMPLE)])
        maps = contribution_maps(model, sample, mean_features)[1]
    return save_json(Path(folder) / f"reference-{stage}.json", {
        "stage": stage, "set": f"the {len(frame):,} test faces of {Path(folder).name}",
        "files": frame["file"].tolist(), "true": frame["score"].round(4).tolist(),
        "predicted": predicted.round(4).tolist(), "mean_features": mean_features.tolist(),
        "map_scale": None if maps is None else float(np.percentile(np.abs(maps), 98))})  # of |cell|


def stage_one_record(folder: Path, identity: dict) -> dict:
    """The run's record once notebook 02 has done its stage 1 with these settings and data."""
    record = read_json(folder / "run.json")
    if record.get("fingerprint") != identity["fingerprint"] or not record.get("frozen"):
        raise RunNotFoundError(
            f"Stage 1 of run {folder.name} is not done: run notebook 02 with the same settings "
            "(and data) first: its parameters cell is the one place to change them."
            f"\n{other_runs_note(identity)}".rstrip())
    return record


# --- stage 2 (notebook 03): saves that survive a lost VM, resuming, the final model ----


def save_in_turn(folder: Path, record: str, variables: list, **info) -> dict:
    """Save variables over the older of two files (e.g. state-a.npz and state-b.npz for state.json),
    then name it, with its size and info, in the JSON record, which keeps the save before as
    'previous': whenever a VM is lost, the newer whole file is named and the other is untouched."""
    folder, stem = Path(folder), Path(record).stem
    latest = read_json(folder / record)  # stops first if Drive is not mounted
    name = f"{stem}-b.npz" if latest and latest["file"] == f"{stem}-a.npz" else f"{stem}-a.npz"
    folder.mkdir(parents=True, exist_ok=True)
    size = save_arrays_in_place(folder / name, variables)
    previous = {k: v for k, v in latest.items() if k != "previous"} if latest else None
    entry = {**info, "file": name, "bytes": size, "previous": previous}
    save_json(folder / record, entry)
    return entry


def save_arrays_in_place(path: Path, variables: list) -> int:
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


def newest_whole(folder: Path, entry: dict | None) -> tuple[dict, list[np.ndarray]] | None:
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
        save_in_turn(self.folder, "state.json", [*self.model.weights, *self.model.optimizer.variables],
                     epoch=epoch + 1, precision=self.model.dtype_policy.name, code=code_version())


class BestCheckpoint(keras.callbacks.Callback):
    """Keeps the weights (no optimizer state) of the epoch with the lowest value of a logged validation
    loss (selection_loss's), over the older of two files, then named with its epoch, that value and
    the logged row in best.json, so the record never names weights that were not saved whole."""

    def __init__(self, folder: Path, monitor: str):
        super().__init__()
        self.folder, self.monitor, self.best = Path(folder), monitor, None

    def on_train_begin(self, logs=None):
        self.best = read_json(self.folder / "best.json")  # what is on disk now, whatever ran before

    def improves(self, logs: dict) -> bool:
        """True when this epoch's validation loss beats the best so far."""
        return not self.best or logs[self.monitor] < self.best["value"]

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.improves(logs):
            self.best = save_in_turn(self.folder, "best.json", self.model.weights, epoch=epoch + 1,
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
    if read_json(folder / "run.json").get("finished"):
        print(f"Run {folder.name} is already fine-tuned with these settings and data.")
        return epochs
    model.optimizer.build(model.trainable_variables)  # its slots must exist before loading
    state = read_json(folder / "backup" / "state.json")
    found = newest_whole(folder / "backup", state)
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
    elif found := newest_whole(folder, read_json(folder / "best.json")):
        saved, arrays = found
        model.set_weights(arrays)
        model.optimizer.iterations.assign(saved["epoch"] * steps_per_epoch)  # the schedule goes on
        print(f"No whole backup of run {folder.name} is left: resuming after epoch {saved['epoch']}, "
              "whose best weights are whole, with a fresh optimizer state.")
    else:
        saved = {"epoch": 0, "code": read_json(folder / "run.json").get("code")}
        if state:
            print(f"No whole backup of run {folder.name} is left: its fine-tune starts again from "
                  "stage 1's model.")
    recorded, now = saved.get("code"), code_version()
    if recorded and recorded != now:  # other code trained the run so far: say so, and how to match it
        what = "its last epochs were" if saved["epoch"] else "its stage 1 was"
        match = (f" To continue with the same code, run `!git -C {REPO_DIR} fetch --depth 1 origin "
                 f"{recorded['commit']} && git -C {REPO_DIR} checkout {recorded['commit']}`, restart the "
                 "kernel and run this notebook again." if recorded.get("commit") not in (None, now["commit"])
                 else "")
        print(f"Note: {what} trained by {describe_code(recorded)}; this checkout is {describe_code(now)}, "
              f"so training goes on with other code.{match}")
    return int(saved["epoch"])


@contextlib.contextmanager
def plain_out_of_memory(cfg: Config):
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
    record = read_json(folder / "run.json")
    if not record.get("finished"):
        found = newest_whole(folder, read_json(folder / "best.json"))
        if found is None:
            raise RunNotFoundError(
                f"No whole copy of the best weights of run {folder.name} is left. Delete best.json "
                "and the backup folder in it, then run this notebook again: the fine-tune trains anew.")
        best, weights = found
        final = type(model).from_config(model.get_config())  # uncompiled: no optimizer state to save
        final.set_weights(weights)
        write_atomically(folder / "finetuned.keras", final.save, empty_old=True)
        save_reference(folder, "finetuned", final, parts["test"], image_size)
        val_pred = predict_scores(final, parts["val"], image_size)
        history = read_history(folder / "history_finetune.csv", best)
        record = update_run(folder, finished=True, finetune={
            "epochs": len(history), "best_epoch": best["epoch"], "chosen_on": best["monitor"],
            "best_value": best["value"],
            "val": regression_metrics(parts["val"]["score"], val_pred), "precision": precision,
            "code": code_version(), "runtime": accelerator(), "peak_gpu_gb": peak_gpu_gb(),
            "seconds_per_epoch": float(history["seconds"].median())})
    leftovers = [*folder.glob("backup/*"), *folder.glob("best-*.npz"), *folder.glob("*.tmp.*")]
    for leftover in leftovers:  # finetuned.keras holds it all now
        discard(leftover)
    if (folder / "backup").is_dir():
        (folder / "backup").rmdir()
    return record


# --- a run's current model and its evaluation ------------------------------------------


def current_model_path(folder: Path) -> Path:
    """The file of a run's best model: fine-tuned if that stage is done, else the frozen-head one."""
    for name in ("finetuned.keras", "frozen.keras"):
        if (Path(folder) / name).is_file():
            return Path(folder) / name
    raise RunNotFoundError(f"No trained model in {folder}: run notebooks 02 and 03 first.")


def current_model(folder: Path) -> dict:
    """Which model a run has now (what 04 evaluates and 05 scores with): its stage and a hash of its file."""
    path = current_model_path(folder)
    return {"stage": path.stem, "file": path.name, "sha1": file_hash(path, "sha1")[:12]}


STAGE_NAMES = {"frozen": "frozen-head", "finetuned": "fine-tuned"}


def final_stage(folder: Path) -> str:
    """The stage a run ends at: "finetuned", or "frozen" for a frozen-only backbone (fine_tunes)."""
    return "finetuned" if fine_tunes(read_json(Path(folder) / "run.json")["config"]["backbone"]) else "frozen"


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
    report = read_json(Path(folder) / "evaluation.json")
    if report and report.get("evaluated") == current_model(folder):
        return report, ""
    return None, ("notebook 04 evaluated an earlier model of this run, not its current one: run 04 again"
                  if report else "not evaluated yet (notebook 04 does it)")


# --- runners (notebook 04): folds and recipes through notebooks 02 to 04 ---------------


def execute_notebook(name: str, copy: Path, env: dict, label: str) -> None:
    """Run notebooks/<name>.ipynb top to bottom in a kernel of its own with this environment,
    echoing each line it prints after its label (Keras' bar gives one per epoch); its executed
    copy, with every output, is kept at `copy`. A failing cell stops it with a plain RuntimeError."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, DeadKernelError

    class EchoingClient(NotebookClient):
        pending = ""  # the start of a line not finished yet

        def output(self, outs, msg, display_id, cell_index):
            if msg["msg_type"] == "stream" and msg["content"]["name"] == "stdout":
                *lines, self.pending = (self.pending + msg["content"]["text"]).split("\n")
                for line in lines:  # a progress bar redraws after "\r": keep its last state
                    shown = line.rsplit("\r", 1)[-1]
                    if shown.strip():
                        print(f"  {label} | {shown}", flush=True)
            return super().output(outs, msg, display_id, cell_index)

    path = REPO_DIR / "notebooks" / f"{name}.ipynb"
    notebook = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    print(f"{label}: notebook {name} runs ...", flush=True)
    try:
        EchoingClient(notebook, timeout=None, kernel_name="python3",
                      resources={"metadata": {"path": str(path.parent)}}).execute(env=env)
    except (CellExecutionError, DeadKernelError) as error:
        if getattr(error, "ename", None) == FrozenOnlyError.__name__:  # 03 of a frozen-only backbone
            print(f"{label}: notebook {name}: {error.evalue}", flush=True)
            return
        reason = (f"{error.ename}: {error.evalue}" if isinstance(error, CellExecutionError)
                  else "its kernel died (out of memory?)")
        raise RuntimeError(f"{label}: notebook {name} stopped, {reason}\nIts outputs are in {copy}.") \
            from None
    finally:
        copy.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(notebook, copy)
    print(f"{label}: notebook {name} done in {(time.perf_counter() - start) / 60:.1f} min.", flush=True)


def run_notebook(name: str, cfg: Config, data_root: Path, folder: Path, label: str | None = None) -> None:
    """Run a notebook of the series (e.g. '03_finetune') for a runner: with these settings
    (FBP_CONFIG) and data, in this work folder, its progress shown after the run's label (its
    protocol unless given), its executed copy kept in the run's folder."""
    env = {**os.environ, "FBP_CONFIG": json.dumps(asdict(cfg)), "FBP_DATA_DIR": str(data_root),
           "FBP_WORK_DIR": str(work_home())}
    try:
        execute_notebook(name, Path(folder) / f"{name}.ipynb", env, label or cfg.protocol)
    except RuntimeError as error:
        raise RuntimeError(f"{error} Run this cell again to resume.") from None


def run_series(log: str | None = None) -> int:
    """Run notebooks 01 to 05 headless, in order, each in a kernel of its own (the README's first
    command): their executed copies go to the work folder's executed/ folder, then the run's
    headline figures and the results table are printed. Returns the exit status for the shell."""
    executed = work_dir() / "executed"
    executed.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    for path in sorted((REPO_DIR / "notebooks").glob("0[1-5]_*.ipynb")):
        try:
            execute_notebook(path.stem, executed / path.name, dict(os.environ), path.stem[:2])
        except RuntimeError as error:
            print(f"{error}\nFix what it says, then run the series again: what is done is not done again.")
            return 1
    if log:
        shutil.copyfile(log, executed / "series.log")
    folder, _ = current_run()
    report, why_not = current_evaluation(folder)
    print(f"\nThe series ran in {(time.perf_counter() - start) / 60:.1f} min. Executed notebooks, with "
          f"every output: {executed}" + (" (TensorFlow's start-up log: series.log there)." if log else "."))
    print(describe_run(folder))
    if report:
        print("Test figures with 95 % intervals:", ", ".join(
            f"{name} {with_interval(report[name], *report['ci95'][name])}" for name in ("PC", "MAE", "RMSE")))
    else:
        print(f"No test figures: {why_not}.")
    print("\nThe results table (notebook 04's last cell):\n" + as_markdown(results_table()))
    return 0


def switched_on(wanted: bool, switch: str, what: str) -> bool:
    """Whether one of notebook 04's runner cells (RUN_FULL_PROTOCOLS, RUN_ABLATION) runs: when wanted,
    but never in the copy of 04 that evaluates one run for a runner, so that a switch is safe to save
    as True; says why not, and how to switch it on."""
    if one_fold_of_a_protocol():
        print(f"This copy of notebook 04 evaluates one run for a runner: {switch} does nothing here.")
        return False
    if not wanted:
        print(f"{switch} is off: set {switch} = True above to {what}.")
    return wanted


def run_protocol(protocol: str, cfg: Config, data_root: Path) -> pd.DataFrame:
    """Run a protocol: 'fold1'..'fold5', '5-fold' (all five) or '60/40'. Notebooks 02 and 03 train
    each fold, then notebook 04 evaluates it, each in a kernel of its own (which frees the GPU); a
    fold resumes after a lost VM and a step done is not run again. After 5-fold every fold's
    folder also gets the out-of-fold predictions of all faces (05's reference). Returns the
    per-fold figures, with their mean and SD for 5-fold."""
    if one_fold_of_a_protocol():
        raise RuntimeError("This notebook is running one fold for a protocol runner, so it cannot run "
                           "protocols itself (RUN_FULL_PROTOCOLS must stay off here).")
    names = list(FOLDS) if protocol == "5-fold" else [protocol]
    folds = {name: replace(cfg, protocol=name) for name in names}
    lacking = {name: why for name, fold in folds.items() if (why := missing_for(fold, data_root))}
    if lacking:
        raise DatasetLayoutError(
            f"The {protocol} protocol cannot run on {data_root}, and nothing was trained: "
            + "; ".join(f"{name} needs {why}" for name, why in lacking.items())
            + ". Complete the dataset from the release's zip, then run this cell again.")
    folders, reports = train_and_evaluate(folds, data_root, f"the {protocol} protocol")
    if protocol == "5-fold":
        save_out_of_fold_reference(folders)
    return aggregate_folds(reports)


def out_of_fold_path(folder: Path) -> Path | None:
    """Where the 5-fold protocol keeps, once for its five folds, the out-of-fold reference of a fold's
    run (beside the runs, named by the settings the folds share); None for a run of another protocol."""
    record = read_json(Path(folder) / "run.json")
    if not record["config"]["protocol"].startswith("fold"):
        return None
    shared = {**{k: record[k] for k in ("dataset", "recipe", "smoke")},
              "config": {**record["config"], "protocol": "5-fold"}}
    return Path(folder).parent / f"reference-5fold-{fingerprint_of(shared)}.json"


def save_out_of_fold_reference(folders: list[Path]) -> None:
    """Join the folds' test predictions, each by its current model (fine-tuned, or stage 1 for a
    frozen-only backbone), into the 5-fold protocol's reference."""
    stage = final_stage(folders[0])  # the folds share their settings, so their stage
    parts = [json.loads((Path(f) / f"reference-{stage}.json").read_text()) for f in folders]
    joined = {key: [v for part in parts for v in part[key]] for key in ("files", "true", "predicted")}
    save_json(out_of_fold_path(folders[0]), {
        "set": f"the {len(joined['files']):,} faces of the 5-fold protocol, each predicted by "
               f"the {STAGE_NAMES[stage]} model of the fold that held it out", **joined})


def train_and_evaluate(runs: dict[str, Config], data_root: Path, what: str,
                       stage_one_only: Collection[str] = ()) -> tuple[list[Path], list[dict]]:
    """Train each run (named by its label) with notebooks 02 and 03 (02 alone for the labels in
    stage_one_only and for frozen-only backbones), every one before any is evaluated, then evaluate
    each with notebook 04, one run at a time, each notebook in a kernel of its own (which frees the
    GPU); a step done is not run again, a run cut short resumes. Returns the runs' folders and
    evaluations."""
    dataset = dataset_fingerprint(all_labels(data_root))
    folders = [run_dir(cfg, dataset) for cfg in runs.values()]
    check_space(folders, what)
    for (label, cfg), folder in zip(runs.items(), folders, strict=True):
        steps = [("02_frozen_head", "frozen")]
        if label not in stage_one_only and fine_tunes(cfg.backbone):
            steps.append(("03_finetune", "finished"))
        for notebook, done in steps:
            if not read_json(folder / "run.json").get(done):
                run_notebook(notebook, cfg, data_root, folder, label)
    reports = [current_evaluation(folder)[0] for folder in folders]  # None if made from another model
    for k, ((label, cfg), folder) in enumerate(zip(runs.items(), folders, strict=True)):
        if reports[k] is None:
            run_notebook("04_evaluation", cfg, data_root, folder, label)
            reports[k] = current_evaluation(folder)[0]
    return folders, reports


def check_space(folders: list[Path], what: str) -> None:
    """Stop with a plain message, before anything is written, when the work folder's disk (in Colab
    your Drive, whose bin counts) has less room than these runs need."""
    saved = [folder for folder, _ in saved_runs()]
    models = [Path(folder) / "frozen.keras" for folder in [*folders, *saved]]
    model = next((path for path in models if path.is_file()), None)
    if model is None:
        raise RunNotFoundError("No stage 1 is saved yet: run notebook 02 first.")
    model_bytes = model.stat().st_size
    needed, free = space_needed(folders, model_bytes), shutil.disk_usage(work_dir()).free
    if needed <= free:
        return
    on_drive = in_colab() and work_dir().is_relative_to(DRIVE_HOME)
    runs = sorted(((folder_bytes(f), f.name) for f in saved), reverse=True)[:3]
    raise NoSpaceError(
        f"{'Your Google Drive' if on_drive else f'The disk of {work_dir()}'} has {free / 1e9:.2f} GB "
        f"free, and {what} needs about {needed / 1e9:.2f} GB more (the models still to save, and while "
        "a fine-tune runs two backups of its state and two copies of its best weights; estimated from "
        f"a saved model of {model_bytes / 1e6:.0f} MB). Nothing was written. Make room, then run this cell "
        "again:"
        + ("\n- empty your Drive's bin (drive.google.com/drive/trash): deleted files count against "
           "your 15 GB until it is emptied, or for 30 days" if on_drive else "")
        + ("\n- delete run folders you no longer need from " + str(work_dir() / "runs") + ", largest: "
           + ", ".join(f"{name} ({size / 1e6:,.0f} MB)" for size, name in runs) if runs else ""))


def space_needed(folders: list[Path], model_bytes: int) -> int:
    """Bytes these runs will still add to the work folder, from the size of one saved model (W): W
    for each stage's model not saved yet and, while a fine-tune is unfinished, its two backups (the
    weights and AdamW's two moments: 3 W each) and two copies of its best weights, 8 W at the peak,
    less what those files hold already (they are overwritten in place). Folds train one at a time."""
    models = sum(model_bytes for folder in folders for name in ("frozen.keras", "finetuned.keras")
                 if not (Path(folder) / name).is_file())
    training = [8 * model_bytes - sum(p.stat().st_size for pattern in ("backup/state-*.npz", "best-*.npz")
                                      for p in Path(folder).glob(pattern))
                for folder in folders if not read_json(Path(folder) / "run.json").get("finished")]
    return models + max(training, default=0)


def folder_bytes(folder: Path) -> int:
    """The bytes of the files below a folder."""
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def ablation_recipes(cfg: Config) -> dict[str, Config]:
    """The ablation's recipes by name, on fold 1 with the run's other settings: first the blog's
    ResNet50 with squared error alone, then the same with the next seed (training noise alone), then
    each backbone with and without the raters' distribution, each in the default batch, then each
    keras-hub preset with squared error alone, frozen: stage 1 only, at its own size (in smoke mode
    the blog's and one that changes both, in smoke's batch: a test of the runner, not an ablation)."""
    recipes, size = {}, cfg.image_size if cfg.backbone in BACKBONES else None  # None: 350
    for backbone in BACKBONES:
        for distribution in (False, True):
            name = f"{backbone}{' + distribution' if distribution else ''}"
            recipe = replace(cfg, protocol="fold1", backbone=backbone, image_size=size,
                             label_distribution=distribution, batch_size=None)
            recipes[name] = recipe.smoke() if smoke_mode() else recipe
    baseline = next(iter(recipes))
    recipes = {baseline: recipes[baseline],
               f"{baseline}, seed {cfg.seed + 1}": replace(recipes[baseline], seed=cfg.seed + 1), **recipes}
    if smoke_mode():
        return {name: recipes[name] for name in ("ResNet50", "EfficientNetV2S + distribution")}
    return recipes | {f"{backbone} {STAGE_ONE_ONLY}": replace(
        cfg, protocol="fold1", backbone=backbone, image_size=None, label_distribution=False, batch_size=None)
        for backbone in FOUNDATIONS}


def missing_for(cfg: Config, data_root: Path) -> str | None:
    """What the dataset lacks to train a run of these settings, in words, or None: the runners check
    every run before they train any."""
    if cfg.label_distribution and not (Path(data_root) / "All_Ratings.xlsx").is_file():
        return "All_Ratings.xlsx, the raters' sheet that its distribution head learns from"
    try:
        protocol_files(data_root, cfg.protocol)
    except DatasetLayoutError:
        return f"the label files of {cfg.protocol}"
    return None


def run_ablation(cfg: Config, data_root: Path, across_folds: bool = False) -> pd.DataFrame:
    """Train and evaluate the ablation's recipes on fold 1, or on each of the five folds (the evidence
    that one recipe is better than another), one run at a time, resumable (a run done is not trained
    again), and compare each with the blog's recipe on the same test faces. A recipe this dataset
    cannot train is skipped, named with what it lacks, before anything trains."""
    folds = FOLDS if across_folds else FOLDS[:1]
    recipes = {}
    for name, recipe in ablation_recipes(cfg).items():
        lacking = [why for fold in folds if (why := missing_for(replace(recipe, protocol=fold), data_root))]
        if lacking and not recipes:
            raise DatasetLayoutError(f"The ablation cannot run on {data_root}: its baseline, {name}, lacks "
                                     f"{lacking[0]}. Nothing was trained. Complete the dataset from the "
                                     "release's zip, then run this cell again.")
        if lacking:
            print(f"Skipped {name}: {Path(data_root)} lacks {lacking[0]}. Add it to include this recipe.")
        else:
            recipes[name] = recipe
    if any(recipe.label_distribution for recipe in recipes.values()):
        rating_shares(data_root, all_labels(data_root))  # a sheet at odds with the labels stops here
    runs = {f"{name}, {fold}" if across_folds else name: replace(recipe, protocol=fold)
            for name, recipe in recipes.items() for fold in folds}
    frozen = [label for label, recipe in runs.items() if recipe.backbone in FOUNDATIONS]  # stage 1 only
    folders, _ = train_and_evaluate(runs, data_root, "the ablation", stage_one_only=frozen)
    return ablation_table({name: folders[k * len(folds):(k + 1) * len(folds)]
                           for k, name in enumerate(recipes)})


# ---------------------------------------------------------------------------------------
# Evaluation: metrics with confidence intervals, groups, folds, the ablation, published results
# ---------------------------------------------------------------------------------------


def regression_metrics(y_true, y_pred) -> dict:
    """Pearson correlation, MAE, RMSE and Spearman correlation of predictions."""
    from scipy import stats

    y_true, y_pred = np.asarray(y_true, float), np.asarray(y_pred, float)
    if np.ptp(y_pred) == 0:
        raise ConstantPredictionError(
            f"The model predicts {y_pred[0]:.3f} for every face, so the correlation is "
            "undefined: it has not learned. Train longer or check the data.")
    return {"PC": float(stats.pearsonr(y_true, y_pred)[0]),
            "MAE": float(np.mean(np.abs(y_true - y_pred))),
            "RMSE": float(np.sqrt(np.mean((y_true - y_pred) ** 2))),
            "Spearman": float(stats.spearmanr(y_true, y_pred)[0]),
            "n": len(y_true)}


def bootstrap_resamples(statistic, data: tuple, samples: int, seed: int) -> np.ndarray:
    """scipy's paired bootstrap: each value the statistic returns, on each resample of the faces
    (the same faces drawn for every array), along the last axis."""
    from scipy import stats

    with warnings.catch_warnings():  # scipy's warning that a NaN resample made its own interval NaN
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        return stats.bootstrap(data, statistic, n_resamples=samples, paired=True, vectorized=True,
                               method="percentile", rng=seed).bootstrap_distribution


def percentile_interval(resamples: np.ndarray, level: float) -> np.ndarray:
    """[low, high] of each value over its resamples (the percentile bootstrap interval), leaving out
    the resamples where a value is undefined (NaN: a small group drawn once)."""
    tail = 50 * (1 - level)
    return np.nanpercentile(resamples, [tail, 100 - tail], axis=-1)


def bootstrap_p_value(resamples: np.ndarray) -> np.ndarray:
    """Two-sided p-value that a difference is zero, from its paired bootstrap resamples (last axis):
    twice the smaller share of them on either side of zero, the observed one counted as a resample."""
    side = np.minimum((resamples <= 0).sum(-1), (resamples >= 0).sum(-1))
    return np.minimum(1.0, 2 * (side + 1) / (resamples.shape[-1] + 1))


METRICS = ("PC", "MAE", "RMSE", "Spearman")


def metrics_along(y_true: np.ndarray, y_pred: np.ndarray, axis: int = -1) -> np.ndarray:
    """PC, MAE, RMSE and Spearman of each row of faces along an axis, stacked in METRICS' order."""
    from scipy import stats

    error = y_pred - y_true
    spearman = stats.pearsonr(stats.rankdata(y_true, axis=axis), stats.rankdata(y_pred, axis=axis), axis=axis)
    return np.stack([stats.pearsonr(y_true, y_pred, axis=axis).statistic, np.abs(error).mean(axis),
                     np.sqrt((error**2).mean(axis)), spearman.statistic])


def bootstrap_metrics(y_true, y_pred, samples: int = 1000, seed: int = 0) -> dict:
    """PC, MAE, RMSE and Spearman with 95 % bootstrap intervals: {metric: (value, low, high)}."""
    y_true, y_pred = np.asarray(y_true, float), np.asarray(y_pred, float)
    point = regression_metrics(y_true, y_pred)
    low, high = percentile_interval(bootstrap_resamples(metrics_along, (y_true, y_pred), samples, seed), 0.95)
    return {name: (point[name], float(low[k]), float(high[k])) for k, name in enumerate(METRICS)}


def with_interval(value: float, low: float, high: float) -> str:
    """A figure and its interval in one cell, e.g. '0.9012 [0.8890, 0.9120]'."""
    return f"{value:.4f} [{low:.4f}, {high:.4f}]"


def with_spread(mean: float, sd: float, signed: bool = False) -> str:
    """A mean over folds and its SD in one cell, e.g. '0.9012 ± 0.0040' ('+0.0050 ± ...' signed)."""
    return f"{mean:{'+' if signed else ''}.4f} ± {sd:.4f}"


def paired_differences(true, predicted, baseline, samples: int = 1000, seed: int = 0) -> dict:
    """PC, MAE, RMSE and Spearman of predicted minus those of baseline on the same faces, with a 95 %
    paired bootstrap interval (the same resampled faces for both) and the two-sided bootstrap p-value:
    {metric: (difference, low, high, p)}. It covers the sampling of test faces, not training noise."""
    true, predicted, baseline = (np.asarray(a, float) for a in (true, predicted, baseline))

    def difference(t, p, b, axis=-1):
        return metrics_along(t, p, axis) - metrics_along(t, b, axis)

    point = difference(true, predicted, baseline)
    resamples = bootstrap_resamples(difference, (true, predicted, baseline), samples, seed)
    (low, high), p = percentile_interval(resamples, 0.95), bootstrap_p_value(resamples)
    return {name: (float(point[k]), float(low[k]), float(high[k]), float(p[k]))
            for k, name in enumerate(METRICS)}


def relative_rmse(inside: np.ndarray, true: np.ndarray, error: np.ndarray, axis: int = -1) -> np.ndarray:
    """RMSE over the true scores' SD of the faces marked inside, along an axis (a row per resample);
    NaN for a resample of a small group that drew none or one of its faces: no spread to measure."""
    count = inside.sum(axis)
    # scores taken from one face's, so that copies of a single face have a variance of exactly 0
    true = true - np.take_along_axis(true, inside.argmax(axis, keepdims=True), axis)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = (inside * true).sum(axis, keepdims=True) / np.expand_dims(count, axis)
        variance = (inside * (true - mean) ** 2).sum(axis) / (count - 1)
        return np.sqrt((inside * error**2).sum(axis) / count / np.where(variance > 0, variance, np.nan))


def relative_rmse_gaps(codes: np.ndarray, true: np.ndarray, error: np.ndarray, axis: int = -1,
                       groups: int = 1) -> np.ndarray:
    """Each group's RMSE/SD minus the other faces', for groups numbered 0 to groups - 1, along an axis."""
    return np.stack([relative_rmse(codes == group, true, error, axis)
                     - relative_rmse(codes != group, true, error, axis) for group in range(groups)])


def group_gaps(predictions: pd.DataFrame, column: str = "finetuned", samples: int = 1000,
               seed: int = 0) -> pd.DataFrame:
    """Each group's RMSE/SD minus the other faces', with a Bonferroni-corrected paired bootstrap interval."""
    true = predictions["score"].to_numpy(float)
    error = predictions[column].to_numpy(float) - true
    names, codes = np.unique(predictions["group"].to_numpy(), return_inverse=True)
    level = 1 - 0.05 / len(names)  # 98.75 % intervals for four groups: 5 % for all together
    gaps = functools.partial(relative_rmse_gaps, groups=len(names))
    low, high = percentile_interval(bootstrap_resamples(gaps, (codes, true, error), samples, seed), level)
    rows = {}
    for code, group in enumerate(map(str, names)):
        inside = codes == code
        own, rest = relative_rmse(inside, true, error), relative_rmse(~inside, true, error)
        rows[group] = {"who": GROUP_NAMES.get(group, group), "N": int(inside.sum()),
                       "RMSE/SD": own, "others": rest, "gap": own - rest,
                       "low": low[code], "high": high[code], "level": level}
    return pd.DataFrame.from_dict(rows, orient="index")


def group_gap_note(gaps: pd.DataFrame) -> str:
    """Sentences naming the groups served worse, only where the gap's interval lies above zero."""
    level = 100 * gaps["level"].iloc[0]
    notes = [f"{row['who']} faces ({group}, n={row['N']}) are served worse than the other faces: RMSE/SD "
             f"{row['RMSE/SD']:.3f} against {row['others']:.3f}, gap {row['gap']:+.3f} "
             f"({level:.2f} % interval {row['low']:+.3f} to {row['high']:+.3f})."
             for group, row in gaps.iterrows() if row["low"] > 0]
    method = (f"A group is named only when the {level:.2f} % paired bootstrap interval of its gap to "
              "the other faces lies above zero (so chance names one in at most 5 % of test sets); "
              "RMSE/SD measures the error against the group's own spread of scores.")
    verdict = notes or ["No group is served measurably worse than the others."]
    return " ".join([*verdict, method])


def aggregate_folds(reports: list[dict]) -> pd.DataFrame:
    """Per-fold PC, MAE and RMSE with each fold's stage, and their mean and SD across folds, as the
    paper reports; refused when the folds were evaluated at different stages."""
    table = pd.DataFrame([{k: r[k] for k in ("PC", "MAE", "RMSE", "n")} | {"stage": r["model"]}
                          for r in reports], index=[r["protocol"] for r in reports])
    if table["stage"].nunique() > 1:
        stages = ", ".join(f"{fold} {stage}" for fold, stage in table["stage"].items())
        raise RunMismatchError(
            f"The folds were evaluated at different stages ({stages}): their mean would mix frozen-head "
            "figures with fine-tuned ones. Run notebook 03 for the frozen folds and notebook 04 for "
            "each (the protocol runner in 04 does both), then average.")
    summary = table[["PC", "MAE", "RMSE"]].agg(["mean", "std"]).assign(stage=table["stage"].iloc[0])
    summary.index = ["mean", "SD"]
    return pd.concat([table, summary]).astype({"n": "Int64"})


PRIMARY = "PC"  # the ablation's one metric for claims: the paper's headline, higher is better


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjustment of p-values (kept in their order): read at 5 %, the chance that a
    family of comparisons names any difference that is not there stays at most 5 %."""
    p = np.asarray(p_values, float)
    order = np.argsort(p, kind="stable")
    adjusted = np.maximum.accumulate((len(p) - np.arange(len(p))) * p[order])
    return np.minimum(1.0, adjusted)[np.argsort(order, kind="stable")]


def corrected_paired_t(differences, test_share: float) -> float:
    """Two-sided p-value of the Nadeau-Bengio corrected resampled t-test on differences paired by fold:
    the variance of their mean grows by test/train faces (test_share), as folds share training faces."""
    from scipy import stats

    differences = np.asarray(differences, float)
    k, spread = len(differences), differences.std(ddof=1)
    if spread == 0:
        return 1.0 if differences.mean() == 0 else 0.0
    t = differences.mean() / np.sqrt((1 / k + test_share) * spread**2)
    return float(2 * stats.t.sf(abs(t), k - 1))


def direction(difference: float, p: float, level: float = 0.05) -> str:
    """A difference in the primary metric in words, where its adjusted p is below the level: e.g.
    'PC higher (p 0.003)'; else 'none shown (p 0.41)'."""
    if p >= level:
        return f"none shown (p {p:.2g})"
    return f"{PRIMARY} {'higher' if difference > 0 else 'lower'} (p {p:.2g})"


def recipe_figures(name: str, folders: list[Path], baseline: list[pd.DataFrame] | None) -> dict:
    """A recipe's evaluations across its folds (one or five): its reports, predictions per fold and
    run records; refused when a fold is not evaluated or was tested on other faces than the baseline's."""
    reports, faces, records = [], [], []
    for k, folder in enumerate(folders):
        report, why_not = current_evaluation(folder)
        if report is None:
            raise RunNotFoundError(f"Recipe {name} ({Path(folder).name}) is {why_not}.")
        predictions = pd.read_csv(Path(folder) / "predictions.csv")
        if baseline is not None and not predictions["file"].equals(baseline[k]["file"]):
            raise RunMismatchError(f"Recipe {name} was tested on other faces than the baseline on "
                                   f"{report['protocol']}: recipes are compared on the same test faces only.")
        reports.append(report)
        faces.append(predictions.assign(predicted=predictions[report["model"]]))
        records.append(read_json(Path(folder) / "run.json"))
    return {"reports": reports, "faces": faces, "records": records}


def difference_from_baseline(recipe: dict, baseline: dict, samples: int,
                             seed: int) -> tuple[float, float, str]:
    """A recipe's difference in the primary metric from the baseline's, on the same test faces: its
    unadjusted p-value, and the difference in words: with one fold the paired bootstrap (its interval),
    across folds the Nadeau-Bengio test of the per-fold differences (their mean ± SD)."""
    pairs = list(zip(recipe["faces"], baseline["faces"], strict=True))
    if len(pairs) == 1:
        [(faces, base)] = pairs
        difference, low, high, p = paired_differences(faces["score"], faces["predicted"], base["predicted"],
                                                      samples, seed)[PRIMARY]
        return difference, p, with_interval(difference, low, high)
    per_fold = [regression_metrics(f["score"], f["predicted"])[PRIMARY]
                - regression_metrics(b["score"], b["predicted"])[PRIMARY] for f, b in pairs]
    sizes = recipe["records"][0]["sizes"]
    p = corrected_paired_t(per_fold, sizes["test"] / (sizes["train"] + sizes["val"]))
    return float(np.mean(per_fold)), p, with_spread(np.mean(per_fold), np.std(per_fold, ddof=1), signed=True)


def fold_figures(reports: list[dict]) -> dict[str, str]:
    """PC, MAE and RMSE of one fold with their 95 % intervals, or of several folds as mean ± SD
    (aggregate_folds': refused when the folds were evaluated at different stages)."""
    if len(reports) == 1:
        return {m: with_interval(reports[0][m], *reports[0]["ci95"][m]) for m in ("PC", "MAE", "RMSE")}
    summary = aggregate_folds(reports)
    return {m: with_spread(summary.loc["mean", m], summary.loc["SD", m]) for m in ("PC", "MAE", "RMSE")}


def ablation_table(runs: dict[str, list[Path]], samples: int = 1000, seed: int = 0) -> pd.DataFrame:
    """One row per recipe (its run folders, one per fold; the first recipe is the baseline), ranked by
    PC on its validation faces: test PC, MAE and RMSE; the difference in PC (the one metric claims rest
    on) from the baseline on the same test faces; whether it is higher or lower with Holm's correction
    across the recipes, which with one fold covers only the sampling of test faces (paired bootstrap)
    and across five folds also training noise (Nadeau-Bengio); time per epoch, peak GPU memory, runtime."""
    names = list(runs)
    baseline = recipe_figures(names[0], runs[names[0]], None)
    figures = {names[0]: baseline} | {name: recipe_figures(name, runs[name], baseline["faces"])
                                      for name in names[1:]}
    compared = {name: difference_from_baseline(figures[name], baseline, samples, seed) for name in names[1:]}
    adjusted = dict(zip(compared, holm([p for _, p, _ in compared.values()]), strict=True))
    folds = [report["protocol"] for report in baseline["reports"]]
    verdict = (f"beyond the sampling of test faces ({folds[0]}, one seed), Holm" if len(folds) == 1
               else f"across the {len(folds)} folds (Nadeau-Bengio corrected t-test), Holm")
    rows = {}
    for name, recipe in figures.items():
        stage = recipe["reports"][0]["model"]
        tuned = [record["finetune" if stage == "finetuned" else "frozen"] for record in recipe["records"]]
        seconds = (tuned[0].get("seconds_per_epoch") if stage == "finetuned"  # stage 1: the head's epochs
                   else recipe["records"][0].get("head_seconds_per_epoch"))
        difference, _, words = compared.get(name, (0.0, 1.0, "baseline"))
        rows[name] = {f"validation {PRIMARY}": float(np.mean([t["val"][PRIMARY] for t in tuned])),
                      "stage": stage_words(stage, seconds),
                      **fold_figures(recipe["reports"]),
                      f"Δ{PRIMARY}": words,
                      verdict: direction(difference, adjusted[name]) if name in adjusted else "baseline",
                      "s/epoch": seconds,
                      "peak GPU GB": tuned[0].get("peak_gpu_gb"), "runtime": trained_on(recipe["records"][0])}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.insert(1, "rank on validation", table[f"validation {PRIMARY}"].rank(ascending=False).astype(int))
    test = "test figures" if len(folds) == 1 else "test figures: mean ± SD over folds"
    return table.sort_values("rank on validation", kind="stable").rename_axis(
        f"recipe (Δ: minus {names[0]}; {test})")


def ablation_verdict(table: pd.DataFrame) -> str:
    """What the ablation's table supports, in sentences: which recipe ranks first on validation, which
    recipes differ from the baseline in the primary metric, and how far that claim reaches."""
    verdict = next(column for column in table.columns if column.endswith(", Holm"))
    baseline = table.index[table[verdict] == "baseline"][0]
    named = [f"{name} ({table.loc[name, verdict]})" for name in table.index
             if table.loc[name, verdict].startswith(PRIMARY)]
    first = table.index[0]
    sentences = [f"On validation, {first} ranks first (PC {table.loc[first, f'validation {PRIMARY}']:.4f})."]
    if verdict.startswith("across"):
        sentences.append(
            f"Across the folds, {PRIMARY} differs from {baseline}'s for {'; '.join(named)}: claims about "
            "recipes, as the test covers training noise and test faces." if named else
            f"Across the folds, no recipe's {PRIMARY} differs from {baseline}'s by more than training "
            "noise and test faces make it vary.")
    else:
        if named:
            sentences.append(f"On this fold, {PRIMARY} differs from {baseline}'s beyond the sampling of "
                             f"test faces for {'; '.join(named)}.")
        seeds = [name for name in table.index if name.startswith(f"{baseline}, seed")]
        sentences.append("One fold and one seed compare trained networks, not recipes: " + (
            f"{seeds[0]} differs from {baseline} by Δ{PRIMARY} {table.loc[seeds[0], f'Δ{PRIMARY}']} with "
            "nothing but the seed changed." if seeds else "a seed alone moves the figures too.")
            + " Whether a recipe is better needs the five folds (ABLATION_ACROSS_FOLDS = True).")
    count = len(table) - 1
    sentences.append(f"Holm's correction covers the {count} comparison{'s' * (count != 1)} with {baseline}.")
    return " ".join(sentences)


COMBOLOSS = "ComboLoss (SEResNeXt-50, 2020)"
TWO_D_FAP = "2D-FAP (MobileNetV2, dual label distribution, 2022)"
PAPER_CHOICE = "none described: a fixed 20,000 iterations"
ON_TEST = "on the test fold (optimistic)"  # ComboLoss' loaders return the test split as 'val'
# Where each row was read. The paper's figures and its 20,000 iterations: the dataset's README, which
# shows the paper's 5-fold and 60/40 tables (HCIILAB/SCUT-FBP5500-Database-Release). ComboLoss: its
# README's tables (lucasxlu/ComboLoss). 2D-FAP: others' tables; how it trained, its 2D_FAP.py
# (enquan/2D_FAP): `# setup_seed(20)`, `# if correlation >= 0.931: torch.save(...)`, and
# `--aligned` True by default, reading an `aligned` image folder that the release does not hold.
TWO_D_FAP_SOURCE = ("arXiv 2212.01742, as compiled by others (its own table not read here); "
                    "trained and tested on its own aligned crops of the faces")
TWO_D_FAP_CHOICE = ("the last of a fixed 90 epochs, but its released code is unseeded and keeps a "
                    "commented-out 'save if test PC >= 0.931': this suggests reruns judged on test "
                    "(optimistic)")
COMBOLOSS_FOLDS = "lucasxlu/ComboLoss, 5-fold table"
# The paper's folds: its 5-fold table's columns 1-5. They average to its Average column within
# rounding, but for ResNet-18's MAE: 0.2427 from the folds as printed, 0.2419 printed as the average.
PAPER_FOLDS = "paper, 5-fold table, per fold"
ON_VALIDATION = "on validation"           # ours: carved from the training part
PUBLISHED = pd.DataFrame(
    [("5-fold CV, mean", "AlexNet", 0.8634, 0.2651, 0.3481, "paper, 5-fold table", PAPER_CHOICE),
     ("5-fold CV, mean", "ResNet-18", 0.8900, 0.2419, 0.3166, "paper, 5-fold table", PAPER_CHOICE),
     ("5-fold CV, mean", "ResNeXt-50", 0.8997, 0.2291, 0.3017, "paper, 5-fold table", PAPER_CHOICE),
     ("5-fold CV, mean", COMBOLOSS, 0.9199, 0.2050, 0.2704, "lucasxlu/ComboLoss", ON_TEST),
     ("5-fold CV, mean", TWO_D_FAP, 0.928, 0.196, 0.259, TWO_D_FAP_SOURCE, TWO_D_FAP_CHOICE),
     ("fold1", "AlexNet", 0.8667, 0.2633, 0.3408, PAPER_FOLDS, PAPER_CHOICE),
     ("fold1", "ResNet-18", 0.8847, 0.2480, 0.3258, PAPER_FOLDS, PAPER_CHOICE),
     ("fold1", "ResNeXt-50", 0.8985, 0.2306, 0.3025, PAPER_FOLDS, PAPER_CHOICE),
     ("fold1", COMBOLOSS, 0.9157, 0.2119, 0.2751, COMBOLOSS_FOLDS, ON_TEST),
     ("fold2", "AlexNet", 0.8645, 0.2605, 0.3449, PAPER_FOLDS, PAPER_CHOICE),
     ("fold2", "ResNet-18", 0.8792, 0.2459, 0.3286, PAPER_FOLDS, PAPER_CHOICE),
     ("fold2", "ResNeXt-50", 0.8932, 0.2285, 0.3084, PAPER_FOLDS, PAPER_CHOICE),
     ("fold2", COMBOLOSS, 0.9164, 0.2084, 0.2751, COMBOLOSS_FOLDS, ON_TEST),
     ("fold3", "AlexNet", 0.8615, 0.2681, 0.3538, PAPER_FOLDS, PAPER_CHOICE),
     ("fold3", "ResNet-18", 0.8929, 0.2430, 0.3184, PAPER_FOLDS, PAPER_CHOICE),
     ("fold3", "ResNeXt-50", 0.9016, 0.2260, 0.3016, PAPER_FOLDS, PAPER_CHOICE),
     ("fold3", COMBOLOSS, 0.9215, 0.1998, 0.2711, COMBOLOSS_FOLDS, ON_TEST),
     ("fold4", "AlexNet", 0.8678, 0.2609, 0.3438, PAPER_FOLDS, PAPER_CHOICE),
     ("fold4", "ResNet-18", 0.8932, 0.2383, 0.3107, PAPER_FOLDS, PAPER_CHOICE),
     ("fold4", "ResNeXt-50", 0.8990, 0.2349, 0.3044, PAPER_FOLDS, PAPER_CHOICE),
     ("fold4", COMBOLOSS, 0.9208, 0.2050, 0.2693, COMBOLOSS_FOLDS, ON_TEST),
     ("fold5", "AlexNet", 0.8566, 0.2728, 0.3576, PAPER_FOLDS, PAPER_CHOICE),
     ("fold5", "ResNet-18", 0.9004, 0.2383, 0.2994, PAPER_FOLDS, PAPER_CHOICE),
     ("fold5", "ResNeXt-50", 0.9064, 0.2258, 0.2918, PAPER_FOLDS, PAPER_CHOICE),
     ("fold5", COMBOLOSS, 0.9250, 0.1999, 0.2615, COMBOLOSS_FOLDS, ON_TEST),
     ("60/40", "AlexNet", 0.8298, 0.2938, 0.3819, "paper, 60/40 table", PAPER_CHOICE),
     ("60/40", "ResNet-18", 0.8513, 0.2818, 0.3703, "paper, 60/40 table", PAPER_CHOICE),
     ("60/40", "ResNeXt-50", 0.8777, 0.2518, 0.3325, "paper, 60/40 table", PAPER_CHOICE),
     ("60/40", f"{COMBOLOSS}, best of its ablation settings on the test split", 0.9117, 0.2126,
      0.2813, "lucasxlu/ComboLoss", ON_TEST)],
    columns=["protocol", "model", "PC", "MAE", "RMSE", "source", "epoch chosen"])


def published_results(protocol: str) -> pd.DataFrame:
    """The published results to set beside a run of this protocol: its family's (and same fold's)."""
    families = ["60/40"] if protocol == "60/40" else [protocol, "5-fold CV, mean"]
    return PUBLISHED[PUBLISHED["protocol"].isin(families)]


def results_table(root: Path | None = None) -> pd.DataFrame:
    """Every result the work folder's evaluations hold: each evaluated fold-1 run (one fold, the
    ablation's recipes) and 60/40 run, and each 5-fold protocol done (the mean over its folds, ± SD),
    with its recipe, how its epoch was chosen, and the runtime that fine-tuned it."""
    rows = []
    for folder, record in saved_runs(root):
        protocol, (report, _) = record["config"]["protocol"], current_evaluation(folder)
        if report is None or protocol not in ("fold1", "60/40"):
            continue
        figures = [{m: f"{report[m]:.4f}" for m in ("PC", "MAE", "RMSE")} | {"protocol": protocol}]
        reports = [current_evaluation(fold)[0] for fold in fold_runs(folder)]
        if reports and all(reports) and len({r["model"] for r in reports}) == 1:
            summary = aggregate_folds(reports)
            figures.append({m: with_spread(summary.loc["mean", m], summary.loc["SD", m])
                            for m in ("PC", "MAE", "RMSE")} | {"protocol": "5-fold CV, mean ± SD"})
        runtime = trained_on(record)
        for row in figures:
            rows.append({"protocol": row.pop("protocol"), "recipe": describe_settings(record["config"]),
                         "stage": stage_words(report["model"], record.get("head_seconds_per_epoch")),
                         **row, "epoch chosen": ON_VALIDATION,
                         "runtime": runtime,
                         "run": folder.name + (" (SMOKE: meaningless)" if record.get("smoke") else "")})
    columns = ["protocol", "recipe", "stage", "PC", "MAE", "RMSE", "epoch chosen", "runtime", "run"]
    return pd.DataFrame(rows, columns=columns).sort_values(["protocol", "recipe"], ignore_index=True)


def as_markdown(table: pd.DataFrame) -> str:
    """A table as GitHub markdown, for the README."""
    lines = [list(table.columns), ["---"] * len(table.columns), *table.astype(str).to_numpy().tolist()]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


def accuracy_note(folder: Path) -> str:
    """How far off the models that score in notebook 05 are: once the 5-fold protocol's models score
    and each is evaluated, their mean test figures across folds; else this run's test figures if
    evaluated, else the paper's, so labelled."""
    folds = scoring_folds(folder)
    reports = [current_evaluation(fold)[0] for fold in folds]
    if folds and all(reports):
        return folds_accuracy_note(reports)
    report, why_not = current_evaluation(folder)
    if report:
        return (f"This run's {STAGE_NAMES[report['model']]} model on its {report['n']:,} test faces "
                f"({report['protocol']}, from its evaluation.json): MAE {report['MAE']:.2f} and RMSE "
                f"{report['RMSE']:.2f} score points, PC {report['PC']:.3f}.")
    paper = PUBLISHED.set_index(["protocol", "model"]).loc[("5-fold CV, mean", "ResNeXt-50")]
    return (f"This run's model: {why_not}. For scale only, the paper's "
            f"ResNeXt-50 errs by MAE {paper['MAE']:.2f} and RMSE {paper['RMSE']:.2f} score points "
            "(the paper's figures, 5-fold mean, not this model's).")


def folds_accuracy_note(reports: list[dict]) -> str:
    """The fold models' test figures (each on its own fold's test faces) as mean ± SD across the folds."""
    table = aggregate_folds(reports)
    mean, sd = table.loc["mean"], table.loc["SD"]
    return (f"The {len(reports)} fold models that score here, each on its own fold's "
            f"{count_span([r['n'] for r in reports])} test faces (from their evaluation.json; mean ± SD "
            f"across the folds): MAE {mean['MAE']:.2f} ± {sd['MAE']:.2f} and RMSE {mean['RMSE']:.2f} ± "
            f"{sd['RMSE']:.2f} score points, PC {mean['PC']:.3f} ± {sd['PC']:.3f}. Their mean, which 05 "
            "prints, has no held-out faces left to be measured on: every dataset face helped train some "
            "of them.")


# ---------------------------------------------------------------------------------------
# Bundles: a trained run in one .zip (notebook 04 makes it), scored with anywhere (notebook 05)
# ---------------------------------------------------------------------------------------

BUNDLE_FORMAT = 1              # bump when what a bundle holds changes
MANIFEST = "bundle.json"       # in a bundle: its format, recipe version, run and each member's hash
BUNDLE_FILE = "bundle.zip"     # a bundle's name on the Hugging Face Hub, beside its model card
# The project's own published run: 05 scores with it as RUN_NAME = "hf://" + PROJECT_MODEL. Not
# published yet; the README names the same.
PROJECT_MODEL = "scut-fbp5500/how-attractive"
DATASET_HOME = "https://github.com/HCIILAB/SCUT-FBP5500-Database-Release"


def bundle_folders(folder: Path) -> list[Path]:
    """The runs a run's bundle holds: the run, and its 5-fold protocol's folds if 05 scores with them."""
    return [Path(folder), *[fold for fold in scoring_folds(folder) if fold != Path(folder)]]


def bundle_members(folders: list[Path]) -> dict[str, Path]:
    """What a run's bundle holds (folders: bundle_folders), by name in the zip, laid out as in the work
    folder (runs/<run>/...): per run its record (settings, framing, versions), evaluation, current model
    and that model's reference, and the 5-fold reference when there is one. Refuses a run 04 has not
    evaluated."""
    members = {}
    for run in folders:
        report, why_not = current_evaluation(run)
        if report is None:
            raise BundleError(f"Run {run.name} cannot be bundled: {why_not}. A bundle carries its model's "
                              "test figures, so run notebook 04 on it first.")
        model = current_model_path(run)
        for path in (run / "run.json", run / "evaluation.json", model, run / f"reference-{model.stem}.json"):
            members[f"runs/{run.name}/{path.name}"] = path
    joined = out_of_fold_path(folders[0])
    if joined and joined.is_file():
        members[f"runs/{joined.name}"] = joined
    return members


def model_card(folders: list[Path], home: str) -> str:
    """A run's model card (the bundle's README.md, and its Hub repo's; folders: bundle_folders): what it
    predicts, whose taste, the licence, intended use and misuse, its test figures with their intervals,
    how its epochs were chosen, and how to score with it."""
    folder, folds = Path(folders[0]), folders[1:]
    record, report = read_json(Path(folder) / "run.json"), read_json(Path(folder) / "evaluation.json")
    cfg, stage = record["config"], STAGE_NAMES[report["model"]]
    figures = "\n".join(f"- {name}: {with_interval(report[name], *report['ci95'][name])}"
                        for name in ("PC", "MAE", "RMSE"))
    tuned = record.get("finetune")
    epochs = (f"the fine-tune kept its epoch {tuned['best_epoch']} of {tuned['epochs']}, the one with the "
              f"lowest {tuned['chosen_on']} on the validation faces" if tuned and report["model"] != "frozen"
              else f"the head's early stopping kept its epoch with the lowest {selection_loss(Config(**cfg))}"
                   f" on the validation faces (patience {cfg['head_patience']})")
    committee = (f"\nIt scores with the {len(folds) + 1} fold models of its 5-fold protocol; the "
                 "figures above are this fold's, each fold's own in its evaluation.json." if folds else "")
    smoke = ("\n**SMOKE RUN**: synthetic faces and untrained weights, made to test the code. Its figures "
             "and scores mean nothing.\n" if record.get("smoke") else "")
    return f"""---
license: other
license_name: scut-fbp5500-non-commercial
license_link: {DATASET_HOME}
library_name: keras
tags: [keras, image-regression, facial-beauty-prediction, scut-fbp5500]
---
# {Path(folder).name}: facial beauty prediction on SCUT-FBP5500
{smoke}
**What it predicts.** The mean 1-5 rating that the 60 raters of SCUT-FBP5500 (aged 18-27, at one
Chinese university) would give a face, in a photo framed like the dataset's: frontal, neutral, evenly lit.
It is the average taste of that one panel, not a measure of anyone's worth, and a different photo of
the same face changes it. The dataset is mostly Asian faces.

**Licence.** SCUT-FBP5500 is for non-commercial research use only ({DATASET_HOME}). This model was
trained on it, and those terms travel with it: no commercial use.

**Intended use.** Curiosity and teaching: scoring your own photo, seeing what a network learned from
these raters and how far to trust it; research on facial beauty prediction.
**Misuse.** Judging, ranking or choosing people (hiring, dating, admissions, moderation), scoring anyone
without their consent, or any commercial use.

**The model.** {describe_settings(cfg)}, {stage} (stage {'2' if report['model'] != 'frozen' else '1'}),
{cfg['image_size']} px, trained on {cfg['protocol']} of dataset {record['dataset']} by
{describe_code((tuned or {}).get('code', record.get('code')))} of https://github.com/{home}, recipe
version {record['recipe']}.

**Test figures** ({report['n']:,} test faces of {report['protocol']}, never used to choose anything;
95 % bootstrap intervals over the test faces):
{figures}

**How its epochs were chosen.** On validation faces carved from the training part, never on the test
faces: {epochs}.{committee}

**Score a photo with it.** Open notebook 05 of https://github.com/{home} and set `RUN_NAME` to this
bundle: its path, its https:// address, or `hf://owner/name` where it is published. The bundle holds
the model, the out-of-sample reference that turns a score into "more attractive than X %", the face
framing (in run.json), run.json and evaluation.json.
"""


def make_bundle(folder: Path, home: str) -> Path:
    """Notebook 04's bundle of an evaluated run, bundles/<run>.zip in the work folder: its members
    (bundle_members), a manifest and the model card as README.md; written anew only when a member changed."""
    folder, folders = Path(folder), bundle_folders(folder)
    path, members = work_dir() / "bundles" / f"{folder.name}.zip", bundle_members(folders)
    manifest = {"bundle": BUNDLE_FORMAT, "recipe": RECIPE_VERSION, "run": folder.name,
                "files": {name: file_hash(source) for name, source in members.items()}}
    if path.is_file() and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            if MANIFEST in archive.namelist() and json.loads(archive.read(MANIFEST)) == manifest:
                print(f"Bundle {path} is up to date ({path.stat().st_size / 1e6:,.1f} MB).")
                return path
    size, free = sum(source.stat().st_size for source in members.values()), shutil.disk_usage(work_dir()).free
    if size > free:
        raise NoSpaceError(f"The bundle needs {size / 1e9:.2f} GB and {work_dir()} has {free / 1e9:.2f} GB "
                           "free (in Colab: your Drive, bin included). Make room, then run this cell again.")

    def write(file: Path) -> None:
        with zipfile.ZipFile(file, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(MANIFEST, json.dumps(manifest, indent=1))
            archive.writestr("README.md", model_card(folders, home))
            for name, source in members.items():  # a .keras file is a zip already
                archive.write(source, name, zipfile.ZIP_STORED if source.suffix == ".keras" else None)

    write_atomically(path, write, empty_old=True)
    print(f"Bundle {path} written ({path.stat().st_size / 1e6:,.1f} MB): {len(members)} files of "
          f"{len(folders)} run(s), with its model card.")
    return path


def is_bundle_source(name: str) -> bool:
    """True when 05's RUN_NAME names a bundle (a .zip path, an http(s) URL, hf://owner/name), not a run."""
    return name.startswith(("https://", "http://", "hf://")) or name.endswith(".zip") or Path(name).is_file()


def run_to_score(name: str | None = None) -> tuple[Path, dict]:
    """Notebook 05's run and its record: FBP_RUN if set (headless), else name: a saved run's folder name
    (None: the run notebook 02 set up), or a bundle's path, http(s) URL or hf://owner/name, opened in
    the work folder."""
    name = os.environ.get("FBP_RUN") or name
    if name and is_bundle_source(name):
        folder = open_bundle(name)
        record = read_json(folder / "run.json")
        print(f"Run {folder.name} (from the bundle {name}): {describe_settings(record['config'])}.")
        return folder, record
    try:
        return current_run(name)
    except RunNotFoundError as error:
        raise RunNotFoundError(f"{error} Or score with a trained run someone shared: set RUN_NAME to its "
                               "bundle's path, https:// address or hf://owner/name.") from None


def open_bundle(source: str) -> Path:
    """The run folder of a bundle (a path, an http(s) URL, hf://owner/name): fetched once into the work
    folder's bundles/, checked whole, and opened there once, keyed by its content's hash (a bad
    bundle leaves nothing behind)."""
    path = fetch_bundle(source)
    opened = work_dir() / "bundles" / "opened" / file_hash(path)[:16]
    if not (opened / MANIFEST).is_file():
        try:
            check_bundle(path, source)
        except BundleError:
            if path.is_relative_to(work_dir() / "bundles"):  # a download: fetched anew next time
                path.unlink()
            raise
        staging = safe_extract(path, opened.with_name(f".partial-{opened.name}"))
        staging.replace(opened)
    manifest = read_json(opened / MANIFEST)
    check_version(manifest, source)  # again: this checkout may be newer than the one that opened it
    return opened / "runs" / manifest["run"]


def fetch_bundle(source: str) -> Path:
    """A bundle's local file: the path itself, else a download kept in the work folder's bundles/
    (an http(s) URL downloaded once, named by the URL's hash; hf://owner/name through huggingface_hub)."""
    if source.startswith("hf://"):
        return hub_bundle(source.removeprefix("hf://"))
    if source.startswith(("https://", "http://")):
        key = hashlib.sha256(source.encode()).hexdigest()[:16]
        path = work_dir() / "bundles" / "downloads" / f"{key}.zip"
        if not path.is_file():
            write_atomically(path, lambda file: download_bundle(source, file))
        return path
    path = Path(source).expanduser()
    if not path.is_file():
        raise BundleError(f"There is no bundle at {path}. Check the path: a bundle is the .zip notebook 04 "
                          "writes in the work folder's bundles/.")
    return path


def download_bundle(url: str, file: Path) -> None:
    """Download a bundle into file with a progress bar; a refusal, an unreachable address or a download
    cut short says so and keeps nothing."""
    import http.client
    import urllib.error
    import urllib.request

    from tqdm.auto import tqdm

    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(file, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc="bundle") as bar:
                for block in iter(lambda: response.read(1 << 20), b""):
                    bar.update(out.write(block))
        if total and file.stat().st_size < total:
            raise http.client.IncompleteRead(b"", total - file.stat().st_size)
    except urllib.error.HTTPError as error:
        file.unlink(missing_ok=True)
        raise BundleError(f"{url} refused the download (HTTP {error.code}: {error.reason}). Check the "
                          "address: it must download the .zip itself, from a public link.") from None
    except (http.client.HTTPException, urllib.error.URLError, OSError) as error:
        got = file.stat().st_size if file.is_file() else 0
        file.unlink(missing_ok=True)
        cut = got or isinstance(error, http.client.IncompleteRead)
        what = (f"was cut short after {got / 1e6:,.1f} MB" if cut
                else f"could not be reached ({getattr(error, 'reason', error)})")
        raise BundleError(f"The download of {url} {what}; nothing was kept. Check the connection and "
                          "run this cell again, or download the file and set RUN_NAME to its path.") from None


def hub_bundle(repo: str) -> Path:
    """A bundle published on the Hugging Face Hub (notebook 04's publish cell), downloaded into the
    work folder's bundles/hub/ (huggingface_hub fetches it again only when the Hub's copy changes)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
    )

    local = work_dir() / "bundles" / "hub" / repo.replace("/", "--")
    try:
        return Path(hf_hub_download(repo, BUNDLE_FILE, local_dir=local))
    except RepositoryNotFoundError:
        problem = ("is not on the Hugging Face Hub, or is private (then set HF_TOKEN to a token that may "
                   "read it). Check the name: hf://owner/name")
    except RemoteEntryNotFoundError:
        problem = f"holds no {BUNDLE_FILE}: it is not a run published by notebook 04"
    except LocalEntryNotFoundError:
        problem = ("could not be downloaded: the Hugging Face Hub is not reachable from this runtime, and no "
                   "copy is in the work folder yet. Check the connection, then run this cell again")
    except HfHubHTTPError as error:
        problem = f"was refused by the Hugging Face Hub ({str(error).splitlines()[0]})"
    raise BundleError(f"hf://{repo} {problem}.")


def check_bundle(path: Path, source: str) -> None:
    """Raise a BundleError unless the file is a whole zip holding a manifest, every member it lists
    and nothing else, each name inside its folder, made by this recipe version."""
    if is_html_file(path) or not zipfile.is_zipfile(path):
        kind = "a web page" if is_html_file(path) else "not a zip"
        raise BundleError(f"{source} is not a bundle: it is {kind}. A bundle is the .zip notebook 04 writes "
                          "in the work folder's bundles/: check the path or address.")
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        if MANIFEST not in names:
            raise BundleError(f"{source} is a zip but not a bundle: it has no {MANIFEST}. Use the .zip "
                              "notebook 04 writes in the work folder's bundles/.")
        manifest = json.loads(archive.read(MANIFEST))
        check_version(manifest, source)
        expected = {MANIFEST, "README.md", *manifest["files"]}
        outside = [name for name in expected if Path(name).is_absolute() or ".." in Path(name).parts]
        if expected != names or outside:
            odd = sorted((expected ^ names) | set(outside))
            raise BundleError(f"{source} is not a whole bundle: {', '.join(odd[:3])} "
                              f"{'is' if len(odd) == 1 else 'are'} missing, extra or outside its folder. "
                              "Ask for the bundle again, or make it again with notebook 04.")
        broken = archive.testzip()
    if broken:
        raise BundleError(f"{source} is damaged: {broken} fails its checksum. Download it again, or make it "
                          "again with notebook 04.")


def check_version(manifest: dict, source: str) -> None:
    """Raise a BundleError when a bundle was made by another recipe version or bundle format than this one."""
    made = (manifest.get("recipe"), manifest.get("bundle"))
    if made != (RECIPE_VERSION, BUNDLE_FORMAT):
        raise BundleError(f"{source} was made by version {made[0]} of the training recipe (bundle format "
                          f"{made[1]}), and this checkout's is {RECIPE_VERSION} (format {BUNDLE_FORMAT}): "
                          "its model does not fit this code. Check out the commit its model card names, or "
                          "ask for a bundle made by this version.")


def hub_login() -> None:
    """Log in to the Hugging Face Hub unless a token is found (HF_TOKEN, or a log-in saved before):
    huggingface_hub's log-in box in a notebook."""
    from huggingface_hub import get_token, notebook_login

    if get_token():
        print("A Hugging Face token was found (HF_TOKEN or a saved log-in).")
    else:
        notebook_login()


def publish_bundle(path: Path, repo: str | None = None) -> str | None:
    """Publish a bundle to the Hugging Face Hub, its model card as the repo's README; repo None is
    <your user>/<run>. Returns hf://repo; publishes nothing when the Hub has this bundle already, and
    says what to do (returning None) when no log-in is found."""
    from huggingface_hub import CommitOperationAdd, HfApi, get_token

    token = get_token()
    if token is None:
        print("Not published: no Hugging Face log-in yet. Log in with the box above (a token with write "
              "access) or set HF_TOKEN, then run this cell again.")
        return None
    api, path = HfApi(token=token), Path(path)
    repo = repo or f"{api.whoami()['name']}/{path.stem}"
    api.create_repo(repo, exist_ok=True)
    published = [info for info in api.get_paths_info(repo, [BUNDLE_FILE]) if getattr(info, "lfs", None)]
    if published and published[0].lfs.sha256 == file_hash(path):
        print(f"hf://{repo} has this bundle already: nothing to publish.")
        return f"hf://{repo}"
    with zipfile.ZipFile(path) as archive:
        card = archive.read("README.md")
    files = [CommitOperationAdd(BUNDLE_FILE, str(path)), CommitOperationAdd("README.md", card)]
    api.create_commit(repo, files, commit_message=f"Bundle of run {path.stem}")
    print(f"Published: https://huggingface.co/{repo}. Anyone can score with it in notebook 05: "
          f"RUN_NAME = \"hf://{repo}\".")
    return f"hf://{repo}"


# ---------------------------------------------------------------------------------------
# Faces: from any photo to a face framed like the dataset's, a score, a percentile, a map
# ---------------------------------------------------------------------------------------

DETECTION_SIDE = 640          # photos are shrunk to this longest side before detection
MIN_CONFIDENCE = 0.9


@dataclass
class Face:
    """One detected face: its box (x, y, width, height) and eye positions in the photo's pixels."""

    box: tuple[float, float, float, float]
    left_eye: tuple[float, float]
    right_eye: tuple[float, float]
    confidence: float
    pixel: float = 1.0         # one pixel of the image the detector saw, in the photo's pixels


@dataclass(frozen=True)
class PhotoFace:
    """A face found in a photo: the photo's name and upright pixels, the face's number in it
    (largest first) and what the detector found."""

    photo: str
    image: object              # the photo as a PIL image
    number: int
    detection: Face

    @property
    def label(self) -> str:
        """How the notebook names the face, e.g. 'me.jpg, face 1'."""
        return f"{self.photo}, face {self.number}"


def read_photo(source: Path | bytes, name: str | None = None):
    """Open a photo as upright 8-bit RGB: EXIF rotation applied; HEIC, 16-bit, greyscale, palette
    and alpha converted."""
    import io

    import pillow_heif
    from PIL import Image, ImageOps, UnidentifiedImageError

    pillow_heif.register_heif_opener()  # HEIC, the format of iPhones and Macs
    name = name or Path(source).name
    if isinstance(source, Path) and not source.is_file():
        raise PhotoError(f"{source}: no such file.")
    try:
        image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
        image.load()
        image = ImageOps.exif_transpose(image)
    except UnidentifiedImageError:
        raise PhotoError(f"{name}: this is not an image file (or a format we cannot read: use "
                         "JPEG, PNG or HEIC).") from None
    except Image.DecompressionBombError:
        raise PhotoError(f"{name}: the photo has too many pixels to read (more than "
                         f"{2 * Image.MAX_IMAGE_PIXELS / 1e6:.3g} million, Pillow's limit against "
                         "files that unpack into more memory than a machine has). Resize it or "
                         "export it smaller, e.g. 12 megapixels (plenty: the face is scored at a few "
                         "hundred pixels), and try again.") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise PhotoError(f"{name}: the image cannot be read ({error}); the file may be cut short. "
                         "Try exporting it again as JPEG.") from None
    if image.mode.startswith("I"):  # 16-bit greyscale (I;16, or I in older Pillow): 0-65535
        image = image.point(lambda value: value / 257)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image)
    return image.convert("RGB")


@functools.cache
def face_detector():
    """The MTCNN face detector (TensorFlow; its weights ship inside the package)."""
    import gc
    import traceback

    from mtcnn import MTCNN

    # joblib, loading the weights, leaves lz4's reader to be cleaned up after it closed the file;
    # Python 3.13 reports each such clean-up as "Exception ignored ... I/O operation on closed
    # file" (gh-62948), harmless but red. Only those reports are dropped, and only while loading.
    original = sys.unraisablehook

    def hook(report):
        frames = traceback.extract_tb(report.exc_traceback) if report.exc_traceback else []
        closed = isinstance(report.exc_value, ValueError) and "on closed file" in str(report.exc_value)
        if not (closed and frames and Path(frames[-1].filename).parts[-3:-1] == ("lz4", "frame")):
            original(report)

    sys.unraisablehook = hook
    try:
        detector = MTCNN()
        gc.collect()  # any such reader left in a reference cycle is cleaned up here, not later
    finally:
        sys.unraisablehook = original
    return detector


def detect_faces(image, max_side: int = DETECTION_SIDE) -> list[Face]:
    """Faces in an RGB photo, largest first; detection runs on a copy shrunk to max_side."""
    scale = min(1.0, max_side / max(image.size))
    small = image if scale == 1.0 else image.resize(
        (round(image.width * scale), round(image.height * scale)), reducing_gap=2.0)
    try:
        found = face_detector().detect_faces(np.asarray(small))
    except ValueError as error:  # Keras < 3.14: a stage left with no candidate gets an empty batch
        if "empty output" not in str(error):
            raise
        found = []
    faces = [Face(box=tuple(float(v) / scale for v in f["box"]),
                  left_eye=tuple(float(v) / scale for v in f["keypoints"]["left_eye"]),
                  right_eye=tuple(float(v) / scale for v in f["keypoints"]["right_eye"]),
                  confidence=float(f["confidence"]), pixel=1 / scale)
             for f in found if f["confidence"] >= MIN_CONFIDENCE]
    return sorted(faces, key=lambda f: f.box[2] * f.box[3], reverse=True)


def eyes_of(face: Face) -> tuple[np.ndarray, np.ndarray]:
    """The face's eyes as (left, right) in image order, whatever the detector called them."""
    eyes = sorted([np.array(face.left_eye), np.array(face.right_eye)], key=lambda e: e[0])
    return eyes[0], eyes[1]


def measure_framing(paths: list[str], limit: int = 200, seed: int = 0) -> dict:
    """Where the eyes sit in the dataset's images, as fractions of the image size (medians)."""
    from PIL import Image
    from tqdm.auto import tqdm

    rng = np.random.default_rng(seed)
    chosen = rng.choice(paths, size=min(limit, len(paths)), replace=False)
    rows = []
    for path in tqdm(chosen, desc="measuring the dataset's framing"):
        image = Image.open(path).convert("RGB")
        faces = detect_faces(image)
        if faces:
            left, right = eyes_of(faces[0])
            x, y, w, h = faces[0].box
            rows.append([*(((left + right) / 2) / image.size), np.linalg.norm(right - left) / image.width,
                         w / image.width, h / image.height])
    if len(rows) < 10:
        raise FramingError(f"Faces were found in only {len(rows)} of {len(chosen)} dataset images; "
                           "the framing cannot be measured from them.")
    eye_x, eye_y, eye_distance, box_w, box_h = np.median(np.array(rows), axis=0)
    return {"eye_center_x": eye_x, "eye_center_y": eye_y, "eye_distance": eye_distance,
            "box_width": box_w, "box_height": box_h, "faces_measured": len(rows),
            "images_tried": len(chosen)}


def framing_for(labels: pd.DataFrame) -> dict:
    """The framing of the dataset of these labels (all_labels'), measured once and kept in the work
    folder as framing-<dataset>.json; a synthetic dataset's is drawn, in its root."""
    path = work_dir() / f"framing-{dataset_fingerprint(labels)}.json"
    if path.is_file():
        return json.loads(path.read_text())
    drawn = Path(labels["path"].iloc[0]).parents[1] / "synthetic_framing.json"  # root/Images/file
    framing = json.loads(drawn.read_text()) if drawn.is_file() else measure_framing(labels["path"].tolist())
    save_json(path, framing)
    return framing


def align_face(image, face: Face, framing: dict, size: int):
    """Rotate, scale and crop so that the eyes are level and sit where the dataset has them; a face
    larger than the crop is shrunk to its scale first."""
    from PIL import Image

    left, right = eyes_of(face)
    angle = np.arctan2(right[1] - left[1], right[0] - left[0])
    scale = framing["eye_distance"] * size / np.linalg.norm(right - left)  # crop pixels per photo pixel
    center = (left + right) / 2
    target = np.array([framing["eye_center_x"], framing["eye_center_y"]]) * size
    matrix = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]) / scale
    offset = center - matrix @ target  # a crop pixel's point in the photo: matrix @ point + offset
    if scale < 1:
        image, matrix, offset = shrunk_around(image, matrix, offset, size, scale)
    (a, b), (d, e) = matrix
    return image.transform((size, size), Image.AFFINE, (a, b, offset[0], d, e, offset[1]),
                           resample=Image.BICUBIC, fillcolor=(128, 128, 128))


def shrunk_around(image, matrix: np.ndarray, offset: np.ndarray, size: int,
                  scale: float) -> tuple[object, np.ndarray, np.ndarray]:
    """The part of the photo a crop covers, shrunk to the crop's scale (Lanczos, which averages a
    large photo's grain instead of aliasing it), and the crop's mapping into that part."""
    from PIL import Image

    corners = np.array([[0, 0], [size, 0], [0, size], [size, size]]) @ matrix.T + offset
    margin = 4 / scale  # a few crop pixels around the crop, for the filters' reach
    low = np.clip(np.floor(corners.min(axis=0) - margin), 0, image.size)
    high = np.clip(np.ceil(corners.max(axis=0) + margin), low + 1, image.size)
    shrunk = image.resize(tuple(np.maximum(1, np.round((high - low) * scale)).astype(int)),
                          Image.LANCZOS, box=(*low, *high), reducing_gap=3.0)
    ratio = np.array(shrunk.size) / (high - low)
    return shrunk, matrix * ratio[:, None], (offset - low) * ratio


MAX_ENLARGEMENT = 2.0  # a face is enlarged at most this much to fill the crop


def min_eye_distance(framing: dict, size: int) -> int:
    """Pixels a face needs between its eyes in the photo: the dataset's at the model's input size
    (framing["eye_distance"] * size: 0.21 x 350 = 74 with the synthetic framing) halved, rounded up."""
    # Under half, a face has less than a quarter of the pixels of any face the model learned from.
    return int(np.ceil(framing["eye_distance"] * size / MAX_ENLARGEMENT))


def check_face_size(face: Face, framing: dict, size: int) -> None:
    """Refuse a face too small in the photo: one enlarged over MAX_ENLARGEMENT times to be aligned."""
    needed = min_eye_distance(framing, size)
    left, right = eyes_of(face)
    apart = np.linalg.norm(right - left)
    if apart < needed:
        raise PhotoError(f"too small to score: its eyes are {int(apart)} pixels apart in the photo, "
                         f"and the model needs at least {needed} (it would enlarge the face "
                         f"{framing['eye_distance'] * size / apart:.0f} times, into a blur unlike "
                         "the dataset's faces). Use a photo taken closer, or the original rather "
                         "than a shrunk copy.")


# Eye points moved by these offsets (left x, left y, right x, right y; in the detector's pixels)
# give nearby alignments a detector could as well have produced: the eyes 1.5 px further apart
# or closer, the face turned a little either way. With the mirrors, six crops: a 12 MP photo takes
# 1.02 s on a 2-core CPU (tests/bench_photo.py); eight took 1.31 s, too near the 1.5 s goal.
EYE_SHIFTS = ((0, 0, 0, 0), (-1.5, 1.5, 1.5, -1.5), (1.5, -1.5, -1.5, 1.5))


def shifted_eyes(face: Face, shift: tuple[float, float, float, float]) -> Face:
    """The face with its eye points (in image order) moved by a shift in the detector's pixels."""
    left, right = eyes_of(face)
    moved = np.array(shift, dtype=float).reshape(2, 2) * face.pixel
    return replace(face, left_eye=tuple(left + moved[0]), right_eye=tuple(right + moved[1]))


@functools.lru_cache(maxsize=4)
def feature_maps(model: keras.Model) -> tuple[keras.Model, list]:
    """The model's backbone up to its last feature map (the input of its average pooling), kept so
    that its compiled graph is reused; and the layers after the pooling (ConvNeXt: a LayerNormalization)."""
    backbone = backbone_of(model)
    pooling = next(layer for layer in reversed(backbone.layers)  # the last: EfficientNet's blocks pool too
                   if isinstance(layer, keras.layers.GlobalAveragePooling2D))
    after = backbone.layers[backbone.layers.index(pooling) + 1:]
    if not all(isinstance(layer, keras.layers.LayerNormalization) for layer in after):
        raise ValueError(f"{backbone.name}: after its pooling come {[type(x).__name__ for x in after]}, "
                         "which contribution_maps cannot spread over the cells")
    return keras.Model(backbone.inputs, pooling.input), after


def cell_features(model: keras.Model, faces: np.ndarray) -> np.ndarray:
    """Per cell of the backbone's last feature map, features that average over the cells to exactly
    the pooled features the heads see: the map itself, or under the LayerNormalization that ConvNeXt
    applies after pooling, taken with the pooled features' own mean and spread (a per-face affine map)."""
    extractor, after = feature_maps(model)
    maps = np.asarray(extractor.predict_on_batch(model.get_layer("preprocess")(faces)), dtype=float)
    for norm in after:
        pooled = maps.mean(axis=(1, 2), keepdims=True)
        scale = 1 / np.sqrt(pooled.var(axis=-1, keepdims=True) + norm.epsilon)
        gamma, beta = (keras.ops.convert_to_numpy(w).astype(float) for w in norm.weights)
        maps = (maps - pooled.mean(axis=-1, keepdims=True)) * scale * gamma + beta
    return maps


def contribution_maps(model: keras.Model, faces: np.ndarray,
                      mean_features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scores of uint8 faces and their signed maps: per cell, (features - mean) times the head's weights."""
    maps = cell_features(model, faces)
    kernel, bias = (keras.ops.convert_to_numpy(w).astype(float) for w in model.get_layer("score").weights)
    scores = maps.mean(axis=(1, 2)) @ kernel[:, 0] + bias[0]  # the backbone's average pooling, then the head
    return scores, (maps - mean_features) @ kernel[:, 0]


@dataclass
class Reference:
    """Out-of-sample predictions for dataset faces beside their raters' scores, and the average face."""

    true: np.ndarray
    predicted: np.ndarray
    mean_features: np.ndarray
    map_scale: float | None    # colour scale of the contribution maps, in score points (None: no map)
    source: str                # which faces, which predictions, in words


def load_reference(folder: Path, out_of_fold: bool = True) -> Reference:
    """The run's reference: the 5-fold out-of-fold predictions if there (and wanted), else its best
    stage's own test predictions."""
    stage = "finetuned" if (Path(folder) / "finetuned.keras").is_file() else "frozen"
    path = Path(folder) / f"reference-{stage}.json"
    if not path.is_file():
        raise RunNotFoundError(f"{path.name} is missing in {folder}: the run was trained by an older "
                               "version of this project. Train it again with notebooks 02 and 03.")
    own = json.loads(path.read_text())
    joined = out_of_fold_path(folder) if stage == final_stage(folder) and out_of_fold else None
    scores = (joined and read_json(joined)) or own
    source = (scores["set"] if scores is not own
              else f"the {STAGE_NAMES[stage]} model's predictions for {own['set']}")
    return Reference(np.asarray(scores["true"], float), np.asarray(scores["predicted"], float),
                     np.asarray(own["mean_features"], float), own["map_scale"], source)


@dataclass(frozen=True)
class Scorer:
    """A model that scores faces, and the reference that places its scores: the faces its run held out."""

    name: str
    model: keras.Model
    reference: Reference


def fold_runs(folder: Path) -> list[Path]:
    """The fold runs of the 5-fold protocol made with this run's settings, once the protocol is
    done (its out-of-fold reference written); else []."""
    joined = out_of_fold_path(folder)
    if joined is None or not joined.is_file():
        return []
    record = read_json(Path(folder) / "run.json")
    cfg = Config(**record["config"])
    work = Path(folder).parents[1]  # the work folder that holds runs/
    return [run_dir(replace(cfg, protocol=fold), record["dataset"], work) for fold in FOLDS]


def scoring_folds(folder: Path) -> list[Path]:
    """The fold runs whose models notebook 05 scores with: fold_runs once every one has reached its
    final stage (fine-tuned, or stage 1 for a frozen-only backbone), else []."""
    folds, final = fold_runs(folder), final_stage(folder)
    return folds if all((fold / f"{final}.keras").is_file() for fold in folds) else []


def scorers(folder: Path) -> list[Scorer]:
    """The models notebook 05 scores with: after the 5-fold protocol the five fold models, each with
    its own fold's test predictions as reference; else the run's current model and its reference."""
    folds = scoring_folds(folder)
    if not folds:
        return [Scorer(Path(folder).name, load_model(current_model_path(folder)), load_reference(folder))]
    print(f"The 5-fold protocol of these settings is done: scoring with the "
          f"{STAGE_NAMES[final_stage(folder)]} models of its {len(folds)} folds.")
    return [Scorer(fold.name, load_model(current_model_path(fold)), load_reference(fold, out_of_fold=False))
            for fold in folds]


def describe_references(scorers: list[Scorer]) -> str:
    """How notebook 05 turns a score into 'more attractive than X %', in words: one model's place among
    its reference, or with several fold models the mean of each one's place among its own fold's."""
    sizes = [len(scorer.reference.predicted) for scorer in scorers]
    if len(scorers) == 1:
        place = (f"Percentiles are a score's place among {scorers[0].reference.source}, which the model "
                 "never trained on; the range beside one holds")
    else:
        place = (f"Percentiles are the mean of {len(scorers)} places: each fold model's score placed among "
                 f"its own fold's {count_span(sizes)} test faces, which it never trained on. The range "
                 f"beside one is the mean of their {len(scorers)} ranges; each holds")
    return (f"{place}, 8 times in 10, where the raters would place a face given that score among those "
            "faces: the raters' score that a straight line fitted to those faces foretells from the "
            "model's, plus the 10th to 90th percentile of the line's misses on the "
            f"{count_span([neighbour_count(n) for n in sizes])} of them with the nearest predictions.")


def count_span(counts: list[int]) -> str:
    """Counts in words: '1,100' when all are equal, else '1,099 to 1,101'."""
    low, high = min(counts), max(counts)
    return f"{low:,}" if low == high else f"{low:,} to {high:,}"


@dataclass(frozen=True)
class FaceScore:
    """What every model made of one face: what notebook 05 prints and draws for it."""

    face: PhotoFace
    crops: np.ndarray          # the six crops (uint8): three alignments, then their mirrors
    scores: np.ndarray         # per model, a row of the six crops' scores
    score: float               # the mean of them all, kept on the 1-5 scale
    spread: float              # the ±: alignment_spread
    disagreement: float | None  # models_disagreement: None with one model
    percentile: float          # "more attractive than X %": the mean of the models' own places
    low: float                 # and of the ranges that hold the raters' place 8 times in 10
    high: float
    shares: np.ndarray | None  # the raters' shares of 1-5, mean over crops and models; None without that head
    map: np.ndarray | None     # the first crop's contribution map, mean over the models (score points);
                               # None for a backbone without one (NO_MAP says why)
    crop_score: float          # the first crop's score, mean over the models
    map_scale: float | None    # the maps' colour scale, mean over the models


def score_face(face: PhotoFace, crops: np.ndarray, outputs: list[dict], scorers: list[Scorer]) -> FaceScore:
    """A face's result from every model's outputs for its crops (predict_on_batch's, in the order of
    scorers): its score, its ± and the models' disagreement; each model's mean score placed among that
    model's own reference (its held-out faces), the places averaged; the shares; the first crop's map,
    averaged."""
    scores = np.stack([np.asarray(out["score"], dtype=float)[:, 0] for out in outputs])
    places = [calibrated_percentile(float(np.clip(row.mean(), 1, 5)), scorer.reference)
              for row, scorer in zip(scores, scorers, strict=True)]
    percentile, low, high = np.mean(places, axis=0)
    shares = None if "distribution" not in outputs[0] else np.mean([out["distribution"] for out in outputs],
                                                                    axis=(0, 1))
    first_map, crop_score, map_scale = None, float(scores[:, 0].mean()), None
    if scorers[0].reference.map_scale is not None:  # a backbone with maps (the fold models share one)
        made = [contribution_maps(scorer.model, crops[:1], scorer.reference.mean_features)
                for scorer in scorers]
        first_map = np.mean([maps[0] for _, maps in made], axis=0)
        crop_score = float(np.mean([first[0] for first, _ in made]))
        map_scale = float(np.mean([scorer.reference.map_scale for scorer in scorers]))
    return FaceScore(face, crops, scores, score=float(np.clip(scores.mean(), 1, 5)),
                     spread=alignment_spread(scores), disagreement=models_disagreement(scores),
                     percentile=float(percentile), low=float(low), high=float(high), shares=shares,
                     map=first_map, crop_score=crop_score, map_scale=map_scale)


# Why notebook 05 draws no map for a keras-hub backbone, in one sentence.
NO_MAP = ("this backbone's feature is its class token or an attention-pooled embedding, not an average of "
          "image cells, so no map splits its score exactly, and none is drawn.")


def alignment_spread(scores: np.ndarray) -> float:
    """The ± of a face's score (a row per model of its six crops' scores): half the range of the six
    crops' scores, each first averaged over the models, so that the models' offsets from each other,
    which every photo they score shares, stay out of it."""
    return float(np.ptp(np.mean(scores, axis=0))) / 2


def models_disagreement(scores: np.ndarray) -> float | None:
    """The SD of the models' scores of a face (a row per model of its six crops' scores), each the
    mean of its row; None for one model."""
    return float(np.std(np.mean(scores, axis=1), ddof=1)) if len(scores) > 1 else None


def describe_shares(shares: np.ndarray) -> str:
    """Predicted shares of raters per rating (1-5) in words, largest first, in 5 % steps that add up
    to 100, with their mean, e.g. "of 60 raters like the dataset's, about 55 % would give a 3, 25 % a 4
    and 20 % a 2 (their mean 3.05)"."""
    rounded = dict(zip(RATINGS, percentages_in_steps(shares), strict=True))
    named = [f"{percent} % a {rating}" for rating, percent in sorted(rounded.items(), key=lambda r: -r[1])
             if percent > 0]
    named[0] = named[0].replace(" a ", " would give a ", 1)
    listed = named[0] if len(named) == 1 else f"{', '.join(named[:-1])} and {named[-1]}"
    return f"of {RATERS} raters like the dataset's, about {listed} (their mean {shares_mean(shares):.2f})"


def percentages_in_steps(shares: np.ndarray, step: int = 5) -> np.ndarray:
    """Shares as percentages in whole steps that add up to 100: each rounded down to a step, then the
    steps left over given to the largest remainders (the lower rating first on a tie)."""
    units = np.asarray(shares, float) / np.sum(shares) * (100 // step)
    steps = np.floor(units).astype(int)
    steps[np.argsort(steps - units, kind="stable")[:100 // step - steps.sum()]] += 1
    return step * steps


def shares_mean(shares: np.ndarray) -> float:
    """The mean rating that shares of raters per rating (1-5) describe."""
    return float(np.asarray(shares, float) @ np.array(RATINGS) / np.sum(shares))


def shares_against_score(result: FaceScore) -> str:
    """A sentence when the mean of a face's predicted shares and its score differ by more than the
    score's ± (as printed, to two decimals), else ''."""
    gap, spread = round(shares_mean(result.shares) - result.score, 2), round(result.spread, 2)
    if abs(gap) <= spread:
        return ""
    return (f" Their mean is {abs(gap):.2f} {'above' if gap > 0 else 'below'} the score "
            f"{result.score:.2f}, more than its ±{spread:.2f}: two heads of the model give the shares "
            "and the score, and they need not agree.")


def neighbour_count(n: int) -> int:
    """How many reference faces with the nearest predictions give a percentile's range its spread."""
    return min(n, max(20, n // 10))


def calibrated_percentile(score: float, reference: Reference) -> tuple[float, float, float]:
    """'More attractive than X %' among the model's own out-of-sample predictions, and a likely range."""
    # Against true scores a prediction (pulled toward the mean) would put everyone in the middle.
    # The range: the raters' score the line fitted to the reference foretells, plus the 10th and
    # 90th percentiles of the line's misses on the faces predicted nearest, ranked among the
    # raters' scores. Misses, not the scores themselves: at the ends of the ranking the nearest
    # faces all lie on one side of the score, and their scores would pull the range inward.
    from scipy import stats

    order = np.argsort(reference.predicted, kind="stable")
    predicted, true = reference.predicted[order], reference.true[order]
    line = stats.linregress(predicted, true)
    misses = true - (line.intercept + line.slope * predicted)
    count = neighbour_count(len(order))
    start = int(np.clip(np.searchsorted(predicted, score) - count // 2, 0, len(order) - count))
    foretold = line.intercept + line.slope * score + np.percentile(misses[start:start + count], [10, 90])
    low, high = (percentile_of(value, reference.true) for value in foretold)
    return percentile_of(score, reference.predicted), low, high


def photos_from_env() -> list[tuple[str, Path]]:
    """The photos named in FBP_PHOTO (paths joined by the OS path separator)."""
    paths = [p for p in os.environ.get("FBP_PHOTO", "").split(os.pathsep) if p.strip()]
    return [(Path(p).name, Path(p).expanduser()) for p in paths]


def uploaded_files(value) -> list[tuple[str, bytes]]:
    """(name, bytes) of uploads from ipywidgets 7 or 8 or from Colab's files.upload()."""
    if isinstance(value, dict):  # ipywidgets 7: {name: {'content': ...}}; Colab: {name: bytes}
        return [(name, bytes(item["content"] if isinstance(item, dict) else item))
                for name, item in value.items()]
    return [(item["name"], bytes(item["content"])) for item in value]  # ipywidgets 8


def colab_uploads() -> list[tuple[str, bytes]]:
    """Photos through Colab's uploader, which saves them: into a folder deleted once they are read."""
    import tempfile

    from google.colab import files  # type: ignore[import-not-found]

    with tempfile.TemporaryDirectory(prefix="photos-") as folder:
        uploaded = files.upload(target_dir=folder)
    return [(Path(name).name, content) for name, content in uploaded_files(uploaded)]


def ask_for_photos() -> list[tuple[str, Path | bytes]]:
    """Photos from FBP_PHOTO if set; else Colab's uploader; else an upload widget that fills the list."""
    named = photos_from_env()
    if named:
        return named
    if in_colab():
        photos = colab_uploads()
        if not photos:
            print("No photo was uploaded (the upload was cancelled or no file was chosen). Run this "
                  "cell again to choose one.")
        return photos
    from IPython.display import display

    photos = []
    display(upload_widget(photos))
    return photos


def upload_widget(photos: list):
    """An upload button (ipywidgets 7 or 8) that puts the chosen photos, in memory, into the list."""
    import ipywidgets as widgets

    upload = widgets.FileUpload(accept="image/*", multiple=True, description="Photos")
    said = widgets.Label("Choose photos, then run the cells below this one.")

    def on_upload(change):
        photos[:] = uploaded_files(change["new"])
        said.value = f"{len(photos)} photo(s) chosen: now run the cells below this one."

    upload.observe(on_upload, names="value")
    return widgets.HBox([upload, said])


WEBCAM_JS = """
async function takePhoto(quality) {
  const box = document.createElement('div');
  const button = document.createElement('button');
  button.textContent = 'Take the photo';
  const skip = document.createElement('button');
  skip.textContent = 'No webcam photo';
  const video = document.createElement('video');
  video.style.display = 'block';
  box.append(button, skip, video);
  document.body.appendChild(box);
  const stream = await navigator.mediaDevices.getUserMedia({video: {facingMode: 'user'}});
  video.srcObject = stream;
  await video.play();
  google.colab.output.setIframeHeight(document.documentElement.scrollHeight, true);
  const taken = await new Promise((resolve) => {
    button.onclick = () => resolve(true);
    skip.onclick = () => resolve(false);
  });
  const canvas = document.createElement('canvas');
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  canvas.getContext('2d').drawImage(video, 0, 0);
  stream.getVideoTracks().forEach((track) => track.stop());
  box.remove();
  return taken ? canvas.toDataURL('image/jpeg', quality) : '';
}
"""


def camera_problem(error: str) -> str:
    """What went wrong with the browser's camera, from the JavaScript error, and what to do."""
    if "NotAllowedError" in error:
        return ("The browser did not let this page use the camera (NotAllowedError: permission "
                "denied). To allow it: click the camera or settings icon at the left of the address "
                "bar, set Camera to Allow for this site, then run this cell again. Or upload a photo "
                "above instead.")
    if "NotFoundError" in error:
        return ("No camera was found (NotFoundError): this computer has no webcam, or it is "
                "switched off or unplugged. Connect one and run this cell again, or upload a photo "
                "above instead.")
    return (f"The camera could not be used ({error}). If another program is using it, close that "
            "program and run this cell again, or upload a photo above instead.")


def take_webcam_photo() -> bytes | None:
    """In Colab, show the webcam with a button and return the JPEG taken; elsewhere or skipped None."""
    if not in_colab():
        print("Taking a photo with the webcam needs Colab (the browser holds the camera; this "
              "runtime has none). Upload a photo above instead.")
        return None
    import base64

    from google.colab._message import MessageError  # type: ignore[import-not-found]
    from google.colab.output import eval_js  # type: ignore[import-not-found]
    from IPython.display import Javascript, display

    display(Javascript(WEBCAM_JS))
    try:
        data_url = eval_js("takePhoto(0.92)")
    except MessageError as error:
        print(camera_problem(str(error)))
        return None
    if not data_url:
        print("No webcam photo taken.")
        return None
    return base64.b64decode(data_url.split(",", 1)[1])

"""Where the series runs: Colab or a local checkout, Google Drive and its pitfalls, the work folder,
files written whole, the smoke mode, and the set-up cell's start()."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import keras
import tensorflow as tf

from fbp.errors import USER_ERRORS, DriveNotMountedError

CHECKOUT = Path(__file__).resolve().parents[1]  # the project's folder, when installed with pip install -e
IN_CHECKOUT = (CHECKOUT / "pyproject.toml").is_file()  # else installed from GitHub, as the Colab set-up does
NOTEBOOKS = CHECKOUT / "notebooks" if IN_CHECKOUT else Path(__file__).resolve().parent / "notebooks"
_HOME = CHECKOUT if IN_CHECKOUT else Path.cwd()  # holds data/ (the release) and, outside Colab, work/
LOCAL_DATA_DIR = _HOME / "data"
COLAB_CONTENT = Path(os.environ.get("FBP_CONTENT_DIR", "/content"))  # Colab's working folder (tests move it)


_DRIVE_MOUNT = COLAB_CONTENT / "drive"


DRIVE_HOME = _DRIVE_MOUNT / "MyDrive"


_DRIVE_PROJECT = DRIVE_HOME / "scut-fbp5500"


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

    drive.mount(str(_DRIVE_MOUNT))
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
        return _DRIVE_PROJECT
    if in_colab():
        print(f"Drive is not mounted: work goes to {COLAB_CONTENT / 'scut-fbp5500-work'} and is lost "
              "with the VM. Run the 'mount Drive' cell to keep it.")
        return COLAB_CONTENT / "scut-fbp5500-work"
    return _HOME / "work"


def work_dir() -> Path:
    """Folder for checkpoints, caches and reports: work_home(), its smoke/ sub-folder in smoke mode."""
    path = work_home() / "smoke" if smoke_mode() else work_home()  # smoke runs share nothing with real ones
    path.mkdir(parents=True, exist_ok=True)
    return path


def _check_drive(path: Path) -> None:
    """Stop, with what to do, before reading or writing work on Google Drive while it is not mounted
    (the last cell of a notebook flushes and unmounts it): files would go to the VM's disk and be lost."""
    if in_colab() and Path(path).is_relative_to(_DRIVE_MOUNT) and not DRIVE_HOME.is_dir():
        raise DriveNotMountedError(
            f"Google Drive is not mounted (the notebook's last cell flushed and unmounted it), so {path} "
            "cannot be read or written. Run the cell with `utils.mount_drive()` near the top again, "
            "then this cell.")


def write_atomically(path: Path, write: Callable[[Path], object], empty_old: bool = False) -> Path:
    """Write a file under a temporary name beside it (same suffix), then rename it into place: a lost
    VM never leaves half a file. empty_old empties the file it replaces first (a replaced file goes
    to Drive's bin whole, and counts there for 30 days)."""
    path = Path(path)
    _check_drive(path)
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
    _check_drive(path)
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


def start() -> None:
    """The set-up cell's last step: our errors said plainly, the runtime named, smoke mode said."""
    show_errors_plainly()
    print(describe_runtime())
    if smoke_mode():
        print("Smoke mode (FBP_SMOKE=1): tiny images, untrained weights, a synthetic dataset by default.")

"""Stand-in for google.colab.drive: 'mounting' links the mount point to the folder COLAB_STUB_DRIVE
(which persists between the tests' VMs, like a user's Drive); unmounting removes the link.

While mounted it models what costs a free account its space: like Google Drive, a file deleted
under MyDrive, or replaced by another through a rename, goes to the bin, whose bytes count against
the quota (COLAB_STUB_DRIVE_QUOTA bytes, 15 GB by default) until it is emptied; a file overwritten
in place is one file. `shutil.disk_usage` on the mount reports the quota, as Colab's does. The bin
is kept in COLAB_STUB_DRIVE/bin.json, so it persists between VMs too. This module imports nothing
from google.colab, so tests can load it on its own.
"""

import json
import os
import shutil
import stat
from pathlib import Path

_mounted: list[Path] = []
_real = {"unlink": os.unlink, "remove": os.remove, "rename": os.rename, "replace": os.replace,
         "disk_usage": shutil.disk_usage}


def _drive() -> Path:
    """The folder that stands for the user's Drive."""
    return Path(os.path.realpath(os.environ["COLAB_STUB_DRIVE"]))


def _file_on_drive(path, dir_fd=None) -> tuple[Path, int] | None:
    """A regular file under MyDrive (given as os.unlink gets it) and its size, else None."""
    path = os.fspath(path)
    if dir_fd is not None and not os.path.isabs(path):
        path = os.path.join(os.readlink(f"/proc/self/fd/{dir_fd}"), path)
    try:
        info = os.lstat(path)
    except OSError:
        return None
    where = Path(os.path.realpath(os.path.dirname(os.path.abspath(path)))) / os.path.basename(path)
    if not stat.S_ISREG(info.st_mode) or not where.is_relative_to(_drive() / "MyDrive"):
        return None
    return where, info.st_size


def _bin_file() -> Path:
    return _drive() / "bin.json"


def binned() -> list[list]:
    """What the bin holds: [path, bytes] of each file deleted or replaced on the Drive."""
    return json.loads(_bin_file().read_text()) if _bin_file().is_file() else []


def bin_bytes() -> int:
    """The bytes in the bin (they count against the quota)."""
    return sum(size for _, size in binned())


def drive_bytes() -> int:
    """The bytes of the files in MyDrive."""
    return sum(p.stat().st_size for p in (_drive() / "MyDrive").rglob("*") if p.is_file())


def _to_bin(found: tuple[Path, int] | None) -> None:
    if found:
        _bin_file().write_text(json.dumps([*binned(), [str(found[0]), found[1]]]))


def _unlink(path, *, dir_fd=None):
    _to_bin(_file_on_drive(path, dir_fd))
    return _real["unlink"](path, dir_fd=dir_fd)


def _replace(src, dst, *, src_dir_fd=None, dst_dir_fd=None):
    _to_bin(_file_on_drive(dst, dst_dir_fd))  # the file that the rename replaces
    return _real["replace"](src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)


def _disk_usage(path):
    if not Path(os.path.realpath(path)).is_relative_to(_drive()):
        return _real["disk_usage"](path)
    quota = int(float(os.environ.get("COLAB_STUB_DRIVE_QUOTA", 15e9)))
    used = drive_bytes() + bin_bytes()
    return shutil._ntuple_diskusage(quota, used, max(0, quota - used))


def _watch(on: bool) -> None:
    """Route deletions, replacing renames and disk_usage through the bin model (or back)."""
    os.unlink = os.remove = _unlink if on else _real["unlink"]
    os.rename = os.replace = _replace if on else _real["replace"]
    shutil.disk_usage = _disk_usage if on else _real["disk_usage"]


def mount(mountpoint: str, force_remount: bool = False, timeout_ms: int = 120000,
          readonly: bool = False) -> None:
    """Mount the fake Drive at mountpoint (its 'MyDrive' folder inside), as Colab reports it."""
    point = Path(mountpoint).expanduser()
    if not force_remount and (point / "MyDrive").is_dir():
        print(f"Drive already mounted at {mountpoint}; to attempt to forcibly remount, "
              f'call drive.mount("{mountpoint}", force_remount=True).')
        return
    drive = _drive()
    (drive / "MyDrive").mkdir(parents=True, exist_ok=True)
    point.parent.mkdir(parents=True, exist_ok=True)
    if point.is_symlink():
        point.unlink()
    point.symlink_to(drive, target_is_directory=True)
    _mounted.append(point)
    _watch(True)
    print(f"Mounted at {mountpoint}")


def flush_and_unmount(timeout_ms: int = 24 * 60 * 60 * 1000) -> None:
    """Unmount the fake Drive (every write already landed: it is a local folder)."""
    if not _mounted:
        print("Drive not mounted, so nothing to flush and unmount.")
        return
    _watch(False)
    _mounted.pop().unlink()

"""Stand-in for google.colab.drive: 'mounting' links the mount point to the folder COLAB_STUB_DRIVE
(which persists between the tests' VMs, like a user's Drive); unmounting removes the link."""

import os
from pathlib import Path

_mounted: list[Path] = []


def mount(mountpoint: str, force_remount: bool = False, timeout_ms: int = 120000,
          readonly: bool = False) -> None:
    """Mount the fake Drive at mountpoint (its 'MyDrive' folder inside), as Colab reports it."""
    point = Path(mountpoint).expanduser()
    if not force_remount and (point / "MyDrive").is_dir():
        print(f"Drive already mounted at {mountpoint}; to attempt to forcibly remount, "
              f'call drive.mount("{mountpoint}", force_remount=True).')
        return
    drive = Path(os.environ["COLAB_STUB_DRIVE"])
    (drive / "MyDrive").mkdir(parents=True, exist_ok=True)
    point.parent.mkdir(parents=True, exist_ok=True)
    if point.is_symlink():
        point.unlink()
    point.symlink_to(drive, target_is_directory=True)
    _mounted.append(point)
    print(f"Mounted at {mountpoint}")


def flush_and_unmount(timeout_ms: int = 24 * 60 * 60 * 1000) -> None:
    """Unmount the fake Drive (every write already landed: it is a local folder)."""
    if not _mounted:
        print("Drive not mounted, so nothing to flush and unmount.")
        return
    _mounted.pop().unlink()

"""Stand-in for google.colab.files: upload() saves what it receives like colabtools' files.py."""

import os
from pathlib import Path

from google.colab import next_answer


def _upload_files(multiple: bool) -> dict[str, bytes]:
    """The files the user picks in the browser, {name: bytes}, written nowhere ({} if cancelled)."""
    return {name: Path(path).read_bytes() for name, path in next_answer("uploads").items()}


def upload(target_dir: str = "") -> dict[str, bytes]:
    """Like Colab's: save every uploaded file under target_dir (default: the working folder),
    as 'NAME (1).ext' when the name is taken, and return {saved name: bytes}."""
    uploaded = _upload_files(multiple=True)
    if target_dir:
        os.makedirs(target_dir, exist_ok=True)
    saved = {}
    for filename, data in uploaded.items():
        local_filename = _get_unique_filename(os.path.join(target_dir, filename))
        print(f"Saving {filename} to {local_filename}")
        with open(local_filename, "ab") as f:
            f.write(data)
        saved[local_filename] = data
    return saved


def _get_unique_filename(filename: str) -> str:
    """The name itself if free, else 'NAME (1).ext', 'NAME (2).ext', ... (as colabtools does)."""
    if not os.path.lexists(filename):
        return filename
    counter = 1
    while True:
        path, ext = os.path.splitext(filename)
        new_filename = f"{path} ({counter}){ext}"
        if not os.path.lexists(new_filename):
            return new_filename
        counter += 1

"""What only Colab does: its Keras, its uploader, its webcam, its Drive's errors.

`tests/colab_stub` stands in for the `google.colab` package (its files.upload() saves files like
colabtools' files.py). The series as a Colab user runs it is in tests/test_colab_series.py.
"""

import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

import utils
from fbp import dataset, environment, errors

STUB = Path(__file__).resolve().parent / "colab_stub"
REPO = "scut-fbp5500/how-attractive"


def jpeg(pixels: np.ndarray) -> bytes:
    """A photo as JPEG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def write_script(path: Path, uploads: list[dict] = (), camera: list[dict] = ()) -> None:
    """What the stand-in browser answers: the files of each upload, each webcam request's outcome."""
    path.write_text(json.dumps({"uploads": list(uploads), "camera": list(camera)}))


@pytest.fixture
def colab(tmp_path, monkeypatch):
    """google.colab imported in this process (as in a Colab kernel), for one test only."""
    script = tmp_path / "script.json"
    monkeypatch.setenv("COLAB_STUB_SCRIPT", str(script))
    monkeypatch.syspath_prepend(str(STUB))
    import google.colab  # noqa: F401

    assert environment.in_colab()
    yield script
    for name in [m for m in sys.modules if m.startswith("google.colab")]:
        del sys.modules[name]


@pytest.mark.parametrize("name, pixels", [
    ("grey", np.full((350, 350, 3), 128, np.uint8)),
    ("cat", data.chelsea()),
    ("coffee", data.coffee()),
    ("tiny", np.zeros((8, 8, 3), np.uint8)),
])
def test_a_photo_without_a_face_is_no_face_on_every_keras(name, pixels):
    # Keras 3.13 (Colab's) raised ValueError inside mtcnn for the grey photo and the cat
    assert utils.detect_faces(Image.fromarray(pixels)) == []


def test_a_face_is_still_found():
    assert len(utils.detect_faces(Image.fromarray(data.astronaut()))) == 1


def test_uploaded_photos_never_stay_on_disk(colab, tmp_path, monkeypatch, capsys):
    photo = tmp_path / "browser" / "astronaut.jpg"
    photo.parent.mkdir()
    photo.write_bytes(jpeg(data.astronaut()))
    vm = tmp_path / "vm"
    (vm / "tmp").mkdir(parents=True)
    monkeypatch.chdir(vm)
    monkeypatch.setattr("tempfile.tempdir", str(vm / "tmp"))
    write_script(colab, uploads=[{"astronaut.jpg": str(photo)}] * 2)
    received = []
    for _ in range(2):  # the same name twice: Colab alone would keep 'astronaut (1).jpg' as well
        received.append(utils.ask_for_photos())
    assert received == [[("astronaut.jpg", photo.read_bytes())]] * 2
    assert "Saving astronaut.jpg to" in capsys.readouterr().out
    assert not [p for p in vm.rglob("*") if p.is_file()]


def test_the_stand_in_uploader_saves_like_colabs(colab, tmp_path, monkeypatch, capsys):
    from google.colab import files

    photo = tmp_path / "me.jpg"
    photo.write_bytes(b"abc")
    monkeypatch.chdir(tmp_path)
    write_script(colab, uploads=[{"me.jpg": str(photo)}])
    assert files.upload() == {"me (1).jpg": b"abc"} and (tmp_path / "me (1).jpg").is_file()
    assert "Saving me.jpg to me (1).jpg" in capsys.readouterr().out


def test_a_cancelled_upload_says_no_photo_was_uploaded(colab, capsys):
    write_script(colab, uploads=[{}])
    assert utils.ask_for_photos() == []
    assert "No photo was uploaded" in capsys.readouterr().out


@pytest.mark.parametrize("error, said", [
    ("NotAllowedError: Permission denied", "set Camera to Allow"),
    ("NotFoundError: Requested device not found", "No camera was found"),
    ("NotReadableError: Could not start video source", "another program is using it"),
])
def test_a_blocked_or_missing_camera_says_what_happened(colab, capsys, error, said):
    write_script(colab, camera=[{"error": error}])
    assert utils.take_webcam_photo() is None
    assert said in capsys.readouterr().out


def test_no_webcam_photo_when_the_user_skips_it(colab, capsys):
    write_script(colab, camera=[{"skip": True}])
    assert utils.take_webcam_photo() is None
    assert "No webcam photo taken" in capsys.readouterr().out


def test_the_webcam_photo_comes_back_as_jpeg_bytes(colab, tmp_path):
    photo = tmp_path / "webcam.jpg"
    photo.write_bytes(jpeg(data.astronaut()))
    write_script(colab, camera=[{"photo": str(photo)}])
    assert utils.take_webcam_photo() == photo.read_bytes()


@pytest.mark.parametrize("where", ["Colab", "locally"])
def test_no_connection_is_said_plainly_with_one_way_out_per_place(tmp_path, monkeypatch, where):
    import requests

    def offline(**kwargs):
        raise requests.ConnectionError("HTTPSConnectionPool(host='drive.google.com'): Max retries")

    monkeypatch.setattr("gdown.download", offline)
    monkeypatch.setattr(environment, "in_colab", lambda: where == "Colab")
    with pytest.raises(errors.DownloadRefusedError) as caught:
        dataset._download_zip(tmp_path / dataset._ZIP_NAME)
    message = str(caught.value)
    assert message.startswith("No connection") and "Busy" not in message
    assert "HTTPSConnectionPool" not in message and caught.value.__cause__ is None
    assert (str(environment.COLAB_CONTENT) in message) == (where == "Colab")
    assert (str(environment.LOCAL_DATA_DIR) in message) == (where == "locally")


def test_our_errors_show_plainly_and_colabs_import_hint_stays(colab, capsys):
    from google.colab import IMPORT_HINT, install_import_hint
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    try:
        install_import_hint()
        environment.show_errors_plainly()
        environment.show_errors_plainly()  # a re-run set-up cell changes nothing
        shell.run_cell("import no_such_package_here")
        shell.run_cell("import utils\nraise utils.PhotoError('me.jpg: no face found.')")
        shown = capsys.readouterr().out
    finally:
        InteractiveShell.clear_instance()
    assert IMPORT_HINT.splitlines()[0] in shown and "no_such_package_here" in shown
    assert "PhotoError: me.jpg: no face found." in shown and "Traceback" not in shown.split("PhotoError")[1]

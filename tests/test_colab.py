"""What only Colab does: its Keras, its uploader, its webcam, its Drive and a fresh VM per notebook.

`tests/colab_stub` stands in for the `google.colab` package (its files.upload() saves files like
colabtools' files.py). The series at the end runs the notebooks as a Colab user does: each in a
fresh kernel with a fresh "/content", google.colab already imported, one fake Drive that persists,
the set-up cell's clone (redirected by git's url.<base>.insteadOf to this checkout's committed
HEAD: commit before running it) and its pip install.
"""

import io
import json
import sys
import zipfile
from pathlib import Path

import nbformat
import numpy as np
import pytest
from conftest import ROOT
from nbclient import NotebookClient
from PIL import Image
from skimage import data

import utils
from data import synthetic

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

    assert utils.in_colab()
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
    monkeypatch.setattr(utils, "in_colab", lambda: where == "Colab")
    with pytest.raises(utils.DownloadRefusedError) as caught:
        utils.download_zip(tmp_path / utils.ZIP_NAME)
    message = str(caught.value)
    assert message.startswith("No connection") and "Busy" not in message
    assert "HTTPSConnectionPool" not in message and caught.value.__cause__ is None
    assert (str(utils.COLAB_CONTENT) in message) == (where == "Colab")
    assert (str(utils.LOCAL_DATA_DIR) in message) == (where == "locally")


def test_our_errors_show_plainly_and_colabs_import_hint_stays(colab, capsys):
    from google.colab import IMPORT_HINT, install_import_hint
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    try:
        install_import_hint()
        utils.show_errors_plainly()
        utils.show_errors_plainly()  # a re-run set-up cell changes nothing
        shell.run_cell("import no_such_package_here")
        shell.run_cell("import utils\nraise utils.PhotoError('me.jpg: no face found.')")
        shown = capsys.readouterr().out
    finally:
        InteractiveShell.clear_instance()
    assert IMPORT_HINT.splitlines()[0] in shown and "no_such_package_here" in shown
    assert "PhotoError: me.jpg: no face found." in shown and "Traceback" not in shown.split("PhotoError")[1]


# --- The series as a Colab user runs it -----------------------------------------------------

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.fixture(scope="module")
def drive(tmp_path_factory):
    """Colab's world: a fake Drive that persists, the stand-in google.colab imported at kernel
    start, the project's GitHub address redirected to this checkout, no local work folder."""
    home = tmp_path_factory.mktemp("colab")
    (home / "drive" / "MyDrive").mkdir(parents=True)
    startup = home / "ipython" / "profile_default" / "startup"
    startup.mkdir(parents=True)
    (startup / "00-colab.py").write_text("import google.colab\n")
    gitconfig = home / "gitconfig"
    gitconfig.write_text(f'[url "file://{ROOT}"]\n\tinsteadOf = https://github.com/{REPO}.git\n'
                         "[safe]\n\tdirectory = *\n")
    with pytest.MonkeyPatch.context() as patch:
        for name in ("FBP_WORK_DIR", "FBP_DATA_DIR", "FBP_PHOTO", "FBP_SMOKE"):
            patch.delenv(name, raising=False)
        patch.setenv("PYTHONPATH", str(STUB))
        patch.setenv("IPYTHONDIR", str(home / "ipython"))
        patch.setenv("GIT_CONFIG_GLOBAL", str(gitconfig))
        patch.setenv("COLAB_STUB_DRIVE", str(home / "drive"))
        patch.setenv("COLAB_STUB_SCRIPT", str(home / "script.json"))
        write_script(home / "script.json")
        yield home


def run_in_fresh_vm(drive: Path, notebook: Path, smoke: bool = True, edit=None) -> str:
    """Run a notebook in a new kernel with an empty "/content" (a new VM); return its text output."""
    vm = Path(drive) / f"vm-{len(list(Path(drive).glob('vm-*'))) + 1}"
    (vm / "content").mkdir(parents=True)
    (vm / "tmp").mkdir()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FBP_CONTENT_DIR", str(vm / "content"))
        patch.setenv("TMPDIR", str(vm / "tmp"))
        if smoke:
            patch.setenv("FBP_SMOKE", "1")
        nb = nbformat.read(notebook, as_version=4)
        if edit:
            edit(nb)
        NotebookClient(nb, timeout=1200, kernel_name="python3",
                       resources={"metadata": {"path": str(vm / "content")}}).execute()
    return "\n".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))


def photo_files(folder: Path) -> list[Path]:
    """Every file below a folder named like one of the test's photos (symlinks not followed)."""
    return [p for p in Path(folder).rglob("*") if p.name.startswith(("astronaut", "coffee", "webcam"))]


def test_colab_01_clones_installs_mounts_and_takes_the_zip_from_drive(drive):
    # the release as a user's own copy on Drive: a synthetic one in the exact layout
    release = synthetic.make_synthetic_dataset(drive / "release")
    with zipfile.ZipFile(drive / "drive" / "MyDrive" / utils.ZIP_NAME, "w") as archive:
        for path in sorted(release.rglob("*")):
            archive.write(path, path.relative_to(release.parent))
    text = run_in_fresh_vm(drive, NOTEBOOKS[0], smoke=False)  # 01 trains nothing: no smoke needed
    content = drive / "vm-1" / "content"
    clone = content / "how-attractive"
    assert (clone / "utils.py").read_bytes() == (ROOT / "utils.py").read_bytes(), \
        "the clone is the checkout's committed HEAD: commit before running this test"
    assert "Mounted at" in text and f"Extracting {content}/drive/MyDrive/{utils.ZIP_NAME}" in text
    assert (drive / "drive" / "MyDrive" / "scut-fbp5500" / utils.ZIP_NAME).is_file()  # the cache
    assert (clone / "data" / utils.DATASET_DIRNAME / "Images").is_dir()
    assert "300 labelled faces" in text and "Drive flushed" in text  # 02 reads what 01 kept
    assert "oneDNN" not in text and "cpu_feature_guard" not in text, "TensorFlow's start-up lines"


def test_colab_02_and_03_train_in_new_vms_and_keep_the_run_on_drive(drive):
    work = drive / "drive" / "MyDrive" / "scut-fbp5500"
    assert "Drive flushed" in run_in_fresh_vm(drive, NOTEBOOKS[1])  # 03 reads what 02 wrote
    text = run_in_fresh_vm(drive, NOTEBOOKS[2])
    assert "Drive flushed" in text
    assert [r for r in (work).rglob("run.json") if utils.read_run(r.parent).get("finished")]
    assert not (drive / "vm-3" / "content" / "drive").exists(), "03 ends unmounted"
    bin_file = drive / "drive" / "bin.json"  # what the stand-in Drive's bin holds
    binned = json.loads(bin_file.read_text()) if bin_file.is_file() else []
    assert sum(size for _, size in binned) < 1e6, binned  # backups and checkpoints: not in the bin


def test_colab_04_evaluates_in_a_new_vm(drive):
    def user_settings(nb):
        for switch in ("RUN_FULL_PROTOCOLS", "RUN_ABLATION"):  # a Colab user's defaults: both off
            cell = next(c for c in nb.cells if f"{switch} = " in c.source)
            assert f"{switch} = utils.smoke_mode()" in cell.source
            cell.source = cell.source.replace(f"{switch} = utils.smoke_mode()", f"{switch} = False")

    run_in_fresh_vm(drive, NOTEBOOKS[3], edit=user_settings)
    work = drive / "drive" / "MyDrive" / "scut-fbp5500"
    assert list(work.rglob("evaluation.json"))


def test_colab_05_scores_uploads_and_the_webcam_and_keeps_no_photo(drive, tmp_path):
    browser = tmp_path / "browser"
    browser.mkdir()
    (browser / "astronaut.jpg").write_bytes(jpeg(data.astronaut()))
    (browser / "coffee.jpg").write_bytes(jpeg(data.coffee()))
    names = {n: str(browser / n) for n in ("astronaut.jpg", "coffee.jpg")}
    write_script(Path(drive) / "script.json", uploads=[names], camera=[{"photo": names["astronaut.jpg"]}])
    text = run_in_fresh_vm(drive, NOTEBOOKS[4])
    assert "Saving astronaut.jpg to" in text and "astronaut.jpg, face 1: score" in text
    assert "coffee.jpg: no face found" in text and "webcam.jpg, face 1: score" in text
    assert not photo_files(drive / "vm-5") and not photo_files(drive / "drive")


def test_colab_05_says_so_when_nothing_is_uploaded_and_the_camera_is_blocked(drive):
    write_script(Path(drive) / "script.json", uploads=[{}],
                 camera=[{"error": "NotAllowedError: Permission denied"}])
    text = run_in_fresh_vm(drive, NOTEBOOKS[4])
    assert "No photo was uploaded" in text and "set Camera to Allow" in text

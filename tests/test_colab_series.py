"""The smoke series as a Colab user runs it, the one series of the Colab-version environment
(tests/run.sh runs this file there, and tests/test_notebooks.py's series on the newest versions):
each notebook in a new VM: a fresh kernel, a fresh "/content" and a fresh Python that sees this
environment's packages (Colab's versions) but not the project; google.colab already imported; one
fake Drive that persists; the set-up cell's pip install from GitHub, redirected by git's
url.<base>.insteadOf to this checkout's committed HEAD (commit before running it). Then, in this
process, the notebooks as people use them, on what the series left on Drive."""

import json
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import nbformat
import pytest
from conftest import ROOT
from nbclient import NotebookClient
from PIL import Image
from skimage import data
from test_colab import REPO, STUB, jpeg, write_script
from test_notebook_use import check_a_setting_changed_in_02_alone, check_every_cell_run_twice

import utils
from fbp import dataset, synthetic

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
    gitconfig.write_text(f'[url "file://{ROOT}"]\n\tinsteadOf = https://github.com/{REPO}\n'
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


def fresh_python(vm: Path) -> None:
    """A Python for the VM's kernel: a venv that sees this environment's packages through a .pth file
    (whose own .pth files, such as the project's editable install, it does not run), and a kernel
    spec for it, named "vm", in the VM's folder."""
    subprocess.run([sys.executable, "-m", "venv", str(vm / "python")], check=True)
    [site] = (vm / "python" / "lib").glob("python3*/site-packages")
    (site / "colab.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    spec = vm / "jupyter" / "kernels" / "vm"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [str(vm / "python" / "bin" / "python"), "-m", "ipykernel_launcher",
                 "-f", "{connection_file}"],
        "display_name": "Colab VM", "language": "python"}))


def run_in_fresh_vm(drive: Path, notebook: Path, smoke: bool = True) -> str:
    """Run a notebook in a new kernel with an empty "/content" and a Python without the project (a new
    VM); return its text output."""
    vm = Path(drive) / f"vm-{len(list(Path(drive).glob('vm-*'))) + 1}"
    (vm / "content").mkdir(parents=True)
    (vm / "tmp").mkdir()
    fresh_python(vm)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("JUPYTER_PATH", str(vm / "jupyter"))
        patch.setenv("FBP_CONTENT_DIR", str(vm / "content"))
        patch.setenv("TMPDIR", str(vm / "tmp"))
        if smoke:
            patch.setenv("FBP_SMOKE", "1")
        nb = nbformat.read(notebook, as_version=4)
        NotebookClient(nb, timeout=1200, kernel_name="vm",
                       resources={"metadata": {"path": str(vm / "content")}}).execute()
    return "\n".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))


def photo_files(folder: Path) -> list[Path]:
    """Every file below a folder named like one of the test's photos (symlinks not followed)."""
    return [p for p in Path(folder).rglob("*") if p.name.startswith(("astronaut", "coffee", "webcam"))]


def test_colab_01_clones_installs_mounts_and_takes_the_zip_from_drive(drive):
    # the release as a user's own copy on Drive: a synthetic one in the exact layout
    release = synthetic.make_synthetic_dataset(drive / "release")
    with zipfile.ZipFile(drive / "drive" / "MyDrive" / dataset._ZIP_NAME, "w") as archive:
        for path in sorted(release.rglob("*")):
            archive.write(path, path.relative_to(release.parent))
    text = run_in_fresh_vm(drive, NOTEBOOKS[0], smoke=False)  # 01 trains nothing: no smoke needed
    content = drive / "vm-1" / "content"
    [installed] = (drive / "vm-1" / "python" / "lib").glob("python3*/site-packages/utils.py")
    assert installed.read_bytes() == (ROOT / "utils.py").read_bytes(), \
        "the install is the checkout's committed HEAD: commit before running this test"
    assert (installed.parent / "fbp" / "notebooks" / "06_experiments.ipynb").is_file()  # for the runners
    assert "Mounted at" in text and f"Extracting {content}/drive/MyDrive/{dataset._ZIP_NAME}" in text
    assert (drive / "drive" / "MyDrive" / "scut-fbp5500" / dataset._ZIP_NAME).is_file()  # the cache
    assert (content / "data" / dataset._DATASET_DIRNAME / "Images").is_dir()
    assert "300 labelled faces" in text and "Drive flushed" in text  # 02 reads what 01 kept
    assert "oneDNN" not in text and "cpu_feature_guard" not in text, "TensorFlow's start-up lines"


def test_colab_02_and_03_train_in_new_vms_and_keep_the_run_on_drive(drive):
    work = drive / "drive" / "MyDrive" / "scut-fbp5500"
    assert "Drive flushed" in run_in_fresh_vm(drive, NOTEBOOKS[1])  # 03 reads what 02 wrote
    text = run_in_fresh_vm(drive, NOTEBOOKS[2])
    assert "Drive flushed" in text
    assert [r for r in (work).rglob("run.json") if utils.read_json(r).get("finished")]
    assert not (drive / "vm-3" / "content" / "drive").exists(), "03 ends unmounted"
    bin_file = drive / "drive" / "bin.json"  # what the stand-in Drive's bin holds
    binned = json.loads(bin_file.read_text()) if bin_file.is_file() else []
    assert sum(size for _, size in binned) < 1e6, binned  # backups and checkpoints: not in the bin


def test_colab_04_evaluates_in_a_new_vm(drive):
    run_in_fresh_vm(drive, NOTEBOOKS[3])  # as a Colab user has it: the protocols and the ablation off
    [evaluation] = (drive / "drive" / "MyDrive" / "scut-fbp5500").rglob("evaluation.json")
    assert json.loads(evaluation.read_text())["PC"] >= 0.8  # the two stages learned a learnable dataset


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


def use_the_series_work(monkeypatch, work: Path, tmp_path: Path) -> None:
    """This process works as the series' notebooks did (smoke mode, in this work folder), outside
    Colab, scoring one photo."""
    Image.fromarray(data.astronaut()).save(tmp_path / "me.jpg")
    monkeypatch.setenv("FBP_SMOKE", "1")
    monkeypatch.setenv("FBP_WORK_DIR", str(work))
    monkeypatch.setenv("FBP_PHOTO", str(tmp_path / "me.jpg"))


def test_colab_every_cell_run_twice_builds_what_the_series_built(drive, tmp_path, monkeypatch, capsys):
    use_the_series_work(monkeypatch, drive / "drive" / "MyDrive" / "scut-fbp5500", tmp_path)
    check_every_cell_run_twice(capsys)


def test_colab_a_setting_changed_in_02_alone_carries_through_03_to_05(drive, tmp_path, monkeypatch, capsys):
    shutil.copytree(drive / "drive" / "MyDrive" / "scut-fbp5500", tmp_path / "work")  # the series' stays
    use_the_series_work(monkeypatch, tmp_path / "work", tmp_path)
    check_a_setting_changed_in_02_alone(capsys)

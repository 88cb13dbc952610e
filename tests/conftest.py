"""Shared fixtures: the checkout on sys.path, synthetic datasets, a private work folder, a web server,
the phone page in a browser."""

import contextlib
import functools
import http.server
import os
import sys
import threading
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
sys.path.insert(0, str(ROOT))
os.environ.pop("FBP_SMOKE", None)
os.environ.pop("FBP_DATA_DIR", None)

import utils  # noqa: E402
from fbp import synthetic  # noqa: E402


def pytest_configure(config):
    """Hide the libraries' own deprecation chatter (Keras and TensorFlow under NumPy 2)."""
    for module in ("keras", "tensorflow", "h5py", "gast"):  # gast: a SavedModel's export under Python 3.13
        config.addinivalue_line("filterwarnings", f"ignore::DeprecationWarning:{module}.*")


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """A 300-image synthetic dataset in the release layout (shared, treat as read-only)."""
    return synthetic.make_synthetic_dataset(tmp_path_factory.mktemp("synthetic"))


@pytest.fixture
def work(tmp_path, monkeypatch) -> Path:
    """A private work folder, as FBP_WORK_DIR."""
    folder = tmp_path / "work"
    monkeypatch.setenv("FBP_WORK_DIR", str(folder))
    return folder


class Handler(http.server.SimpleHTTPRequestHandler):
    """A web server's handler that counts its downloads and, for /refused/..., refuses (403); for
    /cut/<file>, announces the whole file and sends half of it; for /untold/<file>, sends it without
    its length; for /junk/..., up to 300 MB that is no zip, without a length (counting what it sent);
    for /to-ftp/..., redirects to an ftp:// address."""

    def do_GET(self):
        self.server.requests.append(self.path)
        if self.path.startswith("/refused/"):
            return self.send_error(403, "Forbidden")
        if self.path.startswith("/to-ftp/"):
            self.send_response(302)
            self.send_header("Location", "ftp://127.0.0.1/run.zip")
            self.end_headers()
            return None
        if self.path.startswith(("/untold/", "/junk/")):
            self.send_response(200)
            self.end_headers()  # no Content-Length: the body ends when the connection closes
            if self.path.startswith("/untold/"):
                blocks = [(Path(self.directory) / self.path.removeprefix("/untold/")).read_bytes()]
            else:
                blocks = [b"junk" * (1 << 18)] * 300  # 1 MB each
            try:
                for block in blocks:
                    self.wfile.write(block)
                    self.server.sent += len(block)
            except (BrokenPipeError, ConnectionResetError):  # the client stopped reading: as it should
                pass
            self.close_connection = True
            return None
        if self.path.startswith("/cut/"):
            body = (Path(self.directory) / self.path.removeprefix("/cut/")).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
            return None
        return super().do_GET()

    def log_message(self, *args):
        """Quiet: the tests read server.requests instead."""


@pytest.fixture
def web_server(tmp_path):
    """A local web server for the files of a folder (the fixture's .folder): its address, and the paths
    it was asked for (.requests)."""
    folder = tmp_path / "served"
    folder.mkdir()
    handler = functools.partial(Handler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.requests, server.folder, server.sent = [], folder, 0
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def small_root(tmp_path) -> Path:
    """A 60-image synthetic dataset of one's own, free to damage."""
    return synthetic.make_synthetic_dataset(tmp_path / "small", n=60, image_size=48, with_ratings=False)


def run_cells(name: str, tag: str | None = None, twice: bool = False, edits: dict | None = None,
              **variables) -> dict:
    """Execute a notebook's code cells (those tagged `tag`, else all) in this process, from the
    notebooks folder as a kernel would, and return its variables: so tests can patch utils and
    look at what the cells made. `twice` runs each cell twice in a row, as a user re-running it;
    `edits` replaces text in the cells, as a user changing a line. The settings come from
    FBP_CONFIG / FBP_DATA_DIR as set."""
    import matplotlib.pyplot as plt
    import nbformat
    from IPython.core.inputtransformer2 import TransformerManager
    from IPython.display import display

    notebook = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    namespace = {"display": display, **variables}
    here = os.getcwd()
    os.chdir(ROOT / "notebooks")
    try:
        for cell in notebook.cells:
            if cell.cell_type == "code" and (tag is None or tag in cell.metadata.get("tags", [])):
                source = cell.source
                for old, new in (edits or {}).items():
                    source = source.replace(old, new)
                source = TransformerManager().transform_cell(source)  # IPython's syntax (%pip) as Python
                for _ in range(2 if twice else 1):
                    exec(compile(source, f"{name}.ipynb", "exec"), namespace)
    finally:
        os.chdir(here)
        plt.close("all")
    return namespace


def model_from_notebook(image_size: int, seed: int = 0, **settings):
    """The model exactly as notebook 02's cells build it, at this size, with untrained weights
    drawn from this seed (and other Config settings: backbone, label_distribution)."""
    import keras

    cfg = utils.Config(image_size=image_size, weights=None, seed=seed, **settings)
    return run_cells("02_frozen_head", "model", utils=utils, keras=keras, cfg=cfg)["model"]


def train(cfg, root: Path, monkeypatch, notebooks=("02_frozen_head", "03_finetune")) -> dict:
    """Train a run with notebooks 02 and 03's own cells, as the protocol runner passes settings;
    returns the last notebook's variables."""
    import json
    from dataclasses import asdict

    monkeypatch.setenv("FBP_CONFIG", json.dumps(asdict(cfg)))
    monkeypatch.setenv("FBP_DATA_DIR", str(root))
    for name in notebooks:
        variables = run_cells(name)
    return variables


def stand_in_drive():
    """The stand-in for google.colab.drive, loaded on its own (importing google.colab would make
    every later test 'Colab'); its mount() models Drive's bin and quota in this process."""
    import importlib.util

    path = Path(__file__).resolve().parent / "colab_stub" / "google" / "colab" / "drive.py"
    spec = importlib.util.spec_from_file_location("stub_drive", path)
    stub = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stub)
    return stub


CHROMIUM = "/usr/lib/chromium/chromium"  # Debian's chromium, which .ci/run installs
BROWSER = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
           "--disable-sync", "--no-first-run",  # no request of Chromium's own leaves the machine
           "--use-fake-device-for-media-stream", "--deny-permission-prompts"]  # a camera its user refuses


@contextlib.contextmanager
def phone_page(run_web: Path):
    """The page (web/, built by tests/run.sh) and a run's web files, served on 127.0.0.1 as
    `python -m fbp.web RUN --serve` serves them, in headless Chromium with a fake camera: .open(query)
    closes the page opened before, opens it (with camera=True, the camera allowed) and waits until it is
    ready, failed or asking to download; .requests lists every address it asked for."""
    from playwright.sync_api import sync_playwright

    from fbp import web

    built = (ROOT / "web" / "vendor" / "ort.wasm.min.mjs").is_file()
    assert built, "build the page first: cd web && npm ci && npm run build (tests/run.sh does)"
    assert Path(CHROMIUM).is_file(), "install Debian's chromium: apt-get install chromium (.ci/run does)"
    server = web.serve(ROOT / "web", run_web, port=0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER)
        requests = []

        def open_page(query: str = "?run=run/", init: str = "", camera: bool = False):
            for context in browser.contexts:  # one page at a time: an idle one still takes the CPU
                context.close()
            tab = browser.new_page(viewport={"width": 390, "height": 844},  # a phone's screen
                                   permissions=["camera"] if camera else [])
            tab.on("request", lambda request: requests.append(request.url))
            if init:
                tab.add_init_script(init)
            tab.goto(url + query)
            settled = "['ready', 'failed', 'asking'].includes(window.fbp?.state)"
            tab.wait_for_function(settled, timeout=120_000)
            return tab

        yield types.SimpleNamespace(open=open_page, requests=requests, url=url)
        browser.close()
    server.shutdown()
    server.server_close()

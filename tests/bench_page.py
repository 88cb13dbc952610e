"""Benchmark (run by hand): the phone page in headless Chromium on this machine, with a ResNet50 at
224 px (notebook 02's model, untrained weights) in place of a run's model.

    python tests/bench_page.py RUN_WEB_FOLDER

RUN_WEB_FOLDER is a run's web files (the smoke series writes them: work/smoke/runs/<run>/web); its
reference, framing and MTCNN networks are kept, its model is replaced. It prints the page's weight
(raw and gzipped, as a static host sends it), then, served cross-origin isolated (two WebAssembly
threads) and not (one thread, as GitHub Pages serves it): the model's load time and the milliseconds
per crop for scikit-image's astronaut (median of three photos), and the download of 5-fold ResNet50
and frozen DINOv2 runs.
"""

import gzip
import hashlib
import http.server
import json
import shutil
import statistics
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from conftest import BROWSER, CHROMIUM, model_from_notebook  # noqa: E402

from fbp import web  # noqa: E402

SIZE = 224
DINOV2_BASE_MB = 351  # dinov2_base's weights on the Hub (keras-hub preset), MB: one frozen backbone


class _Quiet(web._PageHandler):
    """The page's server, cross-origin isolated (two WebAssembly threads), without a line per request."""

    def log_message(self, *args):
        """Nothing."""


class _NotIsolated(_Quiet):
    """The page served as a plain static host serves it: no COOP/COEP, so one WebAssembly thread."""

    def end_headers(self):
        """No cross-origin isolation headers."""
        http.server.SimpleHTTPRequestHandler.end_headers(self)


def page_weight() -> tuple[int, int]:
    """The page's own files and onnxruntime-web's, in bytes: raw and gzipped."""
    files = [p for p in (ROOT / "web").rglob("*") if p.is_file() and "node_modules" not in p.parts
             and "test" not in p.parts and p.suffix in (".html", ".js", ".mjs", ".css", ".wasm")]
    return (sum(p.stat().st_size for p in files),
            sum(len(gzip.compress(p.read_bytes(), 6)) for p in files))


def resnet50_web(source: Path, target: Path) -> int:
    """A copy of a run's web files whose one model is a ResNet50 at 224 px; its ONNX file's bytes."""
    shutil.copytree(source, target)
    manifest = json.loads((target / "web.json").read_text())
    model = model_from_notebook(SIZE)
    data = web._to_onnx(model, (None, SIZE, SIZE, 3))
    entry = manifest["models"][0]
    for old in (target / "models").iterdir():
        old.unlink()
    (target / entry["file"]).write_bytes(data)
    entry.update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest(), input="image", score="score",
                 distribution=None)
    manifest.update(image_size=SIZE, models=[entry])
    (target / "web.json").write_text(json.dumps(manifest))
    return len(data)


def measure(run_web: Path, photo: Path, isolated: bool) -> dict:
    """The page's load and milliseconds per crop, served with or without cross-origin isolation."""
    import functools

    from playwright.sync_api import sync_playwright

    handler = _Quiet if isolated else _NotIsolated
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, page=ROOT / "web", run_web=run_web))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER)
            tab = browser.new_page()
            tab.goto(f"http://127.0.0.1:{server.server_address[1]}/?run=run/")
            tab.wait_for_function("['ready', 'failed'].includes(window.fbp?.state)", timeout=300_000)
            load = tab.evaluate("window.fbp.load")
            per_crop = []
            for _ in range(3):
                tab.set_input_files("#gallery", str(photo))
                tab.wait_for_function("window.fbp.state === 'scored'", timeout=300_000)
                per_crop.append(tab.evaluate("window.fbp.faces[0].msPerCrop"))
            browser.close()
    finally:
        server.shutdown()
        server.server_close()
    return {"threads": load["threads"], "load_s": load["ms"] / 1000,
            "ms_per_crop": statistics.median(per_crop)}


def main() -> None:
    """Print the page's weight, its load and speed both ways, and two runs' downloads."""
    from PIL import Image
    from skimage import data

    raw, zipped = page_weight()
    print(f"Page (HTML, JS, CSS, onnxruntime-web): {raw / 1e6:.1f} MB, {zipped / 1e6:.1f} MB gzipped")
    with tempfile.TemporaryDirectory() as scratch:
        photo = Path(scratch) / "astronaut.png"
        Image.fromarray(data.astronaut()).save(photo)
        run_web = Path(scratch) / "web"
        model_bytes = resnet50_web(Path(sys.argv[1]), run_web)
        mtcnn = sum(p.stat().st_size for p in (run_web / "mtcnn").iterdir())
        print(f"ResNet50 at {SIZE} px as ONNX: {model_bytes / 1e6:.1f} MB; MTCNN's networks "
              f"{mtcnn / 1e6:.2f} MB")
        for isolated in (True, False):
            found = measure(run_web, photo, isolated)
            print(f"{'isolated (COOP/COEP)' if isolated else 'plain static host'}: {found['threads']} "
                  f"thread(s), model loaded in {found['load_s']:.1f} s, {found['ms_per_crop']:.0f} ms a crop")
        print(f"Download, 5-fold ResNet50 run: {(5 * model_bytes + mtcnn) / 1e6:.0f} MB. Frozen DINOv2 "
              f"(estimate from the Hub's weights): about {DINOV2_BASE_MB + mtcnn / 1e6:.0f} MB for one run "
              "and for its 5-fold protocol alike (the folds share the backbone; a head is a few kB)")


if __name__ == "__main__":
    main()

"""A run's web files for the phone page (fbp/web.py): each scoring model and the MTCNN networks as ONNX
with one input, matching Keras; web.json's fields; a parity failure stopping with nothing written;
DINOv2's exact GELU converted; bundles carrying the files; the local server's headers and /run/; the
page scoring with a frozen backbone that five fold models share, as notebook 05 does."""

import http.client
import json
import shutil
import threading
import zipfile
from pathlib import Path
from types import SimpleNamespace

import keras
import numpy as np
import onnx
import onnxruntime
import pytest
from conftest import model_from_notebook, phone_page, run_cells
from test_bundles import five_frozen_folds

import utils
from fbp import bundles, environment, errors, faces, runs, scoring, web

SIZE = 32  # ResNet50's smallest input, untrained: the conversion and the comparison are what is tested
FRAMING = {"eye_center_x": 0.5, "eye_center_y": 0.44, "eye_distance": 0.21, "box_width": 0.48}


def saved_run(model: keras.Model) -> runs.Run:
    """A run in the work folder as notebooks 02 and 04 leave it (stage 1, evaluated) with this model."""
    cfg = utils.Config(weights=None, image_size=SIZE, label_distribution=True)
    identity = runs._run_identity(cfg, "0123456789ab")
    folder = runs._run_dir(cfg, identity["dataset"])
    folder.mkdir(parents=True)
    model.save(folder / "frozen.keras")
    utils.save_json(folder / "run.json", {**identity, "framing": FRAMING, "frozen": {}})
    utils.save_json(folder / "reference-frozen.json", {
        "stage": "frozen", "set": "the 3 test faces", "files": ["AF1.jpg", "AM1.jpg", "CF1.jpg"],
        "true": [2.5, 3.5, 3.0], "predicted": [2.8, 3.2, 3.0], "mean_features": [0.0], "map_scale": 0.1})
    utils.save_json(folder / "evaluation.json", {
        "model": "frozen", "n": 3, "protocol": "fold1", "evaluated": runs.Run.at(folder).current_model(),
        "PC": 0.9, "MAE": 0.21, "RMSE": 0.28, "ci95": {"PC": [0.8, 0.95], "MAE": [0.2, 0.22],
                                                       "RMSE": [0.27, 0.29]}})
    return runs.Run.at(folder)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A run with notebook 02's model (ResNet50 at 32 px, with the distribution head, untrained) and its
    web files, made once for this file's tests in a work folder of their own."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FBP_WORK_DIR", str(tmp_path_factory.mktemp("web") / "work"))
        model = model_from_notebook(SIZE, label_distribution=True)
        run = saved_run(model)
        folder = web.export_web(run)
        yield SimpleNamespace(run=run, model=model, folder=folder,
                              manifest=json.loads((folder / "web.json").read_text()),
                              parity=json.loads((folder / "parity.json").read_text()))


def session(path: Path) -> onnxruntime.InferenceSession:
    """An onnxruntime session on the CPU, as the page's WebAssembly one."""
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_a_runs_model_has_one_input_and_both_outputs_named_and_scores_as_keras(exported):
    [entry] = exported.manifest["models"]
    model = session(exported.folder / entry["file"])
    [image] = model.get_inputs()
    assert (image.name, image.type, image.shape[1:]) == (entry["input"], "tensor(float)", [SIZE, SIZE, 3])
    assert {output.name for output in model.get_outputs()} == {entry["score"], entry["distribution"]}
    faces_ = np.random.default_rng(1).integers(0, 256, (3, SIZE, SIZE, 3), dtype=np.uint8)  # not parity's
    keras_out = exported.model.predict_on_batch(faces_)
    onnx_out = dict(zip([o.name for o in model.get_outputs()],
                        model.run(None, {image.name: faces_.astype("float32")}), strict=True))
    np.testing.assert_allclose(onnx_out[entry["score"]], keras_out["score"], rtol=0, atol=1e-4)
    np.testing.assert_allclose(onnx_out[entry["distribution"]], keras_out["distribution"], rtol=0, atol=1e-4)
    assert onnx_out[entry["score"]].shape == (3, 1) and onnx_out[entry["distribution"]].shape == (3, 5)


def test_parity_json_records_each_networks_differences_the_limit_and_the_versions(exported):
    parity = exported.parity
    assert set(parity["models"]) == {exported.run.name} and set(parity["mtcnn"]) == {"pnet", "rnet", "onet"}
    for entry in [*parity["models"].values(), *parity["mtcnn"].values()]:
        assert entry["limit"] == 1e-4 and "synthetic face-like drawings" in entry["faces"]
        assert entry["max_abs_difference"] and max(entry["max_abs_difference"].values()) <= 1e-4
    assert set(parity["versions"]) == {"tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime"}
    assert parity["versions"]["keras"] == keras.__version__


def test_web_json_holds_what_the_page_needs_and_notebook_05s_words(exported):
    manifest, run = exported.manifest, exported.run
    assert (manifest["format"], manifest["run"], manifest["image_size"]) == (1, run.name, SIZE)
    assert manifest["framing"] == {key: FRAMING[key] for key in ("eye_center_x", "eye_center_y",
                                                                  "eye_distance")}
    assert manifest["detection"] == {"max_side": 640, "min_confidence": 0.9}
    assert manifest["eye_shifts"] == [list(shift) for shift in faces.EYE_SHIFTS]
    assert manifest["max_enlargement"] == faces.MAX_ENLARGEMENT
    [entry] = manifest["models"]
    path = exported.folder / entry["file"]
    assert entry["name"] == run.name and entry["file"] == f"models/{run.name}.onnx"
    assert (entry["bytes"], entry["sha256"]) == (path.stat().st_size, environment.file_hash(path))
    reference = run.reference()
    assert entry["reference"] == {"predicted": reference.predicted.tolist(), "true": reference.true.tolist(),
                                  "source": reference.source}
    assert manifest["mtcnn"] == {name: f"mtcnn/{name}.onnx" for name in ("pnet", "rnet", "onet")}
    assert manifest["texts"] == {
        "models": run.describe(), "references": utils.describe_references(utils.scorers(run)),
        "accuracy": utils.accuracy_note(run), "what": scoring.WHAT_IT_PREDICTS, "licence": scoring.LICENCE}
    assert "non-commercial research use only" in manifest["texts"]["licence"]


def test_the_mtcnn_networks_match_keras_at_any_size_pnet_takes(exported):
    rng = np.random.default_rng(2)
    for name, model in faces.detector_networks().items():
        net = session(exported.folder / exported.manifest["mtcnn"][name])
        assert len(net.get_inputs()) == 1 and len(net.get_outputs()) == (3 if name == "onet" else 2)
        shape = {"pnet": (1, 97, 130, 3), "rnet": (5, 24, 24, 3), "onet": (5, 48, 48, 3)}[name]
        images = ((rng.integers(0, 256, shape) - 127.5) / 128).astype("float32")
        theirs = net.run(None, {net.get_inputs()[0].name: images})
        for ours, onnx_out in zip(model.predict_on_batch(images), theirs, strict=True):
            np.testing.assert_allclose(onnx_out, ours, rtol=0, atol=1e-4)


def test_web_files_are_converted_again_only_when_a_model_changed(exported, tmp_path, monkeypatch, capsys):
    folder = Path(shutil.copytree(exported.folder, tmp_path / "web"))
    monkeypatch.setattr(web, "_converted", lambda *args: pytest.fail("converted again"))
    written = (folder / f"models/{exported.run.name}.onnx").stat().st_mtime_ns
    assert web.export_web(exported.run, folder) == folder and "up to date" in capsys.readouterr().out
    assert (folder / f"models/{exported.run.name}.onnx").stat().st_mtime_ns == written
    onnx = (folder / f"models/{exported.run.name}.onnx").read_bytes()
    parity = json.loads((folder / "parity.json").read_text())
    parity["sources"]["models"]["fold2-0123456789"] = "a fold model that scored before"
    utils.save_json(folder / "parity.json", parity)  # the set of models changed, not this model
    web.export_web(exported.run, folder)  # its file and MTCNN's copied, not converted
    assert "written in" in capsys.readouterr().out
    assert (folder / f"models/{exported.run.name}.onnx").read_bytes() == onnx
    assert json.loads((folder / "parity.json").read_text())["sources"]["models"] == {
        exported.run.name: exported.run.current_model()["sha1"]}
    sources = web._sources(scoring.scoring_runs(exported.run))
    assert set(web._earlier(folder, parity, sources)) == {exported.run.name, "mtcnn"}
    shared = {**parity, "features": {"file": "models/features.onnx"}}  # its model files are heads alone
    assert set(web._earlier(folder, shared, sources)) == {"mtcnn"}
    seen = []
    fine = {"input": "image", "outputs": ["score"], "max_abs_difference": {"score": 1e-7}}
    monkeypatch.setattr(web, "_converted", lambda model, shape, images: seen.append(shape) or (b"new", fine))
    monkeypatch.setattr(runs.Run, "current_model", lambda self: {"stage": "frozen", "sha1": "another"})
    web.export_web(exported.run, folder)  # notebook 03 or 02 saved the model again
    assert seen == [(None, SIZE, SIZE, 3)]
    assert (folder / f"models/{exported.run.name}.onnx").read_bytes() == b"new"
    assert json.loads((folder / "web.json").read_text())["models"][0]["distribution"] is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["web"]  # no staging folder left


def test_a_model_whose_onnx_copy_differs_stops_plainly_and_writes_nothing(exported, tmp_path, monkeypatch):
    off = {"input": "image", "outputs": ["score"], "max_abs_difference": {"score": 0.25}}
    monkeypatch.setattr(web, "_converted", lambda *args: (b"onnx", off))
    with pytest.raises(errors.WebError, match=rf"The ONNX copy of {exported.run.name} differs from its Keras "
                                              r"model by 0\.25 on its output 'score' \(at most 0\.0001 is "
                                              r"allowed\).*Nothing was written \(tensorflow \d"):
        web.export_web(exported.run, tmp_path / "web")
    assert list(tmp_path.iterdir()) == []


def test_a_dinov2_model_with_exact_gelu_converts_through_erf(exported):
    """Keras' exact GELU becomes TensorFlow's Erfc, which tf2onnx 1.17 cannot convert by itself."""
    model = model_from_notebook(64, backbone="dinov2_base", label_distribution=True)
    data, record = web._converted(model, (None, 64, 64, 3), web._faces(64))
    kinds = {node.op_type for node in onnx.load_from_string(data).graph.node}
    assert "Erf" in kinds and "Erfc" not in kinds
    assert record["outputs"] == ["distribution", "score"]
    assert max(record["max_abs_difference"].values()) < 1e-4


def test_a_bundle_carries_the_web_files_and_an_opened_one_serves_them(exported, tmp_path, capsys):
    path = shutil.copy(utils.make_bundle(exported.run, "owner/project"), tmp_path / "shared.zip")
    with zipfile.ZipFile(path) as archive:
        carried = {name for name in archive.namelist() if name.startswith("web/")}
    assert carried == {f"web/{p.relative_to(exported.folder).as_posix()}" for p in exported.folder.rglob("*")
                       if p.is_file()}
    assert bundles.bundled_web(exported.run) is None  # a run of the work folder: its own web/
    assert web.main([str(path)]) == 0
    opened = bundles.bundled_web(utils.run_to_score(str(path)))
    assert f"The web files of run {exported.run.name}: {opened}" in capsys.readouterr().out
    assert (opened / "web.json").read_bytes() == (exported.folder / "web.json").read_bytes()


def get(server, path: str) -> tuple[int, dict, bytes]:
    """A GET on a local server: its status, headers and body."""
    connection = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
    connection.request("GET", path)
    response = connection.getresponse()
    return response.status, dict(response.getheaders()), response.read()


def test_the_page_is_served_cross_origin_isolated_with_the_runs_files_at_run(exported, tmp_path):
    page = tmp_path / "page"
    (page / "vendor").mkdir(parents=True)
    (page / "index.html").write_text("<!doctype html>")
    (page / "vendor" / "ort.wasm.min.mjs").write_text("export {}")
    (page / "vendor" / "ort.wasm").write_bytes(b"\0asm")
    (tmp_path / "secret.txt").write_text("not served")
    server = web.serve(page, exported.folder, 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        for path, kind in [("/?run=run/", "text/html"), ("/vendor/ort.wasm.min.mjs", "text/javascript"),
                           ("/vendor/ort.wasm", "application/wasm"), ("/run/web.json", "application/json")]:
            status, headers, _ = get(server, path)
            assert (status, headers["Content-type"]) == (200, kind), path
            assert headers["Cross-Origin-Opener-Policy"] == "same-origin", path
            assert headers["Cross-Origin-Embedder-Policy"] == "require-corp", path
        assert get(server, "/run/web.json")[2] == (exported.folder / "web.json").read_bytes()
        assert get(server, "/run/mtcnn/pnet.onnx")[2] == (exported.folder / "mtcnn/pnet.onnx").read_bytes()
        assert get(server, "/run/../secret.txt")[0] == 404 and get(server, "/web.json")[0] == 404
    finally:
        server.shutdown()
        server.server_close()


def test_serving_says_what_is_missing_outside_a_checkout_without_npm_or_on_a_taken_port(tmp_path,
                                                                                         monkeypatch):
    with web.serve(tmp_path, tmp_path, 0) as taken:
        port = taken.server_address[1]
        with pytest.raises(errors.WebError, match=rf"cannot be served on port {port} \(.*\): another "
                                                  "program uses it. Choose another with --port"):
            web._server(tmp_path, tmp_path, port)
    monkeypatch.setattr(environment, "CHECKOUT", tmp_path)
    with pytest.raises(errors.WebError, match="comes with the repository, not with the installed package"):
        web._page()
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "index.html").write_text("<!doctype html>")
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(errors.WebError, match="install Node.js 20 or newer"):
        web._page()


def test_the_page_scores_through_a_shared_frozen_backbone_as_05_does(work, tmp_path, monkeypatch):
    from PIL import Image
    from skimage import data

    run = five_frozen_folds()  # five fold models: one frozen backbone, five heads
    photo = tmp_path / "astronaut.png"
    Image.fromarray(data.astronaut()).save(photo)
    with phone_page(web.export_web(run)) as phone:
        tab = phone.open()
        tab.set_input_files("#gallery", str(photo))
        tab.wait_for_function("window.fbp.state === 'scored'", timeout=120_000)
        [face] = tab.evaluate("window.fbp.faces")
    monkeypatch.setenv("FBP_PHOTO", str(photo))
    monkeypatch.setenv("FBP_RUN", run.name)
    [result] = run_cells("05_score_your_face")["results"]
    assert face["score"] == pytest.approx(result.score, abs=0.01)
    assert face["disagreement"] == pytest.approx(result.disagreement, abs=0.01)  # five heads, not one

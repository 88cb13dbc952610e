"""A run's web files, which the phone page (the checkout's web/) scores faces with in a browser: each
model notebook 05 scores with, and the MTCNN face detector's three networks, as ONNX files checked
against Keras (parity.json); and web.json, the manifest the page reads (the framing, detection settings,
references and the words beside a score). `python -m fbp.web SOURCE [--serve]` writes them for a saved
run or a bundle and serves the page with them: that command alone reaches for bundles, a later module."""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import importlib.metadata
import logging
import shutil
import subprocess
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from fbp import environment, faces, network, runs, scoring, synthetic
from fbp.errors import USER_ERRORS, WebError

_FORMAT = 1                 # web.json's format: bump when what the page reads changes
_OPSET = 17                 # the ONNX opset of every file (onnxruntime-web runs it)
_LIMIT = 1e-4               # the largest difference allowed between Keras and onnxruntime, on any output
_FACES = 8                  # parity's faces per network
_FRAMING = ("eye_center_x", "eye_center_y", "eye_distance")  # what the page's alignment needs
_MTCNN_SIZES = {"pnet": (61, 83), "rnet": (24, 24), "onet": (48, 48)}  # parity's inputs; PNet takes any size
_VERSIONS = ("tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime")


def export_web(run: runs.Run, folder: Path | None = None) -> Path:
    """Write a run's web files into folder (by default its folder's web/): the models notebook 05
    scores with and the MTCNN networks as ONNX, each checked against Keras, and web.json. Only what
    changed is converted again (a file made by the same libraries from the same model is kept); a
    folder is replaced whole or not at all."""
    folder = Path(folder or run.folder / "web")
    scoring_runs = scoring.scoring_runs(run)
    sources = _sources(scoring_runs)
    parity = environment.read_json(folder / "parity.json")
    if parity.get("sources") == sources and all((folder / f).is_file() for f in _files(parity)):
        manifest = _manifest(run, scoring_runs, folder, parity)
        if environment.read_json(folder / "web.json") != manifest:
            environment.save_json(folder / "web.json", manifest)
        print(f"The web files of run {run.name} in {folder} are up to date.")
        return folder
    staging = folder.with_name(f".partial-{folder.name}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        parity = _convert(scoring_runs, sources, staging, folder, _earlier(folder, parity, sources))
        environment.save_json(staging / "parity.json", parity)
        environment.save_json(staging / "web.json", _manifest(run, scoring_runs, staging, parity))
        _replace(folder, staging)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    size = sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())
    print(f"The web files of run {run.name} written in {folder} ({size / 1e6:,.1f} MB): {len(scoring_runs)} "
          f"model(s) and MTCNN's three networks as ONNX, within {_worst(parity):.1g} of Keras.")
    return folder


def _sources(scoring_runs: list[tuple[runs.Run, runs.Reference]]) -> dict:
    """What a run's web files are made from: each scoring model's file (its hash), the mtcnn wheel's
    version and this module's format and opset; its files are converted again when it changes."""
    return {"format": _FORMAT, "opset": _OPSET, "mtcnn": importlib.metadata.version("mtcnn"),
            "models": {each.name: each.current_model()["sha1"] for each, _ in scoring_runs}}


def _checked(parity: dict) -> list[dict]:
    """parity.json's entries, one per ONNX file: the shared backbone's (if any), the models', MTCNN's."""
    return [*filter(None, [parity.get("features")]), *parity["models"].values(), *parity["mtcnn"].values()]


def _files(parity: dict) -> list[str]:
    """The ONNX files parity.json checked, by their path in the web folder."""
    return [entry["file"] for entry in _checked(parity)]


def _worst(parity: dict) -> float:
    """The largest difference parity.json found between Keras and onnxruntime."""
    return max(difference for entry in _checked(parity)
               for difference in entry["max_abs_difference"].values())


def _replace(folder: Path, staging: Path) -> None:
    """Put a whole web folder in place of the old one, whose files are emptied first (Google Drive's bin
    would keep them for 30 days)."""
    if folder.is_dir():
        for old in folder.rglob("*"):
            if old.is_file():
                environment.discard(old)
        shutil.rmtree(folder)
    staging.replace(folder)


def _earlier(folder: Path, parity: dict, sources: dict) -> dict[str, dict]:
    """The files of an earlier export still true to their sources, by what they hold (a model's name, or
    "mtcnn"): their parity.json entries, when the same format, opset and libraries made them. (A model's
    file from a shared backbone's export holds its heads alone: never kept.)"""
    made = parity.get("sources", {})
    if (made.get("format"), made.get("opset"), parity.get("versions")) != (_FORMAT, _OPSET, _versions()):
        return {}
    models = {} if parity.get("features") else parity.get("models", {})
    kept = {name: entry for name, entry in models.items()
            if made["models"].get(name) == sources["models"].get(name) and (folder / entry["file"]).is_file()}
    mtcnn = parity.get("mtcnn", {})
    if made.get("mtcnn") == sources["mtcnn"] and mtcnn and all((folder / e["file"]).is_file()
                                                               for e in mtcnn.values()):
        kept["mtcnn"] = mtcnn
    return kept


def _convert(scoring_runs: list[tuple[runs.Run, runs.Reference]], sources: dict, folder: Path,
             old_folder: Path, earlier: dict[str, dict]) -> dict:
    """Write the ONNX files into folder, each checked against Keras on fixed inputs (see _converted), or
    copied from old_folder where an earlier export made it from the same model (earlier, _earlier's):
    parity.json's record, stopping at the first that differs more than _LIMIT. Fold models that share
    one frozen backbone are written as that backbone once (features.onnx) and each fold's heads."""
    first = network.load_model(scoring_runs[0][0].model_path())
    size = first.input_shape[1]  # as notebook 05 reads it
    drawn, models = f"{_FACES} synthetic face-like drawings (fbp.synthetic) at {size} px", {}
    shared, features = _shared_heads(first, [each for each, _ in scoring_runs]), None
    if shared:
        extractor = network.feature_extractor(first)
        data, record = _converted(extractor, (None, size, size, 3), _faces(size))
        features = _kept(folder, "models/features.onnx", data, record, drawn)
        pooled, head = extractor.predict_on_batch(_faces(size)), network.head_model(first)
    for each, _ in scoring_runs:
        if each.name in earlier and not shared:
            models[each.name] = _copied(earlier[each.name], old_folder, folder)
            continue
        if shared:  # the head's layers are first's: its weights give way to this fold's
            for name, weights in shared[each.name].items():
                head.get_layer(name).set_weights([np.asarray(w, "float32") for w in weights])
            data, record = _converted(head, (None, pooled.shape[1]), pooled)
        else:
            model = first if each is scoring_runs[0][0] else network.load_model(each.model_path())
            data, record = _converted(model, (None, size, size, 3), _faces(size))
        kept = _kept(folder, f"models/{each.name}.onnx", data, record,
                     f"the shared backbone's features of {drawn}" if shared else drawn)
        models[each.name] = {**kept, "image_size": size}
    if "mtcnn" in earlier:
        mtcnn = {name: _copied(entry, old_folder, folder) for name, entry in earlier["mtcnn"].items()}
    else:
        mtcnn = {name: _kept(folder, f"mtcnn/{name}.onnx", data, record, f"{drawn}, {_MTCNN_SIZES[name][0]} "
                             f"x {_MTCNN_SIZES[name][1]} px, normalised as the mtcnn package does")
                 for name, (data, record) in _mtcnn_converted().items()}
    return {"sources": sources, "limit": _LIMIT, "versions": _versions(), "features": features,
            "models": models, "mtcnn": mtcnn}


def _shared_heads(first: keras.Model, scoring: list[runs.Run]) -> dict[str, dict] | None:
    """Each fold's heads' weights when every scoring model is first's frozen backbone under heads of its
    own (a frozen-only backbone's 5-fold protocol), else None."""
    if len(scoring) < 2 or any(each.model_path().stem != "frozen" for each in scoring):
        return None
    shared = {each.name: network.heads_over(first, each.model_path()) for each in scoring}
    return shared if all(heads is not None for heads in shared.values()) else None


def _kept(folder: Path, file: str, data: bytes, record: dict, checked_on: str) -> dict:
    """Write an ONNX file into folder once its record shows it computes what Keras does; its parity.json
    entry. Else a WebError that says by how much it differs."""
    worst, output = max((difference, name) for name, difference in record["max_abs_difference"].items())
    if worst > _LIMIT:
        versions = ", ".join(f"{name} {version}" for name, version in _versions().items())
        raise WebError(f"The ONNX copy of {Path(file).stem} differs from its Keras model by {worst:.2g} on "
                       f"its output {output!r} (at most {_LIMIT:g} is allowed), on {checked_on}, so the "
                       f"phone page would not score as notebook 05 does. Nothing was written ({versions}). "
                       "Try another version of tf2onnx or onnxruntime, or report it with these versions; "
                       "notebook 05 scores with the run as it is.")
    environment.write_atomically(folder / file, lambda path: path.write_bytes(data))
    return {"file": file, **record, "faces": checked_on, "limit": _LIMIT}


def _copied(entry: dict, old_folder: Path, folder: Path) -> dict:
    """An earlier export's ONNX file copied into folder as it was checked, and its parity.json entry."""
    environment.write_atomically(folder / entry["file"],
                                 lambda path: shutil.copyfile(old_folder / entry["file"], path))
    return entry


def _versions() -> dict[str, str]:
    """The versions of the libraries that made and checked the ONNX files."""
    return {name: importlib.metadata.version(name) for name in _VERSIONS}


def _faces(size: int) -> np.ndarray:
    """Parity's faces: _FACES synthetic face-like drawings (no real face; seed 0) with scores from 1 to
    5, at a model's size, uint8 as notebook 05 feeds them."""
    rng = np.random.default_rng(0)
    return np.stack([np.asarray(synthetic.synthetic_face(score, size, rng))
                     for score in np.linspace(1, 5, _FACES)])


@functools.cache
def _mtcnn_converted() -> dict[str, tuple[bytes, dict]]:
    """The mtcnn wheel's three networks as ONNX, each with its parity record (see _converted), converted
    once per process: any size for PNet, 24 and 48 px patches for RNet and ONet, as the wheel runs them."""
    converted = {}
    for name, model in faces.detector_networks().items():
        height, width = _MTCNN_SIZES[name]
        images = (_faces(max(height, width))[:, :height, :width].astype("float32") - 127.5) / 128
        shape = (None, None, None, 3) if name == "pnet" else (None, height, width, 3)
        converted[name] = _converted(model, shape, images)
    return converted


def _converted(model: keras.Model, shape: tuple, images: np.ndarray) -> tuple[bytes, dict]:
    """A Keras model as an ONNX file with one float32 input of this shape (None: any size), and its
    record: its input's and outputs' names and each output's largest difference from Keras on images."""
    import onnxruntime

    data = _to_onnx(model, shape)
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # its warnings about unused initialisers are not ours to act on
    session = onnxruntime.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    theirs = session.run(None, {session.get_inputs()[0].name: images.astype("float32")})
    ours = _named(model.predict_on_batch(images))  # NumPy arrays
    names = [output.name for output in session.get_outputs()]
    return data, {"input": session.get_inputs()[0].name, "outputs": names,
                  "max_abs_difference": {name: float(np.max(np.abs(value - ours[name])))
                                         for name, value in zip(names, theirs, strict=True)}}


def _named(outputs) -> dict:
    """A Keras model's outputs (arrays or tensors) by the names the ONNX file gives them: a dict's keys,
    or output_0, output_1, ..."""
    if isinstance(outputs, dict):
        return dict(outputs)
    if not isinstance(outputs, list | tuple):  # one output
        return {"output_0": outputs}
    return {f"output_{i}": value for i, value in enumerate(outputs)}


def _to_onnx(model: keras.Model, shape: tuple) -> bytes:
    """A Keras model as ONNX bytes with one float32 input of this shape: its inference call traced once
    and converted by tf2onnx, which freezes the weights (and the preprocessing's constants) into the
    graph. (Keras' own ONNX export turns those constants into extra inputs; a SavedModel on the way
    took twice as long: tests/README.md, "ONNX conversion".)"""
    converter = _tf2onnx()
    signature = [tf.TensorSpec(shape, tf.float32, name="image")]

    @tf.function(input_signature=signature)
    def infer(image):
        return _named(model(image, training=False))

    with _quiet():
        proto, _ = converter.convert.from_function(infer, input_signature=signature, opset=_OPSET)
    return proto.SerializeToString()


@contextlib.contextmanager
def _quiet():
    """tf2onnx's and TensorFlow's log lines while converting (TensorFlow's own deprecations, the
    optimiser's steps) kept out of a notebook; errors still show."""
    loggers = [logging.getLogger(name) for name in ("tf2onnx", "tensorflow")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


@functools.cache
def _tf2onnx():
    """tf2onnx, taught TensorFlow's Erfc (Keras' exact GELU, as in DINOv2), which its 1.17 lacks."""
    import tf2onnx
    from tf2onnx import constants, handler

    if not any("Erfc" in ops for ops in handler.tf_op.get_opsets().get(constants.ONNX_DOMAIN, [])):
        handler.tf_op("Erfc")(_Erfc)
    return tf2onnx


class _Erfc:
    """tf2onnx's handler of TensorFlow's Erfc: Erfc(x) = 1 - Erf(x), with ONNX's Erf (opset 9 on)."""

    @classmethod
    def version_9(cls, ctx, node, **kwargs):
        """Make the node an Erf, and subtract its output from one."""
        from tf2onnx import utils

        dtype = ctx.get_dtype(node.output[0])
        node.type = "Erf"
        one = ctx.make_const(utils.make_name(f"{node.name}_one"),
                             np.ones((), utils.map_onnx_to_numpy_type(dtype)))
        minus = ctx.insert_new_node_on_output("Sub", node.output[0], name=utils.make_name(node.name),
                                              inputs=[one.output[0], node.output[0]])
        ctx.set_dtype(minus.output[0], dtype)
        ctx.copy_shape(node.output[0], minus.output[0])


def _manifest(run: runs.Run, scoring_runs: list[tuple[runs.Run, runs.Reference]], folder: Path,
              parity: dict) -> dict:
    """web.json: what the page needs to find, frame and score a face as notebook 05 does, and to say
    what the score is (the words notebook 05 and the model card say)."""
    framing, first = run.record["framing"], next(iter(parity["models"].values()))
    return {"format": _FORMAT, "run": run.name, "image_size": first["image_size"],
            "framing": {key: framing[key] for key in _FRAMING},
            "detection": {"max_side": faces.DETECTION_SIDE, "min_confidence": faces.MIN_CONFIDENCE},
            "eye_shifts": [list(shift) for shift in faces.EYE_SHIFTS],
            "max_enlargement": faces.MAX_ENLARGEMENT,
            "models": [_model_entry(each.name, reference, folder, parity["models"][each.name])
                       for each, reference in scoring_runs],
            "features": _features_entry(folder, parity.get("features")),
            "mtcnn": {name: entry["file"] for name, entry in parity["mtcnn"].items()},
            "texts": {"models": scoring.describe_models(run),
                      "references": scoring.references_in_words([reference for _, reference in scoring_runs]),
                      "accuracy": scoring.accuracy_note(run), "what": scoring.WHAT_IT_PREDICTS,
                      "licence": scoring.LICENCE}}


def _features_entry(folder: Path, checked: dict | None) -> dict | None:
    """web.json's entry of the frozen backbone that fold models share (its file, input and output names,
    which feed every model's heads), or None when each model carries its own."""
    if checked is None:
        return None
    path = folder / checked["file"]
    return {"file": checked["file"], "bytes": path.stat().st_size, "sha256": environment.file_hash(path),
            "input": checked["input"], "output": checked["outputs"][0]}


def _model_entry(name: str, reference: runs.Reference, folder: Path, checked: dict) -> dict:
    """web.json's entry of a scoring model: its file, its input's and outputs' names, its reference."""
    path = folder / checked["file"]
    return {"name": name, "file": checked["file"], "bytes": path.stat().st_size,
            "sha256": environment.file_hash(path), "input": checked["input"], "score": "score",
            "distribution": "distribution" if "distribution" in checked["outputs"] else None,
            "reference": {"predicted": reference.predicted.tolist(), "true": reference.true.tolist(),
                          "source": reference.source}}


class _PageHandler(http.server.SimpleHTTPRequestHandler):
    """The page's files, and under /run/ a run's web files, cross-origin isolated (COOP and COEP: two
    WebAssembly threads) and with the types browsers insist on for modules and WebAssembly."""

    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, ".mjs": "text/javascript",
                      ".js": "text/javascript", ".wasm": "application/wasm", ".json": "application/json"}

    def __init__(self, *args, page: Path, run_web: Path, **kwargs):
        self.run_web = Path(run_web)  # before the base class, which handles the request as it starts
        super().__init__(*args, directory=str(page), **kwargs)

    def translate_path(self, path: str) -> str:
        """A file of the run's web folder for /run/..., else of the page's folder."""
        if not path.startswith("/run/"):
            return super().translate_path(path)
        inside = Path(super().translate_path(path.removeprefix("/run"))).relative_to(self.directory)
        return str(self.run_web / inside)

    def end_headers(self):
        """Every answer cross-origin isolated."""
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        super().end_headers()


def serve(page: Path, run_web: Path, port: int) -> http.server.ThreadingHTTPServer:
    """A web server on 127.0.0.1:port (not started; port 0 picks a free one) for the page's folder, with
    a run's web files at /run/: the page opens at /?run=run/."""
    return http.server.ThreadingHTTPServer(("127.0.0.1", port),
                                           functools.partial(_PageHandler, page=page, run_web=run_web))


def _server(page: Path, run_web: Path, port: int) -> http.server.ThreadingHTTPServer:
    """serve's server, or a WebError when the port is taken."""
    try:
        return serve(page, run_web, port)
    except OSError as error:
        raise WebError(f"The page cannot be served on port {port} ({error.strerror}): another program uses "
                       "it. Choose another with --port.") from None


def _page() -> Path:
    """The checkout's page folder, onnxruntime-web's files built into its vendor/ first when missing."""
    page = environment.CHECKOUT / "web"
    if not (page / "index.html").is_file():
        raise WebError("The phone page comes with the repository, not with the installed package: clone "
                       "the repository, pip install -e . in it, and run this command there.")
    if not (page / "vendor").is_dir():
        npm = shutil.which("npm")
        if npm is None:
            raise WebError(f"The page needs onnxruntime-web's files in {page / 'vendor'}, which npm fetches "
                           "and copies: install Node.js 20 or newer (it brings npm), then run this again.")
        for step in (["ci"], ["run", "build"]):
            try:
                subprocess.run([npm, *step], cwd=page, check=True)
            except subprocess.CalledProcessError:
                raise WebError(f"`npm {' '.join(step)}` failed in {page} (its output is above): fix what it "
                               "says, then run this again.") from None
    return page


def main(argv: list[str] | None = None) -> int:
    """Write the web files of a saved run or a bundle, and with --serve serve the phone page with them
    on this computer."""
    from fbp import bundles  # a later module: it makes each bundle's web files with export_web

    parser = argparse.ArgumentParser(prog="python -m fbp.web", description=main.__doc__)
    parser.add_argument("source", help="a saved run's folder name or path, or a bundle: its .zip path, "
                                       "https:// address or hf://owner/name")
    parser.add_argument("--serve", action="store_true", help="serve the page at http://127.0.0.1:PORT")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    source = str(Path(args.source).resolve()) if Path(args.source, "run.json").is_file() else args.source
    try:
        run = bundles.run_to_score(source)
        folder = bundles.bundled_web(run) or export_web(run)
        print(f"The web files of run {run.name}: {folder}")
        if args.serve:
            server = _server(_page(), folder, args.port)
            print(f"The page: http://127.0.0.1:{server.server_address[1]}/?run=run/ (Ctrl+C stops it).")
            with server, contextlib.suppress(KeyboardInterrupt):
                server.serve_forever()
    except USER_ERRORS as error:
        print(f"{type(error).__name__}: {error}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

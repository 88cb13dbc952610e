"""Benchmark (run by hand): what a model's ONNX file costs to make, for notebook 02's ResNet50 at 224 px
(untrained weights): the median seconds of three conversions as fbp.web makes them (the inference call
traced once, tf2onnx's from_function) and through a SavedModel (Keras' export, then tf2onnx's
from_saved_model, as fbp.web did before), and of putting the file in a bundle deflated or stored.

    python tests/bench_onnx.py
"""

import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from conftest import model_from_notebook  # noqa: E402

from fbp import web  # noqa: E402

SIZE, REPEATS = 224, 3


def through_saved_model(model, shape: tuple) -> bytes:
    """The ONNX file through a SavedModel on disk: the way fbp.web took before."""
    import tensorflow as tf
    from tf2onnx import tf_loader

    converter = web._tf2onnx()
    with tempfile.TemporaryDirectory() as saved, web._quiet():
        model.export(saved, format="tf_saved_model", verbose=False,
                     input_signature=[tf.TensorSpec(shape, tf.float32, name="image")])
        graph, inputs, outputs, renamed = tf_loader.from_saved_model(
            saved, None, None, tag="serve", signatures=["serving_default"], return_tensors_to_rename=True)
        proto, _ = converter.convert.from_graph_def(graph, input_names=inputs, output_names=outputs,
                                                    opset=web._OPSET, tensors_to_rename=renamed)
    return proto.SerializeToString()


def median_seconds(step) -> tuple[float, object]:
    """The median seconds of REPEATS calls of step, and its last result."""
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        result = step()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    """Print each way's median seconds and the file's size."""
    model = model_from_notebook(SIZE)
    shape = (None, SIZE, SIZE, 3)
    traced, data = median_seconds(lambda: web._to_onnx(model, shape))
    saved, _ = median_seconds(lambda: through_saved_model(model, shape))
    print(f"ResNet50 {SIZE} px, {len(data) / 1e6:.1f} MB as ONNX: traced once {traced:.1f} s, through a "
          f"SavedModel {saved:.1f} s (median of {REPEATS})")
    with tempfile.TemporaryDirectory() as folder:
        for method in (zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED):
            path = Path(folder) / f"{method}.zip"

            def bundle(path=path, method=method):
                with zipfile.ZipFile(path, "w", method) as archive:
                    archive.writestr("model.onnx", data)

            seconds, _ = median_seconds(bundle)
            name = "deflated" if method == zipfile.ZIP_DEFLATED else "stored"
            print(f"  in a bundle, {name}: {seconds:.2f} s, {path.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()

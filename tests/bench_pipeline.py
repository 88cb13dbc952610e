"""Benchmark (run by hand): input pipeline throughput and peak memory over 5,500 synthetic
350x350 JPEGs, against the blog's way of loading every image into one float32 array.

    python tests/bench_pipeline.py            # all measurements, each in its own process

Figures go into the README with the machine they came from.
"""

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = Path("/tmp/fbp-bench/data")


def dataset():
    from fbp import synthetic

    root = synthetic.make_synthetic_dataset(DATA, n=5500, image_size=350, with_ratings=False)
    return dataset.all_labels(root)


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def throughput(frame, pipeline) -> dict:
    """Images per second of the first pass (decode and cache) and of two cached passes."""
    passes = []
    for _ in range(3):
        start, count = time.perf_counter(), 0
        for images, _ in pipeline:
            count += int(images.shape[0])
        passes.append(count / (time.perf_counter() - start))
    return {"first_pass": passes[0], "cached_passes": sum(passes[1:]) / 2, "images": count}


def measure(mode: str) -> dict:
    frame = dataset()
    if mode == "numpy_float32":          # the blog's way: every image in one float32 array
        import numpy as np
        from PIL import Image

        start = time.perf_counter()
        array = np.zeros((len(frame), 350, 350, 3), dtype="float32")
        for i, path in enumerate(frame["path"]):
            array[i] = np.asarray(Image.open(path).convert("RGB"), dtype="float32")
        return {"load_seconds": time.perf_counter() - start, "array_gb": array.nbytes / 1024**3,
                "peak_rss_gb": peak_rss_gb()}
    import keras
    import tensorflow as tf

    import utils

    pipeline = utils.make_dataset(frame, 350, 32, training=mode.startswith("uint8_train"))
    if mode == "uint8_train_augmented":  # notebook 03's augmentation, in the pipeline on the CPU
        sys.path.insert(0, str(ROOT / "tests"))
        from conftest import run_cells

        pipeline = run_cells("03_finetune", "augment", tf=tf, train_images=pipeline)["train"]
    if mode == "uint8_train_keras_layers":  # the alternative: Keras' augmentation layers, here on the CPU
        augment = keras.Sequential([keras.layers.RandomFlip("horizontal"),
                                    keras.layers.RandomTranslation(0.05, 0.05, fill_mode="nearest"),
                                    keras.layers.RandomZoom((-0.1, 0.0), fill_mode="nearest")])
        pipeline = pipeline.map(lambda x, y: (augment(x, training=True), y),
                                num_parallel_calls=tf.data.AUTOTUNE)
    if mode == "float32_cpu_preprocess":  # what we avoid: float32 and preprocess_input after the cache
        pipeline = pipeline.map(lambda x, y: (keras.applications.resnet50.preprocess_input(
            tf.cast(x, tf.float32)), y), num_parallel_calls=tf.data.AUTOTUNE)
    return {**throughput(frame, pipeline), "peak_rss_gb": peak_rss_gb()}


MODES = ["uint8_eval", "uint8_train", "uint8_train_augmented", "uint8_train_keras_layers",
         "float32_cpu_preprocess", "numpy_float32"]

if __name__ == "__main__":
    if len(sys.argv) > 1:
        print(json.dumps(measure(sys.argv[1])))
    else:
        dataset()  # generate once, outside the measurements
        for mode in MODES:
            out = subprocess.run([sys.executable, __file__, mode], capture_output=True, text=True)
            print(mode, out.stdout.strip().splitlines()[-1] if out.stdout.strip() else out.stderr[-2000:])

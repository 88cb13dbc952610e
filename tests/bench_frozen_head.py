"""Benchmark (run by hand): the frozen-head stage with cached features against training the
same head through the frozen network, for the same number of head epochs.

    python tests/bench_frozen_head.py [images] [image_size] [epochs]
"""

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import keras  # noqa: E402
from conftest import model_from_notebook  # noqa: E402

import utils  # noqa: E402
from fbp import (  # noqa: E402
    dataset,
    synthetic,
)


def main(images: int = 400, size: int = 224, epochs: int = 10) -> None:
    root = synthetic.make_synthetic_dataset(Path("/tmp/fbp-bench/head"), n=images, image_size=size,
                                            with_ratings=False)
    frame = dataset.all_labels(root)
    y = frame["score"].to_numpy("float32")
    keras.utils.set_random_seed(0)
    model = model_from_notebook(size)

    with tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter()
        features = utils.cached_features(model, frame, size, Path(cache))
        extract = time.perf_counter() - start
        head = keras.Sequential([keras.Input((features.shape[1],)), model.get_layer("score")])
        head.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
        start = time.perf_counter()
        head.fit(features.to_numpy(), y, batch_size=32, epochs=epochs, verbose=0)
        cached_fit = time.perf_counter() - start

    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    data = utils.make_dataset(frame, size, 32)
    start = time.perf_counter()
    model.fit(data, epochs=epochs, verbose=0)
    through = time.perf_counter() - start

    print(f"{images} images, {size} px, {epochs} head epochs, weights=None, CPU")
    print(f"through the frozen network: {through:.1f} s")
    print(f"cached: extract once {extract:.1f} s + {epochs} epochs {cached_fit:.2f} s")
    print(f"speed-up, first run (extraction included): {through / (extract + cached_fit):.1f}x")
    print(f"speed-up, features already cached: {through / cached_fit:.0f}x")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))

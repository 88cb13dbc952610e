"""Benchmark (run by hand): what turning off TensorFlow's oneDNN kernels costs on the CPU, as `import fbp`
does (TF_ENABLE_ONEDNN_OPTS=0; fbp/__init__.py says why), for a ResNet50 at 350 px and a full-size
SigLIP2 image encoder at 224 px, random weights, batches of 8: the median seconds of a training step and
of a forward pass, each setting in its own process.

    python tests/bench_onednn.py

With oneDNN on, a SigLIP2 process may die of the heap corruption the setting avoids: the table says so.
"""

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BATCH, WARM_UP, REPEATS = 8, 2, 5
MODELS = {"ResNet50": 350, "siglip2_base_patch16_224": 224}


def build(name: str, size: int):
    """The model: the backbone with a one-unit head, compiled as 03 compiles it (AdamW, MSE)."""
    import keras

    if name == "ResNet50":
        backbone = keras.applications.ResNet50(include_top=False, weights=None, pooling="avg",
                                               input_shape=(size, size, 3))
    else:
        sys.path.insert(0, str(ROOT / "tests"))
        from bench_backbones import build_foundation

        backbone = build_foundation(name, size)
    model = keras.Sequential([backbone, keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.AdamW(1e-5), loss="mse")
    return model


def seconds(step) -> float:
    """The median seconds of REPEATS calls of step, after WARM_UP."""
    for _ in range(WARM_UP):
        step()
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(name: str) -> None:
    """In the child: print the training step's and the forward pass's median seconds."""
    import numpy as np

    size = MODELS[name]
    model = build(name, size)
    images = np.random.default_rng(0).uniform(0, 255, (BATCH, size, size, 3)).astype("float32")
    scores = np.full((BATCH, 1), 3.0, "float32")
    train = seconds(lambda: model.train_on_batch(images, scores))
    forward = seconds(lambda: model.predict_on_batch(images))
    print(f"{train:.2f} {forward:.2f}")


def child(name: str, onednn: str) -> str:
    """One model under one setting, in a process of its own: its two timings, or how it died."""
    env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": onednn, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, __file__, name], env=env, capture_output=True, text=True)
    if done.returncode:
        return f"died (exit {done.returncode}) | -"
    train, forward = done.stdout.split()[-2:]
    return f"{train} s | {forward} s"


if __name__ == "__main__":
    if len(sys.argv) > 1:
        measure(sys.argv[1])
        sys.exit()
    from importlib.metadata import version

    print(f"TensorFlow {version('tensorflow')}, {os.cpu_count()} cores, batches of {BATCH}, "
          f"median of {REPEATS}\n")
    print("| model | px | oneDNN | training step | forward pass |\n|---|---|---|---|---|")
    for name, size in MODELS.items():
        for onednn in ("1", "0"):
            setting = "on" if onednn == "1" else "off"
            print(f"| {name} | {size} | {setting} | {child(name, onednn)} |", flush=True)

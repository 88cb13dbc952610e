"""Benchmark (run by hand): why tests/run.sh gives TensorFlow half the cores in each of its two
concurrent halves. Two smoke trainings (notebooks 02 and 03's cells, 60 synthetic faces) run at once,
each in its own process, first with TensorFlow's default thread pools (every core each), then with one
thread each (TF_NUM_INTRAOP_THREADS and TF_NUM_INTEROP_THREADS at half the cores): the wall time of each
pair.

    python tests/bench_threads.py
"""

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fbp import synthetic  # noqa: E402

TRAIN = """
import sys
sys.path.insert(0, {tests!r})
from pathlib import Path
import pytest
import conftest
import utils
conftest.train(utils.Config().smoke(), Path({data!r}), pytest.MonkeyPatch())
"""


def pair_seconds(data: Path, folder: Path, threads: int | None) -> float:
    """The wall time of two trainings run at once, each with its own work folder."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("TF_NUM_")}
    if threads:
        env |= {"TF_NUM_INTRAOP_THREADS": str(threads), "TF_NUM_INTEROP_THREADS": str(threads)}
    script = TRAIN.format(tests=str(ROOT / "tests"), data=str(data))
    start = time.perf_counter()
    processes = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, env={**env, "FBP_WORK_DIR": str(folder / run)})
                 for run in ("first", "second")]
    if any(process.wait() for process in processes):
        raise RuntimeError("a training failed: run tests/test_training.py to see why")
    return time.perf_counter() - start


def main() -> None:
    """Print the pair's wall time with each setting."""
    half = max(1, (os.cpu_count() or 2) // 2)
    with tempfile.TemporaryDirectory() as folder:
        data = synthetic.make_synthetic_dataset(Path(folder) / "data", n=60, image_size=48,
                                                with_ratings=False)
        settings = [(f"{half} thread(s) each", half), ("TensorFlow's default", None)]
        for turn, (name, threads) in enumerate([*settings, *settings]):  # twice each: the machine drifts
            seconds = pair_seconds(data, Path(folder) / f"turn-{turn}", threads)  # a fresh work folder
            print(f"two smoke trainings at once, {name}: {seconds:.0f} s ({os.cpu_count()} cores)")


if __name__ == "__main__":
    main()

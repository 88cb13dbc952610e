"""Benchmark (run by hand): what fine-tuning the whole backbone at 350x350 px on a Colab free T4 would
cost, for ResNet50, ConvNeXtTiny and EfficientNetV2S built with weights=None; and for the keras-hub
presets (settings.FOUNDATIONS), built at full size with random weights from their published
configurations, at their converters' sizes, whether a fine-tune fits a T4 at all.

    python tests/bench_backbones.py               # both
    python tests/bench_backbones.py foundations   # the presets alone

Everything except the last column is an estimate read off the Keras graph, not a GPU measurement:
forward FLOPs are 2 x the multiply-accumulates of every Conv2D / DepthwiseConv2D / Dense layer
(cross-checked against TensorFlow's profiler and the published figures at each model's reference
resolution), activation memory is the sum of every layer's output elements, and the training state
counts weights, gradients, AdamW moments and a float16 weight copy per parameter. Batch size, peak
memory and epoch time follow from those with the T4 constants below. The last column is the real
forward time of a batch of 8 on this machine's CPU, only as a sanity figure.
"""

import os
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import keras  # noqa: E402
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import utils  # noqa: E402
from fbp import settings  # noqa: E402

BACKBONES = tuple(utils.BACKBONES)  # the backbones the recipe offers
SIZE = 350
# Published forward cost in GMACs at each model's reference resolution: ResNet-50 ~4.1 (torchvision's
# v1.5; the original v1 that Keras builds, stride 2 in the first 1x1 conv, is ~3.9), ConvNeXt-T 4.5,
# EfficientNetV2-S 8.4-8.8 at 384 px.
REFERENCE_GMACS = {"ResNet50": (224, 4.1, 4.1), "ConvNeXtTiny": (224, 4.5, 4.5),
                   "EfficientNetV2S": (384, 8.4, 8.8)}

GB = 1024**3                       # "GB" below is GiB, as nvidia-smi and Colab report it
T4_BUDGET_GB = 14.0                # of the ~15 GB usable on a free Colab T4
CUDA_XLA_OVERHEAD_GB = 1.0         # CUDA context, cuDNN/XLA workspaces, allocator slack
ACTIVATION_SAFETY = 1.3            # on batch x activations: fragmentation, temporaries, cuDNN workspaces
BATCHES = (8, 16, 24, 32, 48, 64)
T4_FP16_PEAK_FLOPS = 65e12         # tensor cores; fp32 is 8.1e12 and memory bandwidth 320 GB/s
ACHIEVED_FRACTION_OF_PEAK = 0.25   # assumed sustained fraction of the fp16 peak under mixed precision
ACTIVATION_BYTES = 2               # float16 activations under mixed_float16
# Per parameter: float32 weight, float32 gradient, AdamW's two float32 moments, float16 cast copy.
WEIGHT_BYTES, GRADIENT_BYTES, ADAMW_BYTES, FP16_COPY_BYTES = 4, 4, 8, 2
TRAIN_IMAGES, VAL_IMAGES, ALL_IMAGES = 3960, 440, 5500  # fold 1: 4,400 train -> 10 % validation
TRAIN_FLOPS_PER_FORWARD = 3        # forward + backward (gradients w.r.t. activations and weights)
CPU_BATCH, CPU_REPEATS = 8, 3


def build(name: str, size: int = SIZE) -> keras.Model:
    """The backbone as the notebooks would build it, without ImageNet weights."""
    keras.backend.clear_session()
    return getattr(keras.applications, name)(include_top=False, pooling="avg", weights=None,
                                             input_shape=(size, size, 3))


def leaf_outputs(model: keras.Model) -> Iterator[tuple[keras.Operation, list[tuple]]]:
    """Every operation of the functional graph, nested models opened up, with its output shapes."""
    for op in model.operations if hasattr(model, "operations") else model.layers:
        if isinstance(op, keras.Model):
            yield from leaf_outputs(op)
        else:
            for node in op._inbound_nodes:
                yield op, [tuple(t.shape) for t in node.outputs]


def forward_macs(model: keras.Model) -> int:
    """Multiply-accumulates per image of the Conv2D (grouped too), DepthwiseConv2D and Dense layers."""
    # Left out: biases, BatchNormalization / LayerNormalization, activations, residual adds, pooling,
    # squeeze-excitation multiplies, rescaling -- a few percent, which the profiler cross-check shows.
    macs = 0
    for op, shapes in leaf_outputs(model):
        out = int(np.prod(shapes[0][1:]))
        if isinstance(op, keras.layers.DepthwiseConv2D):
            macs += out * int(np.prod(op.kernel_size))
        elif isinstance(op, keras.layers.Conv2D):  # kernel (kh, kw, in / groups, out): groups included
            macs += out * int(np.prod(op.kernel.shape[:-1]))
        elif isinstance(op, keras.layers.Dense):   # ConvNeXt's pointwise convs are Dense on 4-D maps
            macs += out * int(op.kernel.shape[0])
    return macs


def activation_elements(model: keras.Model) -> int:
    """Elements per image of every layer output (identity layers skipped): an upper-bound-ish guess."""
    # Not every output is kept for the backward pass (XLA fuses elementwise chains) while some ops
    # keep extra tensors (dropout masks, BN statistics), so this is an estimate, not a measurement.
    total = 0
    for op, shapes in leaf_outputs(model):
        if isinstance(op, keras.layers.Activation) and op.activation is keras.activations.linear:
            continue
        total += sum(int(np.prod(s[1:])) for s in shapes)
    return total


def profiler_flops(model: keras.Model, size: int) -> float:
    """Float ops of one forward pass by TensorFlow's profiler, on the frozen concrete function."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    spec = tf.TensorSpec((1, size, size, 3), tf.float32)
    graph = convert_variables_to_constants_v2(
        tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)).graph
    options = {**tf.compat.v1.profiler.ProfileOptionBuilder.float_operation(), "output": "none"}
    return tf.compat.v1.profiler.profile(graph=graph, run_meta=tf.compat.v1.RunMetadata(), cmd="op",
                                         options=options).total_float_ops


def state_bytes(model: keras.Model) -> int:
    """Weights and float16 copy for every parameter, gradients and AdamW moments for trainable ones."""
    total = model.count_params()
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    return total * (WEIGHT_BYTES + FP16_COPY_BYTES) + trainable * (GRADIENT_BYTES + ADAMW_BYTES)


def peak_gb(state: int, activations: int, batch: int) -> float:
    """Estimated peak GPU memory for one training step at this batch size."""
    return (state + batch * activations * ACTIVATION_BYTES * ACTIVATION_SAFETY) / GB + CUDA_XLA_OVERHEAD_GB


def largest_batch(state: int, activations: int) -> int | None:
    """The largest batch size tried whose estimated peak fits the T4 budget."""
    fits = [b for b in BATCHES if peak_gb(state, activations, b) <= T4_BUDGET_GB]
    return max(fits) if fits else None


def t4_seconds(flops: float) -> float:
    """Seconds on the T4 at the assumed fraction of its fp16 peak."""
    return flops / (T4_FP16_PEAK_FLOPS * ACHIEVED_FRACTION_OF_PEAK)


def cpu_ms_per_image(model: keras.Model) -> float:
    """Measured forward time per image, batch of 8 at 350 px, after one warm-up batch."""
    x = np.random.default_rng(0).uniform(0, 255, (CPU_BATCH, SIZE, SIZE, 3)).astype("float32")
    model.predict_on_batch(x)
    start = time.perf_counter()
    for _ in range(CPU_REPEATS):
        model.predict_on_batch(x)
    return (time.perf_counter() - start) / (CPU_REPEATS * CPU_BATCH) * 1000


def graph_facts(model: keras.Model) -> dict:
    """Things worth knowing before swapping the backbone into the notebooks."""
    ops = list(leaf_outputs(model))
    preprocessing = (keras.layers.Rescaling, keras.layers.Normalization)
    pool = [op for op in model.operations if isinstance(op, keras.layers.GlobalAveragePooling2D)][-1]
    after = [op.name for op in model.operations[model.operations.index(pool) + 1:]]
    return {
        "model name": model.name,
        "preprocessing inside": ", ".join(type(op).__name__ for op, _ in ops
                                          if isinstance(op, preprocessing)) or "none",
        "last 4-D map before pooling": pool._inbound_nodes[0].input_tensors[0]._keras_history.operation.name,
        "after pooling": ", ".join(after) or "nothing",
        "BatchNormalization": sum(isinstance(op, keras.layers.BatchNormalization) for op, _ in ops),
        "LayerNormalization": sum(isinstance(op, keras.layers.LayerNormalization) for op, _ in ops),
        "layers (leaf)": len(ops),
    }


def measure(name: str) -> dict:
    """All figures for one backbone: graph estimates at 350 px, the cross-check, the CPU timing."""
    size, low, high = REFERENCE_GMACS[name]
    reference = build(name, size)
    check = {"ref size": size, "counted GMACs": forward_macs(reference) / 1e9,
             "profiler GFLOPs": profiler_flops(reference, size) / 1e9, "published GMACs": (low, high)}
    model = build(name)
    activations, state = activation_elements(model), state_bytes(model)
    flops = 2 * forward_macs(model)
    batch = largest_batch(state, activations)
    return {
        "name": name, "params": model.count_params(), "width": model.output_shape[-1], "flops": flops,
        "activations": activations, "state": state, "batch": batch,
        "peak at batch": peak_gb(state, activations, batch) if batch else float("nan"),
        "peak at 32": peak_gb(state, activations, 32),
        "epoch": t4_seconds((TRAIN_IMAGES * TRAIN_FLOPS_PER_FORWARD + VAL_IMAGES) * flops),
        "frozen pass": t4_seconds(ALL_IMAGES * flops),
        "cpu ms": cpu_ms_per_image(model), "check": check, "facts": graph_facts(model),
    }


def report(rows: list[dict]) -> None:
    """The markdown tables and the paragraph on method and assumptions."""
    print(f"## Fine-tuning cost at {SIZE}x{SIZE} px on a Colab free T4 (estimated), weights=None\n")
    print("| backbone | params | feature width | forward GFLOPs/img | activations/img (fp16) "
          "| training state | largest batch <= 14 GB | est. peak at that batch | est. peak at batch 32 "
          "| est. epoch (3,960 train + 440 val) | est. frozen-feature pass (5,500 fwd) "
          "| forward ms/img, batch 8, measured on this machine (2-core CPU) |")
    print("|" + "---|" * 12)
    for r in rows:
        print(f"| {r['name']} | {r['params'] / 1e6:.1f} M | {r['width']} | {r['flops'] / 1e9:.1f} "
              f"| {r['activations'] * ACTIVATION_BYTES / 1024**2:.0f} MB | {r['state'] / GB:.2f} GB "
              f"| {r['batch']} | {r['peak at batch']:.1f} GB | {r['peak at 32']:.1f} GB "
              f"| {r['epoch']:.0f} s | {r['frozen pass']:.0f} s | {r['cpu ms']:.0f} |")

    print("\n## Cross-check of the FLOP count at each model's reference resolution\n")
    print("| backbone | px | counted GMACs | counted / published | TF profiler GFLOPs (all ops) "
          "| published GMACs |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        c = r["check"]
        low, high = c["published GMACs"]
        published = f"{low}" if low == high else f"{low}-{high}"
        ratio = c["counted GMACs"] / ((low + high) / 2)
        print(f"| {r['name']} | {c['ref size']} | {c['counted GMACs']:.2f} | {ratio:.2f} "
              f"| {c['profiler GFLOPs']:.2f} | {published} |")

    print("\n## What the Keras graphs contain\n")
    keys = list(rows[0]["facts"])
    print("| backbone | " + " | ".join(keys) + " |")
    print("|" + "---|" * (len(keys) + 1))
    for r in rows:
        print(f"| {r['name']} | " + " | ".join(str(r["facts"][k]) for k in keys) + " |")

    method = f"""Method and assumptions. Forward FLOPs are 2 x the multiply-accumulates of the
Conv2D (grouped ones included), DepthwiseConv2D and Dense layers, read from each layer's output shape
and kernel; biases, normalisation, activations, residual adds and pooling are left out (the profiler
column counts them too). Training FLOPs are {TRAIN_FLOPS_PER_FORWARD} x forward; an epoch is
{TRAIN_IMAGES:,} training images plus {VAL_IMAGES:,} validation images forward only, and the
frozen-feature pass is {ALL_IMAGES:,} images forward only, both at an assumed
{ACHIEVED_FRACTION_OF_PEAK:.0%} of the T4's {T4_FP16_PEAK_FLOPS / 1e12:.0f} TFLOPS fp16 peak
(mixed_float16 on tensor cores; the float32 peak is 8.1 TFLOPS, 8x lower), with no input-pipeline,
Python or XLA-compilation time. Activations per image are the summed output elements of every layer
of the graph, nested models opened up and identity layers skipped, at {ACTIVATION_BYTES} bytes
(float16): an upper-bound-ish estimate, since fused elementwise ops do not all keep their outputs for
the backward pass while some ops keep extra ones. Training state is
{WEIGHT_BYTES + FP16_COPY_BYTES} bytes per parameter (float32 weight + float16 copy) plus
{GRADIENT_BYTES + ADAMW_BYTES} per trainable one (float32 gradient + AdamW's two moments).
Peak = state + batch x activations x {ACTIVATION_SAFETY} + {CUDA_XLA_OVERHEAD_GB:.0f} GB CUDA/XLA
overhead; the largest batch of {", ".join(map(str, BATCHES))} with a peak within
{T4_BUDGET_GB:.0f} GB is shown (GB = 2**30 bytes). The last column is measured: {CPU_REPEATS}
batches of {CPU_BATCH} after a warm-up batch, float32, on this machine's CPU."""
    print("\n" + textwrap.fill(" ".join(method.split()), width=100))


# --- the keras-hub presets: Vision Transformers --------------------------------------------------

# Their published configurations (the Hugging Face configs keras-hub converts, facebook/dinov2-base and
# google/siglip2-base-patch16-224): both ViT-B, 12 blocks of width 768, 12 heads, an MLP of 3,072.
VIT_B = {"num_layers": 12, "hidden_dim": 768, "num_heads": 12, "intermediate_dim": 3072}
FOUNDATION_CONFIGS = {"dinov2_base": {"patch_size": 14, "position_embedding_shape": (518, 518), **VIT_B},
                      "siglip2_base_patch16_224": {"patch_size": 16, **VIT_B}}
# Cross-check: ViT-B/16 at 224 px is 17.6 GMACs (timm's vit_base_patch16_224; the ViT paper's 17.6 GFLOPs
# count multiply-accumulates).
VIT_B16_224_GMACS = 17.6
USABLE_BATCH = 16  # the paper's batch: a smaller one would make a fine-tune a different recipe


def build_foundation(name: str, size: int | None = None) -> keras.Model:
    """The preset's image encoder at full size with random weights, at its converter's size or this one."""
    keras.backend.clear_session()
    size = size or settings.FOUNDATIONS[name].image_size
    encoder = getattr(keras_hub.models, settings.FOUNDATIONS[name].encoder)
    return encoder(**FOUNDATION_CONFIGS[name], image_shape=(size, size, 3))


def vit_tokens(name: str, size: int) -> int:
    """Tokens per image: one per patch, plus DINOv2's class token."""
    return (size // FOUNDATION_CONFIGS[name]["patch_size"]) ** 2 + (name.startswith("dinov2"))


def vit_macs(model: keras.Model, tokens: int) -> int:
    """Multiply-accumulates per image: every kernel once per token it is applied to (SigLIP's pooling
    head: its keys and values over every token, the rest on its one query), plus each block's two
    attention products (queries x keys, weights x values: 2 x tokens^2 x width)."""
    macs = 0
    for weight in model.weights:
        if not weight.path.endswith("kernel"):
            continue
        size = int(np.prod(weight.shape))
        if "patch" in weight.path:   # the patch embedding: its kernel once per patch
            macs += size * (tokens - 1 if "dinov2" in model.name else tokens)
        elif weight.path.startswith("head/"):
            macs += size * (tokens if "/key/" in weight.path or "/value/" in weight.path else 1)
        else:
            macs += size * tokens
    config = model.get_config()
    return macs + config["num_layers"] * 2 * tokens**2 * config["hidden_dim"]


def vit_activations(model: keras.Model, tokens: int) -> int:
    """Elements per image the backward pass keeps: the patch embedding's output and, per block, its two
    layer norms, queries, keys and values, the attention scores and their softmax (heads x tokens x
    tokens each: not layer outputs, so leaf_outputs would miss them), the attended values, the output
    projection, the MLP's two dense layers and activation, two residual sums (and DINOv2's two layer
    scales)."""
    config = model.get_config()
    width, mlp, heads = config["hidden_dim"], config["intermediate_dim"], config["num_heads"]
    per_token = 10 * width + 2 * mlp + (2 * width if "dinov2" in model.name else 0)
    return tokens * width + config["num_layers"] * (tokens * per_token + 2 * heads * tokens**2)


def cpu_ms_per_foundation_image(model: keras.Model, size: int, batch: int = 2) -> float:
    """Measured forward time per image at the preset's size, after one warm-up batch."""
    x = np.random.default_rng(0).uniform(-1, 1, (batch, size, size, 3)).astype("float32")
    model.predict_on_batch({"images": x})
    start = time.perf_counter()
    for _ in range(CPU_REPEATS):
        model.predict_on_batch({"images": x})
    return (time.perf_counter() - start) / (CPU_REPEATS * batch) * 1000


def measure_foundation(name: str) -> dict:
    """A preset's figures at its converter's size: size, memory and time, the batch a T4 allows."""
    size = settings.FOUNDATIONS[name].image_size
    model = build_foundation(name)
    tokens = vit_tokens(name, size)
    activations, state = vit_activations(model, tokens), state_bytes(model)
    flops = 2 * vit_macs(model, tokens)
    batch = largest_batch(state, activations)
    check = build_foundation("siglip2_base_patch16_224", 224)  # ViT-B/16 at 224 px
    return {
        "name": name, "size": size, "tokens": tokens, "params": model.count_params(), "flops": flops,
        "activations": activations, "state": state, "batch": batch,
        "peak at 8": peak_gb(state, activations, 8), "peak at 32": peak_gb(state, activations, 32),
        "fine-tunes": batch is not None and batch >= USABLE_BATCH,
        "frozen pass": t4_seconds(ALL_IMAGES * flops),
        "epoch": t4_seconds((TRAIN_IMAGES * TRAIN_FLOPS_PER_FORWARD + VAL_IMAGES) * flops),
        "check GMACs": vit_macs(check, vit_tokens("siglip2_base_patch16_224", 224)) / 1e9,
        "cpu ms": cpu_ms_per_foundation_image(build_foundation(name), size),
    }


def report_foundations(rows: list[dict]) -> None:
    """The presets' markdown table and how to read it."""
    print("\n## The keras-hub presets at their converters' sizes (estimated), random weights\n")
    print("| preset | px | tokens | params | forward GFLOPs/img | activations/img (fp16) | training state "
          f"| est. peak at batch 8 | est. peak at batch 32 | largest batch <= {T4_BUDGET_GB:.0f} GB "
          f"| fine-tunes (batch >= {USABLE_BATCH}) | est. epoch | est. frozen-feature pass (5,500 fwd) "
          "| forward ms/img, batch 2, measured on this machine (2-core CPU) |")
    print("|" + "---|" * 14)
    for r in rows:
        print(f"| {r['name']} | {r['size']} | {r['tokens']} | {r['params'] / 1e6:.1f} M "
              f"| {r['flops'] / 1e9:.1f} | {r['activations'] * ACTIVATION_BYTES / 1024**2:,.0f} MB "
              f"| {r['state'] / GB:.2f} GB | {r['peak at 8']:.1f} GB | {r['peak at 32']:.1f} GB "
              f"| {r['batch']} | {'yes' if r['fine-tunes'] else 'no: frozen-only'} | {r['epoch']:.0f} s "
              f"| {r['frozen pass']:.0f} s | {r['cpu ms']:,.0f} |")
    print(f"\nCross-check: ViT-B/16 at 224 px counts {rows[0]['check GMACs']:.1f} GMACs here, against "
          f"{VIT_B16_224_GMACS} published.")


def main() -> None:
    tf.get_logger().setLevel("ERROR")
    if sys.argv[1:] != ["foundations"]:
        report([measure(name) for name in BACKBONES])
    report_foundations([measure_foundation(name) for name in settings.FOUNDATIONS])


if __name__ == "__main__":
    main()

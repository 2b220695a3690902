"""The authors' GLAMOR-Net in TensorFlow, timed on this machine: the figures the PyTorch model is
compared with (training step and inference, batch 32, face 96x96, context 112x112, RGB, NHWC).

The network is the one of the authors' TF2 code, rebuilt layer by layer with Keras 2 layers:
  encoders  two (face, context), each five blocks of Conv2D 3x3 "same" with bias ->
            BatchNormalization -> ReLU, with a 2x2 max-pool after each of the first four;
            32, 64, 128, 256, 256 filters
  face      the face map averaged over its cells: v_f (B, 256)
  GLA       every context cell v_i joined with v_f, scored by Dense(128, relu) ->
            BatchNormalization -> ReLU -> Dense(1); softmax over the cells; v_c = sum_i a_i v_i
  fusion    per branch Dense(128, relu) -> Dense(1); softmax over the two scores weighs v_f and
            v_c, which are concatenated
  head      Dense(128, relu) -> Dropout(0.5) -> Dense(7, softmax)
Training step: sparse categorical cross-entropy, SGD (lr 5e-4, momentum 0.9, the authors'
optimiser), gradients with tf.GradientTape. Inference: the model with training=False.
Each is timed eager and as a tf.function.

Set-up: TensorFlow is not a dependency of glamor_fast, so it gets a virtual environment of its
own, inside the repository root (``.venv-tf/`` is git-ignored; torch is not needed there):

    python3 -m venv .venv-tf
    .venv-tf/bin/pip install tensorflow-cpu==2.21.0 && .venv-tf/bin/pip install --no-deps tf-keras==2.21.0

Run, from the repository root:

    .venv-tf/bin/python -m bench.tf_peer [--threads 2] [--batch 32] [--steps 8] [--rounds 3] [--json PATH]

Timing: each variant is warmed up twice (tracing for tf.function), then ``--rounds`` rounds each
run every variant for ``--steps`` steps in turn (interleaved, so a change of machine load hits
every variant alike); a variant's figure is the median of its per-round images/s, with the
slowest and fastest round beside it. TensorFlow gets ``--threads`` intra-op threads and one
inter-op thread. Compare only with ``python -m bench.model`` run on the same machine in the same
minutes (bench/RESULTS.md shows how the two were interleaved).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time

PROG = "python -m bench.tf_peer"
FACE_SIDE, CONTEXT_SIDE, CLASSES = 96, 112, 7
FILTERS = (32, 64, 128, 256, 256)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=2, help="TensorFlow intra-op threads (default %(default)s)")
    p.add_argument("--batch", type=int, default=32, help="images per step (default %(default)s)")
    p.add_argument("--steps", type=int, default=8, help="timed steps per variant and round (default %(default)s)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default %(default)s)")
    p.add_argument("--json", default=None, metavar="PATH", help="also write the results here")
    args = p.parse_args(argv)
    for name in ("threads", "batch", "steps", "rounds"):
        if getattr(args, name) < 1:
            p.exit(1, f"{PROG}: --{name} must be >= 1, got {getattr(args, name)}\n")
    return args


def import_tensorflow():
    """TensorFlow with Keras 2 layers (tf-keras), as the authors used; a one-line exit without it."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow as tf
        _ = tf.keras.layers.Dense  # resolves tf.keras: needs tf-keras under TF_USE_LEGACY_KERAS=1
    except ImportError as exc:
        raise SystemExit(f"{PROG}: TensorFlow with tf-keras is not importable from {sys.executable} ({exc}); "
                         "set up its own venv as this module's docstring says")
    return tf


def build_model(tf):
    """The authors' GLAMOR-Net (see the module docstring) as a Keras model called (face, context)."""
    layers = tf.keras.layers

    class ConvEncoder(tf.keras.layers.Layer):
        def __init__(self, **kw):
            super().__init__(**kw)
            self.convs = [layers.Conv2D(n, 3, padding="same") for n in FILTERS]
            self.norms = [layers.BatchNormalization() for _ in FILTERS]
            self.pool = layers.MaxPool2D(2)

        def call(self, x, training=False):
            for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
                x = tf.nn.relu(norm(conv(x), training=training))
                if i < len(FILTERS) - 1:
                    x = self.pool(x)
            return x

    class GLAMORNet(tf.keras.Model):
        def __init__(self):
            super().__init__()
            self.face_encoder, self.context_encoder = ConvEncoder(), ConvEncoder()
            self.score_hidden = layers.Dense(128, activation="relu")
            self.score_norm = layers.BatchNormalization()
            self.score_out = layers.Dense(1)
            self.face_gate = [layers.Dense(128, activation="relu"), layers.Dense(1)]
            self.context_gate = [layers.Dense(128, activation="relu"), layers.Dense(1)]
            self.head_hidden = layers.Dense(128, activation="relu")
            self.head_dropout = layers.Dropout(0.5)
            self.head_out = layers.Dense(CLASSES, activation="softmax")

        def attend(self, v_f, cells, training):
            """GLA: v_f (B, C), cells (B, N, C) -> v_c (B, C)."""
            n = tf.shape(cells)[1]
            joined = tf.concat([tf.tile(v_f[:, None, :], [1, n, 1]), cells], axis=-1)     # (B, N, 2C)
            hidden = tf.nn.relu(self.score_norm(self.score_hidden(joined), training=training))
            attn = tf.nn.softmax(self.score_out(hidden), axis=1)                           # (B, N, 1)
            return tf.reduce_sum(attn * cells, axis=1)

        def call(self, face, context, training=False):
            v_f = tf.reduce_mean(self.face_encoder(face, training=training), axis=(1, 2))  # (B, C)
            ctx = self.context_encoder(context, training=training)                         # (B, h, w, C)
            cells = tf.reshape(ctx, (tf.shape(ctx)[0], -1, ctx.shape[-1]))                # (B, N, C)
            v_c = self.attend(v_f, cells, training)
            gates = tf.concat([self.face_gate[1](self.face_gate[0](v_f)),
                               self.context_gate[1](self.context_gate[0](v_c))], axis=-1)
            w = tf.nn.softmax(gates, axis=-1)                                              # (B, 2)
            fused = tf.concat([v_f * w[:, :1], v_c * w[:, 1:]], axis=-1)
            return self.head_out(self.head_dropout(self.head_hidden(fused), training=training))

    return GLAMORNet()


def make_variants(tf, batch: int) -> dict:
    """name -> zero-argument callable running one step (returns a tensor to wait on)."""
    model = build_model(tf)
    face = tf.random.uniform((batch, FACE_SIDE, FACE_SIDE, 3), seed=0)
    context = tf.random.uniform((batch, CONTEXT_SIDE, CONTEXT_SIDE, 3), seed=1)
    labels = tf.random.uniform((batch,), 0, CLASSES, tf.int32, seed=2)
    optimizer = tf.keras.optimizers.SGD(5e-4, momentum=0.9)
    loss_fn = tf.keras.losses.SparseCategoricalCrossentropy()

    def train_step():
        with tf.GradientTape() as tape:
            loss = loss_fn(labels, model(face, context, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    def infer():
        return model(face, context, training=False)

    return {"train eager": train_step, "train tf.function": tf.function(train_step),
            "infer eager": infer, "infer tf.function": tf.function(infer)}


def time_variants(variants: dict, batch: int, steps: int, rounds: int) -> dict:
    """Interleaved rounds: name -> {"images_per_s": median, "min", "max", "rounds": [...]}."""
    for fn in variants.values():
        fn().numpy()
        fn().numpy()
    per_round = {name: [] for name in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            t0 = time.perf_counter()
            for _ in range(steps):
                out = fn()
            out.numpy()  # wait for the last step
            per_round[name].append(batch * steps / (time.perf_counter() - t0))
    return {name: {"images_per_s": statistics.median(v), "min": min(v), "max": max(v), "rounds": v}
            for name, v in per_round.items()}


def machine(threads: int, tf) -> dict:
    """Machine, versions, commit and load, without torch (it is not in the TensorFlow venv)."""
    model = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    try:
        here = os.path.dirname(os.path.abspath(__file__))
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                                timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
            "cpu_model": model, "cpu_count": os.cpu_count(), "threads": threads,
            "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
            "python": platform.python_version(), "tensorflow": tf.__version__, "git_commit": commit}


def main(argv=None) -> int:
    args = parse_args(argv)
    tf = import_tensorflow()
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    info = machine(args.threads, tf)
    print(f"{info['cpu_model']}, {args.threads} threads, load {info['load_average']}, TensorFlow {tf.__version__}; "
          f"batch {args.batch}, {args.rounds} interleaved rounds of {args.steps} steps")
    results = time_variants(make_variants(tf, args.batch), args.batch, args.steps, args.rounds)
    for name, r in results.items():
        print(f"  {name:<18} {r['images_per_s']:7.1f} images/s  (rounds {r['min']:.1f}-{r['max']:.1f})", flush=True)
    if args.json:
        tmp = f"{args.json}.tmp"
        with open(tmp, "w") as f:
            json.dump({"machine": info, "batch": args.batch, "steps": args.steps, "rounds": args.rounds,
                       "face": FACE_SIDE, "context": CONTEXT_SIDE, "variants": results}, f, indent=1)
        os.replace(tmp, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""spark-tensorflow-distributor code, unchanged but for one import, on sparktf's launcher.

Users of the unmaintained ``spark-tensorflow-distributor`` package have training code
like the ``train()`` below (its README's example, with synthetic MNIST-shaped data
instead of a download). Moving to sparktf is one changed import::

    - from spark_tensorflow_distributor import MirroredStrategyRunner
    + from sparktf.distributed import MirroredStrategyRunner

``MirroredStrategyRunner(num_slots=2, use_gpu=False).run(train)`` runs ``train`` in two
TensorFlow worker processes, one per task of a Spark barrier stage, inside a
MultiWorkerMirroredStrategy scope (so ``model`` is replicated and gradients are
all-reduced), streams each worker's output prefixed with its rank, and returns the
chief's (worker 0's) return value, as the original does. ``runner.last_result`` holds
sparktf's fuller account: history, timings per worker, attempts.

Run it (``local[2]`` gives the two task slots the two workers need):

    python examples/mirrored_strategy_runner.py                # 3 epochs of 20 steps
    python examples/mirrored_strategy_runner.py --smoke-test   # 2 epochs of 3 steps
"""

from __future__ import annotations

from typing import Any

from _common import parse_args, workdir

import sparktf
from sparktf.distributed import MirroredStrategyRunner


def train(epochs: int = 3, steps_per_epoch: int = 5) -> dict[str, Any]:
    """The seed README's training function; it runs on every worker.

    Everything it needs is imported inside: it is pickled to the workers. (Its inner
    functions carry no annotations: AutoGraph cannot resolve postponed ones.)
    """
    import numpy as np
    import tensorflow as tf

    BUFFER_SIZE = 10000
    BATCH_SIZE = 64

    def make_datasets_unbatched():
        # Scaling MNIST data from (0, 255] to (0., 1.]
        def scale(image, label):
            image = tf.cast(image, tf.float32)
            image /= 255
            return image, label

        # Stands in for tfds.load("mnist"): random 28x28 images whose label is their
        # brightest row band, so that there is something to learn and nothing to download.
        rng = np.random.default_rng(0)
        images = rng.integers(0, 128, size=(1024, 28, 28, 1), dtype=np.uint8)
        labels = rng.integers(0, 10, size=(1024,), dtype=np.int64)
        for i, label in enumerate(labels):
            images[i, 2 * label : 2 * label + 3] += 127
        return tf.data.Dataset.from_tensor_slices((images, labels)).map(scale).cache().shuffle(BUFFER_SIZE)

    def build_and_compile_cnn_model():
        model = tf.keras.Sequential(
            [
                tf.keras.layers.Conv2D(8, 3, activation="relu", input_shape=(28, 28, 1)),
                tf.keras.layers.MaxPooling2D(),
                tf.keras.layers.Flatten(),
                tf.keras.layers.Dense(32, activation="relu"),
                tf.keras.layers.Dense(10, activation="softmax"),
            ]
        )
        model.compile(
            loss=tf.keras.losses.sparse_categorical_crossentropy,
            optimizer=tf.keras.optimizers.Adam(learning_rate=0.01),
            metrics=["accuracy"],
        )
        return model

    GLOBAL_BATCH_SIZE = BATCH_SIZE * 2  # 2 workers
    train_datasets = make_datasets_unbatched().batch(GLOBAL_BATCH_SIZE).repeat()
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    train_datasets = train_datasets.with_options(options)
    multi_worker_model = build_and_compile_cnn_model()
    history = multi_worker_model.fit(x=train_datasets, epochs=epochs, steps_per_epoch=steps_per_epoch, verbose=2)
    # The chief's return value comes back to the driver: keep it small and picklable.
    return {
        "replicas": tf.distribute.get_strategy().num_replicas_in_sync,
        "loss": [round(v, 4) for v in history.history["loss"]],
        "accuracy": [round(v, 4) for v in history.history["accuracy"]],
    }


def main() -> None:
    args = parse_args(__doc__)
    epochs, steps = (2, 3) if args.smoke_test else (3, 20)
    with workdir(args.workdir, "mirrored") as work:
        # Two task slots: one per TensorFlow worker.
        spark = sparktf.get_spark(master="local[2]", log_level="ERROR", ui=False)
        runner = MirroredStrategyRunner(num_slots=2, use_gpu=False, run_dir=str(work / "run"))
        result = runner.run(train, epochs=epochs, steps_per_epoch=steps)
        print(f"MirroredStrategyRunner returned: {result}")
        account = runner.last_result
        assert account is not None
        print(
            f"{account.num_workers} workers, {account.attempts} attempt(s), {account.seconds:.1f} s; "
            f"worker seconds: {[round(w.seconds, 1) for w in account.workers]}"
        )
        spark.stop()


if __name__ == "__main__":
    main()

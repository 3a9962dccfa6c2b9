"""What the example scripts share: their two flags, their work directory, and a tiny recommender.

Each example shows one feature of sparktf. The scaffolding around it (``--smoke-test``
and ``--workdir``, a directory that disappears when none was asked for, and a small
trained model to batch-score or serve) is the same every time, so it lives here
rather than being copied into every script. Only public sparktf APIs are used.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def parse_args(doc: str | None, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The flags every example takes; ``doc`` (the script's docstring) is its ``--help``."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--smoke-test",
        action="store_true",
        help="tiny sizes so that the script runs in seconds (what the tests use)",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="where the outputs go and stay (default: a temporary directory, removed at the end)",
    )
    return parser.parse_args(argv)


@contextlib.contextmanager
def workdir(path: Path | None, name: str) -> Iterator[Path]:
    """``path`` (created if needed and kept), or a temporary directory removed on exit."""
    if path is not None:
        path.mkdir(parents=True, exist_ok=True)
        yield path.resolve()
        return
    tmp = Path(tempfile.mkdtemp(prefix=f"sparktf-example-{name}-"))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@dataclass(frozen=True)
class TinyRecommender:
    """A trained, exported sparktf model and the users it was trained on.

    Attributes:
        export_path: ``<base>/1``, the numbered version directory (TF Serving's layout).
        histories: each user's items, oldest first; the model learnt that item
            ``i<n>`` is usually followed by ``i<n+1>``.
        final_loss: the last epoch's training loss.
    """

    export_path: str
    histories: dict[str, list[str]]
    final_loss: float


def tiny_recommender(base_dir: Path, *, smoke_test: bool, seed: int = 0) -> TinyRecommender:
    """Train sparktf's sequential next-item model on synthetic sessions and export it.

    The sessions follow a simple rule (after ``i<n>`` usually comes ``i<n+1>``), so the
    model's top recommendation after a history ending in ``i5`` is typically ``i6``: an
    easy thing to check by eye in the examples' output.

    Args:
        base_dir: the model's base directory; the export goes to ``<base_dir>/1``.
        smoke_test: 30 items and 20 users instead of 200 items and 500 users.
        seed: seeds the sessions and the model.
    """
    import numpy as np

    import sparktf  # noqa: F401  - sets TF_USE_LEGACY_KERAS before TensorFlow loads
    from sparktf.models import Catalog, build_model, export_model
    from sparktf.models.base import ModelParams
    from sparktf.tfenv import import_tensorflow

    tf = import_tensorflow()
    num_items, num_users, length, epochs, batch = (30, 20, 8, 10, 32) if smoke_test else (200, 500, 20, 10, 256)
    items = [f"i{n}" for n in range(num_items)]
    rng = np.random.default_rng(seed)
    histories: dict[str, list[str]] = {}
    for u in range(num_users):
        n = int(rng.integers(num_items))
        seq = [n]
        for _ in range(length - 1):
            n = (n + 1) % num_items if rng.random() < 0.8 else int(rng.integers(num_items))
            seq.append(n)
        histories[f"u{u}"] = [items[n] for n in seq]

    # One training example per step: the items before it (at most 10) predict it.
    users, contexts, targets = [], [], []
    for user, seq in histories.items():
        for t in range(1, len(seq)):
            users.append(user)
            contexts.append(seq[max(0, t - 10) : t])
            targets.append(seq[t])
    data = tf.data.Dataset.from_tensor_slices(
        {"user_id": tf.constant(users), "history": tf.ragged.constant(contexts), "target": tf.constant(targets)}
    )

    catalog = Catalog.from_arrays(items, user_ids=sorted(histories))
    params = ModelParams(kind="sequential", embedding_dim=16, max_history=10, dropout=0.0, seed=seed)
    model: Any = build_model(catalog, params)
    model.compile(optimizer=tf.keras.optimizers.Adam(0.05))
    history = model.fit(data.shuffle(len(targets), seed=seed).batch(batch), epochs=epochs, verbose=0)
    export_path = export_model(model, str(base_dir), version=1, k=5)
    return TinyRecommender(export_path, histories, float(history.history["loss"][-1]))

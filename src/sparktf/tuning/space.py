"""The search space of ``sparktf tune``: which ``[train]`` settings a trial draws, per model kind.

:func:`suggest` is a pure function of an Optuna trial: it returns ``train.*`` overrides
whose names are the config's field names, so a trial's ``params`` are also the lines of
the ``[train]`` table that ``sparktf run --config`` reads back.

Why these ranges (both data sets the platform is tried on have 1.5-1.7k items and
~100k-200k training examples; every default of ``[train]`` lies inside its range, so the
search can only confirm or improve on them, but SASRec's batch size, see below):

* ``learning_rate``, log-uniform in [3e-4, 1e-2]: Adam with a full-catalogue softmax. The
  default 5e-3 sits in the upper half; SASRec's paper uses 1e-3. A trial has at most
  ``tune.epochs`` epochs, so rates much below 3e-4 cannot converge in it, and rates above
  1e-2 make Adam's first steps on freshly initialised embeddings too large. Log-uniform
  because a learning rate acts multiplicatively.
* ``embedding_dim`` in {32, 64, 128}: a catalogue of under 2k items needs no more than 128
  dimensions (SASRec uses 50 on MovieLens-1M's 3.4k items); each step halves or doubles
  the embedding tables, the bulk of the parameters. Powers of two keep every head count
  below a divisor.
* ``dropout`` in [0.1, 0.6]: SASRec uses 0.2 on MovieLens-1M and 0.5 on sparser data sets;
  the default is 0.3.
* ``lr_decay`` in [0.9, 1.0]: the per-epoch factor of the learning rate. The default 0.9
  suits the GRU's long epochs (every example, 190 steps on ML-100K at batch 512); SASRec's
  epochs are short (the windows, 19 steps at batch 128), and at 0.9 its learning rate was
  down to 4 % by epoch 30, before it had learnt (validation NDCG@10 0.061 at decay 0.9,
  0.087 at 1.0 and the same settings otherwise, in-process on ML-100K).
* ``batch_size``: for the GRU and the two towers in {128, 256, 512}: 512 is the default
  (190 steps per ML-100K epoch); smaller batches give more updates per epoch and slower
  epochs, larger ones would leave fewer than 100 steps per epoch. For ``sasrec`` in {64,
  128, 256}: a row is a window of ``max_history`` positions, each one a training signal
  (SASRec uses 128), and ML-100K has 2,412 windows at ``max_history`` 50.
* ``sasrec``: ``attention_blocks`` in {1, 2, 3}, ``attention_heads`` in {1, 2}: SASRec's
  best MovieLens-1M setting is 2 blocks and 1 head, and its paper reports no gain from
  more heads; each block adds a full self-attention pass to every step.
* ``sequential``: ``rnn`` in {gru, lstm}.
* ``two_tower``: ``temperature``, log-uniform in [0.02, 0.5]: the in-batch softmax's
  temperature (default 0.05); small values sharpen the softmax on the hardest in-batch
  negatives, large ones flatten it towards a uniform loss.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["KINDS", "Param", "describe", "search_space", "suggest"]

KINDS: tuple[str, ...] = ("sequential", "sasrec", "two_tower")


@dataclass(frozen=True)
class Param:
    """One searched ``[train]`` field.

    Attributes:
        name: the ``[train]`` field (and the Optuna parameter name).
        kind: ``log`` (log-uniform float), ``float`` (uniform float) or ``choice``.
        low, high: the float range (``log`` and ``float``).
        choices: the values of a ``choice``.
    """

    name: str
    kind: Literal["log", "float", "choice"]
    low: float = 0.0
    high: float = 0.0
    choices: tuple[Any, ...] = ()

    def describe(self) -> str:
        if self.kind == "choice":
            return "one of " + ", ".join(str(c) for c in self.choices)
        return f"{'log-uniform' if self.kind == 'log' else 'uniform'} in [{self.low:g}, {self.high:g}]"


_COMMON: tuple[Param, ...] = (
    Param("learning_rate", "log", 3e-4, 1e-2),
    Param("lr_decay", "float", 0.9, 1.0),
    Param("embedding_dim", "choice", choices=(32, 64, 128)),
    Param("dropout", "float", 0.1, 0.6),
)
_EXAMPLE_BATCHES = Param("batch_size", "choice", choices=(128, 256, 512))

_PER_KIND: Mapping[str, tuple[Param, ...]] = {
    "sequential": (_EXAMPLE_BATCHES, Param("rnn", "choice", choices=("gru", "lstm"))),
    # Every head count divides every embedding_dim above (config.py checks it too).
    "sasrec": (
        Param("batch_size", "choice", choices=(64, 128, 256)),
        Param("attention_blocks", "choice", choices=(1, 2, 3)),
        Param("attention_heads", "choice", choices=(1, 2)),
    ),
    "two_tower": (_EXAMPLE_BATCHES, Param("temperature", "log", 0.02, 0.5)),
}


def search_space(kind: str) -> tuple[Param, ...]:
    """The searched fields of model ``kind``.

    Raises:
        ValueError: an unknown kind (the config allows only :data:`KINDS`).
    """
    if kind not in _PER_KIND:
        raise ValueError(f"no search space for model kind {kind!r}; kinds: {', '.join(KINDS)}")
    return _COMMON + _PER_KIND[kind]


def suggest(trial: Any, kind: str) -> dict[str, Any]:
    """Draw one trial's ``train.*`` overrides from the space of ``kind``.

    Args:
        trial: an ``optuna.Trial`` (anything with ``suggest_float`` and ``suggest_categorical``).
        kind: the model kind searched.
    """
    params: dict[str, Any] = {}
    for p in search_space(kind):
        if p.kind == "choice":
            params[p.name] = trial.suggest_categorical(p.name, list(p.choices))
        else:
            params[p.name] = float(trial.suggest_float(p.name, p.low, p.high, log=p.kind == "log"))
    return params


def describe(kind: str) -> dict[str, str]:
    """``{"space.<field>": "log-uniform in [0.0003, 0.01]", ...}``: the space, for MLflow params."""
    return {f"space.{p.name}": p.describe() for p in search_space(kind)}

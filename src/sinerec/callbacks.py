"""Training callbacks: what the trainer tells the outside world, and the one thing it asks (should it stop).

A callback subclasses :class:`Callback` and overrides the hooks it needs; the trainer
(``sinerec.train.Trainer``) calls them on rank 0 only, in this order:

- ``on_fit_start(config, run_dir)``: before the first epoch (also when resuming; ``run_dir`` may be None
  for a trainer without a run directory);
- ``on_epoch_end(epoch, record)`` after each epoch, with its 1-based number and its record, the line
  ``log.jsonl`` gets: ``loss``, ``likelihood_loss``, ``examples``, ``seconds``, ``examples_per_second`` and,
  after a validation run, ``eval_seconds`` and ``valid`` (metric name such as ``"NDCG@10"`` -> value);
- ``should_stop()`` right after ``on_epoch_end``: True ends training as early stopping does (the best
  weights are restored and evaluated, the run directory is complete); under several processes rank 0's
  answer is every rank's;
- ``on_fit_end(result)`` with the :class:`~sinerec.train.TrainResult` (best weights' validation and test
  metrics, ``best_epoch``).

The trainer knows no tracking library: the adapters (TensorBoard, MLflow) are in ``sinerec.tracking``, the
Optuna pruning callback in ``sinerec.tune``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sinerec import distributed

if TYPE_CHECKING:
    from sinerec.config import Config
    from sinerec.distributed import DistContext
    from sinerec.train import TrainResult

__all__ = ["Callback", "CallbackList"]


class Callback:
    """A training callback: every hook does nothing unless overridden."""

    def on_fit_start(self, config: Config, run_dir: Path | None) -> None:
        """Training is about to start (or resume) for ``config`` in ``run_dir``."""

    def on_epoch_end(self, epoch: int, record: dict[str, Any]) -> None:
        """Epoch ``epoch`` (1-based) has ended with ``record`` (see the module docstring)."""

    def should_stop(self) -> bool:
        """True to end training after this epoch."""
        return False

    def on_fit_end(self, result: TrainResult) -> None:
        """Training has ended; ``result`` holds the best weights' metrics."""


class CallbackList:
    """The trainer's callbacks, called in order; on ranks other than 0 it holds none (see the module
    docstring), but :meth:`should_stop` still takes part in the broadcast of rank 0's decision."""

    def __init__(self, callbacks: Iterable[Callback], dist: DistContext) -> None:
        self.dist = dist
        self.callbacks = list(callbacks) if dist.is_main else []

    def on_fit_start(self, config: Config, run_dir: Path | None) -> None:
        for callback in self.callbacks:
            callback.on_fit_start(config, run_dir)

    def on_epoch_end(self, epoch: int, record: dict[str, Any]) -> None:
        for callback in self.callbacks:
            callback.on_epoch_end(epoch, record)

    def should_stop(self) -> bool:
        """Whether any callback asks to stop (every callback is asked), the same answer on every rank."""
        stop = any([callback.should_stop() for callback in self.callbacks])
        return bool(distributed.broadcast_object(stop, self.dist))

    def on_fit_end(self, result: TrainResult) -> None:
        for callback in self.callbacks:
            callback.on_fit_end(result)

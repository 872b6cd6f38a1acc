"""Re-score a trained run under another protocol or evaluation setting, with the same weights.

``sinerec evaluate`` and ``benchmarks/rescore_history.py`` call :func:`rescore`: the run's saved configuration
with ``protocol.*`` / ``eval.*`` overrides (anything else would need retraining and is refused), the split
remade from the run's own sequences, and the offline evaluator (``sinerec.evaluate.evaluate``).

Another protocol than the one a run was trained under may evaluate on users whose held-out items the model
trained on (``loo`` trains on every user's prefix); the numbers are then optimistic. That is for the caller to
judge; the returned document names both protocols.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sinerec.config import load_config, parse_override
from sinerec.data.splits import make_split
from sinerec.errors import ConfigError
from sinerec.evaluate import evaluate

if TYPE_CHECKING:
    from sinerec.runs import LoadedRun

__all__ = ["PARTS", "RESCORABLE", "rescore"]

#: the sections a re-scoring may change
RESCORABLE = ("protocol", "eval")
#: the evaluation sets of a split
PARTS = ("valid", "test")


def rescore(run: LoadedRun, overrides: Sequence[str] = (), parts: Sequence[str] = PARTS,
            device: str = "cpu") -> dict[str, Any]:
    """Metrics of ``run`` (fractions) on ``parts`` of the split that ``overrides`` define.

    Args:
        run: a loaded run (``sinerec.runs.load_run``).
        overrides: ``key=value`` items under ``protocol.`` or ``eval.``, e.g. ``protocol.exclude_history=false``.
        parts: "valid" and/or "test".
    Returns:
        ``{"model", "run", "trained_protocol", "protocol" (the split's summary), "exclude_history", "valid"?,
        "test"?}``, each part a metric -> mean dict.
    Raises:
        ConfigError naming an override outside ``protocol``/``eval``, a bad value, or an unknown part.
    """
    for text in overrides:
        path, _ = parse_override(text)
        if path[0] not in RESCORABLE or len(path) < 2:
            raise ConfigError(f"evaluate: {text!r}: only {' and '.join(s + '.*' for s in RESCORABLE)} settings "
                              "can change for a trained run (the rest needs retraining)")
    for part in parts:
        if part not in PARTS:
            raise ConfigError(f"evaluate: unknown part {part!r}; choose from {', '.join(PARTS)}")
    config = load_config(run.config.to_dict(), overrides=list(overrides))
    split = make_split(run.data, config.protocol)
    exclude = config.protocol.excludes_history
    doc: dict[str, Any] = {"model": config.model, "run": str(run.run_dir),
                           "trained_protocol": run.config.protocol.name, "protocol": split.summary(),
                           "exclude_history": exclude}
    for part in parts:
        queries = split.valid if part == "valid" else split.test
        result = evaluate(run.model, run.data, queries, config.data.max_len, exclude, config.eval, device=device)
        doc[part] = result.means
    return doc

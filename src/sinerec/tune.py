"""Hyperparameter search on Optuna: ``sinerec tune`` (extra ``tune``: ``pip install "sinerec[tune]"``).

The search space is the ``[tune]`` section of the configuration file: one entry per setting, keyed by its
dotted name, e.g.::

    [tune]
    "model_params.num_concepts" = {type = "int", low = 10, high = 100}
    "train.lr" = {type = "float", low = 1e-4, high = 1e-2, log = true}
    "model_params.num_interests" = {type = "categorical", choices = [2, 4, 8]}

(``int`` and ``float`` take ``low``, ``high`` and optionally ``log`` or ``step``; ``categorical`` takes
``choices``.) The rest of the file, plus ``--set`` overrides, is every trial's base. Each trial is one run of
the training job in ``OUT/trials/trial-NNNN`` (a complete run directory); its value is the best weights'
validation ``train.monitor`` (default NDCG@10), maximised. Pruning: after each validation run the trial
reports the metric (epoch = step) through a training callback and Optuna's MedianPruner may stop it, as
early stopping would. The study is stored in ``OUT/study.db`` (SQLite): running the same command again
resumes it up to ``trials`` finished trials (complete or pruned); a trial interrupted by a crash is marked
failed and its settings tried again. The best trial is written to ``OUT/best.json`` (value, settings, run
directory) and ``OUT/best.toml`` (the whole configuration, for ``sinerec train --config OUT/best.toml``).
One process per study.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sinerec import storage
from sinerec.callbacks import Callback
from sinerec.config import merge
from sinerec.errors import ConfigError, SinerecError

__all__ = ["BEST_JSON", "BEST_TOML", "STUDY_DB", "TRIALS", "Param", "PruningCallback", "TuneResult", "read_space",
           "to_toml", "tune"]

STUDY_DB = "study.db"
BEST_JSON = "best.json"
BEST_TOML = "best.toml"
TRIALS = "trials"
STUDY_NAME = "sinerec"


@dataclass(frozen=True)
class Param:
    """One dimension of the search space: the setting ``key`` drawn as ``type`` (int, float, categorical)."""

    key: str
    type: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: Any) -> Any:
        """This dimension's value for an Optuna trial."""
        if self.type == "categorical":
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.type == "int":
            return trial.suggest_int(self.key, int(self.low or 0), int(self.high or 0), step=int(self.step or 1),
                                     log=self.log)
        return trial.suggest_float(self.key, float(self.low or 0), float(self.high or 0), step=self.step,
                                   log=self.log)

    def first(self) -> Any:
        """A value of the space (its low end or first choice), to check the setting before any trial."""
        if self.type == "categorical":
            return self.choices[0]
        return int(self.low or 0) if self.type == "int" else float(self.low or 0)


def read_space(section: Any) -> dict[str, Param]:
    """The ``[tune]`` section as search-space dimensions; ConfigError names ``tune.KEY`` and the bad value."""
    if not isinstance(section, dict) or not section:
        raise ConfigError("tune: expected a [tune] section with at least one setting to search, e.g. "
                          '"train.lr" = {type = "float", low = 1e-4, high = 1e-2, log = true}')
    space = {}
    for key, spec in section.items():
        where = f"tune.{key}"
        if not isinstance(spec, dict):
            raise ConfigError(f"{where}: expected a table such as {{type = \"int\", low = 1, high = 8}}, got {spec!r}")
        kind = spec.get("type")
        allowed = {"type", "choices"} if kind == "categorical" else {"type", "low", "high", "log", "step"}
        if kind not in ("int", "float", "categorical"):
            raise ConfigError(f"{where}.type: expected 'int', 'float' or 'categorical', got {kind!r}")
        unknown = set(spec) - allowed
        if unknown:
            raise ConfigError(f"{where}: unknown field(s) {sorted(unknown)} for type {kind!r}")
        if kind == "categorical":
            choices = spec.get("choices")
            if not isinstance(choices, list) or not choices:
                raise ConfigError(f"{where}.choices: expected a non-empty list, got {choices!r}")
            space[key] = Param(key, kind, choices=tuple(choices))
            continue
        number = int if kind == "int" else (int, float)
        for field in ("low", "high"):
            if not isinstance(spec.get(field), number) or isinstance(spec.get(field), bool):
                raise ConfigError(f"{where}.{field}: expected {'an integer' if kind == 'int' else 'a number'}, "
                                  f"got {spec.get(field)!r}")
        low, high, log, step = spec["low"], spec["high"], spec.get("log", False), spec.get("step")
        if not low < high:
            raise ConfigError(f"{where}: low ({low!r}) must be below high ({high!r})")
        if not isinstance(log, bool):
            raise ConfigError(f"{where}.log: expected true or false, got {log!r}")
        if log and low <= 0:
            raise ConfigError(f"{where}: log = true needs low > 0, got {low!r}")
        if step is not None and (log or not isinstance(step, number) or step <= 0):
            raise ConfigError(f"{where}.step: expected a positive number (and no log), got {step!r}")
        space[key] = Param(key, kind, low, high, log, step)
    return space


class PruningCallback(Callback):
    """Reports the validation ``monitor`` of each epoch to an Optuna trial and stops the fit when the pruner
    says so (the run directory is then complete, with the weights of its best epoch so far)."""

    def __init__(self, trial: Any, monitor: str) -> None:
        self.trial = trial
        self.monitor = monitor
        self.pruned_at: int | None = None

    def on_epoch_end(self, epoch: int, record: dict[str, Any]) -> None:
        if "valid" in record:
            self.trial.report(record["valid"][self.monitor], epoch)
            if self.trial.should_prune():
                self.pruned_at = epoch

    def should_stop(self) -> bool:
        return self.pruned_at is not None


@dataclass
class TuneResult:
    """A finished search: the Optuna study and the content of ``best.json``."""

    study: Any
    best: dict[str, Any]
    out: Path


def _optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise SinerecError('sinerec tune needs optuna: pip install "sinerec[tune]"') from None
    return optuna


def trial_config(base: dict[str, Any], values: dict[str, Any]) -> Any:
    """The configuration of a trial: the base tree with each ``key: value`` of the space set, over the model's
    shipped settings as ``sinerec train`` resolves them (``sinerec.settings``)."""
    from sinerec.settings import resolve_config

    tree = copy.deepcopy(base)
    for key, value in values.items():
        merge(tree, key.split("."), value)
    return resolve_config(values=tree)


def tune(base: dict[str, Any], space: dict[str, Param], out: str | Path, trials: int, *, prune: bool = True,
         seed: int | None = None, log: Callable[[str], None] = print,
         callbacks: Callable[[], Iterable[Callback]] = list) -> TuneResult:
    """Search ``space`` around the configuration tree ``base`` until the study in ``out`` has ``trials``
    finished (complete or pruned) trials, then write ``best.json`` and ``best.toml``.

    Args:
        base: the configuration tree every trial starts from (a config file's content without ``[tune]``).
        space: the search space (:func:`read_space`).
        out: the study's folder (created); a study already there is resumed, if made for the same base and
            space (else SinerecError).
        trials: finished trials wanted in the study; already as many: only the best files are rewritten.
        prune: stop unpromising trials (MedianPruner on the validation monitor per epoch).
        seed: the sampler's seed (default ``train.seed``), offset by the trials already in the study.
        log: receives one line per trial.
        callbacks: makes each trial's extra training callbacks (e.g. tracking adapters).
    """
    optuna = _optuna()
    from sinerec.job import train_run
    from sinerec.pipeline import prepare

    if trials < 1:
        raise ConfigError(f"tune: --trials must be >= 1, got {trials}")
    config = trial_config(base, {})
    for param in space.values():  # a misspelt key or a value the setting refuses fails now, not in trial 3
        try:
            trial_config(base, {param.key: param.first()})
        except ConfigError as exc:
            raise ConfigError(f"tune.{param.key}: {exc}") from None
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    signature = json.dumps({"base": config.to_dict(), "space": {k: vars(p) for k, p in space.items()}},
                           sort_keys=True, default=list)
    storage_url = f"sqlite:///{(out / STUDY_DB).resolve()}"
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    study = optuna.load_study(study_name=STUDY_NAME, storage=storage_url) if (out / STUDY_DB).exists() else None
    if study is not None and study.user_attrs.get("signature") != signature:
        raise SinerecError(f"{out / STUDY_DB}: this study was made with another configuration or search space; "
                           "choose another --out")
    done = len(study.get_trials(deepcopy=False, states=finished)) if study is not None else 0
    n_seen = len(study.get_trials(deepcopy=False)) if study is not None else 0
    sampler = optuna.samplers.TPESampler(seed=(config.train.seed if seed is None else seed) + n_seen)
    pruner = optuna.pruners.MedianPruner() if prune else optuna.pruners.NopPruner()
    study = optuna.create_study(study_name=STUDY_NAME, storage=storage_url, direction="maximize",
                                sampler=sampler, pruner=pruner, load_if_exists=True)
    study.set_user_attr("signature", signature)
    for stale in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study.tell(stale.number, state=optuna.trial.TrialState.FAIL)
        study.enqueue_trial(stale.params)
        log(f"trial {stale.number} was interrupted: failed, its settings are tried again")

    shares_data = not any(key.split(".")[0] in ("data", "protocol") for key in space)
    prepared = prepare(config) if shares_data and done < trials else None
    monitor = config.train.monitor

    def objective(trial: Any) -> float:
        values = {key: param.suggest(trial) for key, param in space.items()}
        run_dir = out / TRIALS / f"trial-{trial.number:04d}"
        trial.set_user_attr("run_dir", str(run_dir))
        pruning = PruningCallback(trial, monitor)
        run = train_run(trial_config(base, values), run_dir, prepared=prepared, log=lambda line: None,
                        callbacks=[pruning, *callbacks()])
        value = float(run.result.valid.means[monitor])
        settings = ", ".join(f"{k}={v!r}" for k, v in values.items())
        if pruning.pruned_at is not None:
            log(f"trial {trial.number}: pruned after epoch {pruning.pruned_at} (valid {monitor} {value:.4f}; "
                f"{settings})")
            raise optuna.TrialPruned()
        log(f"trial {trial.number}: valid {monitor} {value:.4f} ({settings})")
        return value

    if done < trials:
        study.optimize(objective, n_trials=trials - done, catch=(SinerecError,))
    else:
        log(f"{out / STUDY_DB} already has {done} finished trials (--trials {trials}): nothing to run")
    best = write_best(study, base, out, monitor)
    return TuneResult(study, best, out)


def write_best(study: Any, base: dict[str, Any], out: Path, monitor: str) -> dict[str, Any]:
    """``best.json`` and ``best.toml`` for the study's best complete trial; returns best.json's content."""
    import optuna

    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        raise SinerecError(f"{out / STUDY_DB}: no trial has completed yet (all pruned or failed); nothing is best")
    trial = max(complete, key=lambda t: t.value)
    counts = {state.name.lower(): len(study.get_trials(deepcopy=False, states=(state,)))
              for state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED,
                            optuna.trial.TrialState.FAIL)}
    best = {"metric": f"valid {monitor}", "value": trial.value, "trial": trial.number,
            "run_dir": trial.user_attrs.get("run_dir"), "params": trial.params, "trials": counts,
            "study": str(out / STUDY_DB)}
    storage.write_json(out / BEST_JSON, best)
    config = trial_config(base, trial.params)
    header = (f"# sinerec tune: best of {counts['complete']} complete trials, trial {trial.number}, valid {monitor} "
              f"{trial.value:.6f}\n# train with: sinerec train --config {out / BEST_TOML}\n")
    storage.atomic_write_text(out / BEST_TOML, header + to_toml(config.to_dict()))
    return best


def to_toml(tree: dict[str, Any]) -> str:
    """A configuration tree as TOML that ``load_config`` reads back to the same configuration (None is
    written as ``"none"``, which every optional setting reads as None)."""

    def value(x: Any) -> str:
        if x is None:
            return '"none"'
        if isinstance(x, bool):
            return "true" if x else "false"
        if isinstance(x, float) and not math.isfinite(x):
            return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")
        if isinstance(x, (int, float)):
            return repr(x)
        if isinstance(x, (list, tuple)):
            return "[" + ", ".join(value(v) for v in x) + "]"
        return json.dumps(str(x))  # JSON's escapes are TOML basic-string escapes

    lines = [f"{json.dumps(k)} = {value(v)}" for k, v in tree.items() if not isinstance(v, dict)]
    for name, section in tree.items():
        if isinstance(section, dict):
            lines += ["", f"[{name}]"] + [f"{json.dumps(k)} = {value(v)}" for k, v in section.items()]
    return "\n".join(lines) + "\n"

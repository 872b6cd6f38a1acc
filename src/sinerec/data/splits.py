"""Evaluation protocols (``docs/sine-model.md`` section 5): ``loo`` and ``comirec``.

A split never copies sequences: it holds positions into ``SequenceData.items``.

- ``TrainSet``: every training interaction at absolute position p with p > start (the user's first training
  position) is a target; its history is ``items[max(start, p - T):p]``.
- ``EvalSet``: one query per evaluated user: the history is ``items[hist_start:hist_end]`` (the model sees
  the last T of it; history exclusion uses all of it) and the targets are a CSR list of item ids.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

import numpy as np

from sinerec.data.preprocess import SequenceData
from sinerec.errors import ConfigError

PROTOCOLS = ("loo", "comirec")


@dataclass(frozen=True)
class ProtocolConfig:
    """How to split. ``exclude_history=None`` means the protocol's default: on for loo, off for comirec."""

    name: str = "loo"
    seed: int = 2021  # comirec: the user shuffle
    valid_fraction: float = 0.1  # comirec: share of users for validation
    test_fraction: float = 0.1  # comirec: share of users for test
    input_fraction: float = 0.8  # comirec: share of a held-out user's items given as input
    exclude_history: bool | None = None

    def __post_init__(self) -> None:
        if self.name not in PROTOCOLS:
            raise ConfigError(f"protocol.name: expected one of {PROTOCOLS}, got {self.name!r}")
        if not 0 < self.valid_fraction < 1 or not 0 < self.test_fraction < 1 or \
                self.valid_fraction + self.test_fraction >= 1:
            raise ConfigError(
                f"protocol: valid_fraction and test_fraction must be in (0, 1) with a sum below 1, got "
                f"{self.valid_fraction!r} and {self.test_fraction!r}")
        if self.seed < 0:
            raise ConfigError(f"protocol.seed: must be >= 0, got {self.seed!r}")
        if not 0 < self.input_fraction < 1:
            raise ConfigError(f"protocol.input_fraction: must be in (0, 1), got {self.input_fraction!r}")

    @property
    def excludes_history(self) -> bool:
        return self.exclude_history if self.exclude_history is not None else self.name == "loo"


@dataclass
class TrainSet:
    """Training targets. positions (N,): absolute index of each target in data.items; starts (N,): the
    absolute index of the owning user's first training item (histories never reach before it)."""

    positions: np.ndarray
    starts: np.ndarray
    users: np.ndarray  # (U_train,) the users that contribute training data
    item_counts: np.ndarray  # (M + 1,) interactions per item in the training part (popularity)

    def __len__(self) -> int:
        return len(self.positions)


@dataclass
class EvalSet:
    users: np.ndarray  # (Q,) user index of each query
    hist_start: np.ndarray  # (Q,) absolute index in data.items
    hist_end: np.ndarray  # (Q,) exclusive
    target_offsets: np.ndarray  # (Q + 1,)
    targets: np.ndarray  # (sum of target counts,) item ids

    def __len__(self) -> int:
        return len(self.users)

    def sample(self, n: int, seed: int = 0) -> EvalSet:
        """``n`` of the queries drawn without replacement by ``seed`` (in their original order); all of them
        when there are at most ``n``. The same ``n`` and ``seed`` give the same queries on every call and rank."""
        if n >= len(self):
            return self
        keep = np.sort(np.random.default_rng(seed).choice(len(self), size=n, replace=False))
        counts = np.diff(self.target_offsets)[keep]
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        lo = np.asarray(self.target_offsets)[keep]
        owner = np.repeat(np.arange(n), counts)
        index = lo[owner] + (np.arange(int(offsets[-1]), dtype=np.int64) - offsets[owner])
        return EvalSet(users=np.asarray(self.users)[keep], hist_start=np.asarray(self.hist_start)[keep],
                       hist_end=np.asarray(self.hist_end)[keep], target_offsets=offsets,
                       targets=np.asarray(self.targets)[index])


@dataclass
class Split:
    protocol: ProtocolConfig
    train: TrainSet
    valid: EvalSet
    test: EvalSet
    fingerprint: str

    def summary(self) -> dict[str, object]:
        return {
            **asdict(self.protocol),
            "exclude_history": self.protocol.excludes_history,
            "n_train_examples": len(self.train),
            "n_train_users": len(self.train.users),
            "n_valid_users": len(self.valid),
            "n_test_users": len(self.test),
            "fingerprint": self.fingerprint,
        }


def _train_set(data: SequenceData, users: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> TrainSet:
    """Targets are positions start+1 .. end-1 of each listed user (vectorised)."""
    n_targets = np.maximum(ends - starts - 1, 0)
    owner = np.repeat(np.arange(len(users)), n_targets)
    # position = start + 1 + (index within the user's block)
    first = np.zeros(len(users) + 1, dtype=np.int64)
    np.cumsum(n_targets, out=first[1:])
    within = np.arange(int(n_targets.sum()), dtype=np.int64) - first[owner]
    positions = starts[owner] + 1 + within
    # popularity over every training interaction (the first item of a user included)
    counts = np.bincount(data.items[_ranges(starts, ends)], minlength=data.num_items + 1)
    return TrainSet(positions=positions, starts=starts[owner], users=users, item_counts=counts)


def _ranges(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Concatenation of arange(s, e) for every pair, vectorised."""
    lengths = np.maximum(ends - starts, 0)
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    first = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=first[1:])
    owner = np.repeat(np.arange(len(lengths)), lengths)
    return starts[owner] + np.arange(total, dtype=np.int64) - first[owner]


def _single_target_eval(users: np.ndarray, starts: np.ndarray, target_pos: np.ndarray,
                        data: SequenceData) -> EvalSet:
    return EvalSet(users=users, hist_start=starts, hist_end=target_pos,
                   target_offsets=np.arange(len(users) + 1, dtype=np.int64),
                   targets=data.items[target_pos])


def leave_one_out(data: SequenceData, config: ProtocolConfig) -> Split:
    """Last item of each user: test; second last: validation; the rest: training.

    Users with fewer than 3 interactions are training-only (they have no validation or test query).
    """
    starts, ends = data.offsets[:-1], data.offsets[1:]
    lengths = ends - starts
    users = np.arange(data.num_users)
    evaluated = lengths >= 3
    train_end = np.where(evaluated, ends - 2, ends)
    train = _train_set(data, users, starts, train_end)
    ev_users = users[evaluated]
    valid = _single_target_eval(ev_users, starts[evaluated], ends[evaluated] - 2, data)
    test = _single_target_eval(ev_users, starts[evaluated], ends[evaluated] - 1, data)
    return Split(config, train, valid, test, _split_fingerprint(data, config))


def comirec_split(data: SequenceData, config: ProtocolConfig) -> Split:
    """Users shuffled with ``seed`` and split into train/valid/test users; a held-out user's first
    ``input_fraction`` of items (int(n * fraction), as ComiRec's code) is the input, the rest the targets.

    The k-core filter of the ComiRec recipe (items >= 5, then users >= 5) belongs to preprocessing.
    Targets are deduplicated per user and items of the input are kept among them (ComiRec does not exclude).
    """
    rng = np.random.default_rng(config.seed)
    perm = rng.permutation(data.num_users)
    n_valid = int(round(data.num_users * config.valid_fraction))
    n_test = int(round(data.num_users * config.test_fraction))
    n_train = data.num_users - n_valid - n_test
    train_users = np.sort(perm[:n_train])
    valid_users = np.sort(perm[n_train:n_train + n_valid])
    test_users = np.sort(perm[n_train + n_valid:])
    starts, ends = data.offsets[:-1], data.offsets[1:]
    train = _train_set(data, train_users, starts[train_users], ends[train_users])

    def held_out(users: np.ndarray) -> EvalSet:
        s, e = starts[users], ends[users]
        cut = s + ((e - s) * config.input_fraction).astype(np.int64)
        cut = np.clip(cut, s + 1, e - 1)  # at least one input and one target
        keep = e - s >= 2
        users, s, e, cut = users[keep], s[keep], e[keep], cut[keep]
        target_lists = [np.unique(data.items[c:f]) for c, f in zip(cut, e, strict=True)]
        # keep first-occurrence order for readability; membership is all that metrics use
        offsets = np.zeros(len(users) + 1, dtype=np.int64)
        np.cumsum([len(t) for t in target_lists], out=offsets[1:])
        targets = np.concatenate(target_lists) if target_lists else np.zeros(0, dtype=np.int64)
        return EvalSet(users=users, hist_start=s, hist_end=cut, target_offsets=offsets, targets=targets)

    return Split(config, train, held_out(valid_users), held_out(test_users), _split_fingerprint(data, config))


def make_split(data: SequenceData, config: ProtocolConfig) -> Split:
    if config.name == "loo":
        return leave_one_out(data, config)
    return comirec_split(data, config)


def _split_fingerprint(data: SequenceData, config: ProtocolConfig) -> str:
    payload = {"data": data.fingerprint(), "protocol": asdict(config)}
    if config.name == "loo":
        payload["protocol"] = {"name": "loo"}  # seed and fractions do not affect leave-one-out
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]

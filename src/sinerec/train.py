"""The training loop: one trainer for every model.

Adam, early stopping on a validation metric with patience, the best weights restored for the test
evaluation, a progress bar with loss and examples per second, a per-epoch JSON log, seeded and
deterministic on CPU, resumable from the last checkpoint. Process-level concerns (devices, ranks) stay here
and in ``sinerec.distributed``; models only map histories to vectors.
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from sinerec import losses
from sinerec.config import Config
from sinerec.data.batching import TrainBatches
from sinerec.data.preprocess import SequenceData
from sinerec.data.splits import Split
from sinerec.errors import SinerecError
from sinerec.evaluate import EvalResult, evaluate
from sinerec.models import SequentialRecommender, build_model
from sinerec.runs import atomic_write_text, load_torch, save_torch


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SinerecError(f"train.device: {name!r} requested but CUDA is not available (use cpu or auto)")
    return torch.device(name)


@dataclass
class TrainResult:
    model: SequentialRecommender
    valid: EvalResult
    test: EvalResult
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    train_seconds: float = 0.0
    examples_per_second: float = 0.0


class Trainer:
    """Trains ``config.model`` on ``split.train`` and evaluates on ``split.valid`` / ``split.test``.

    ``run_dir`` (optional) receives ``log.jsonl``, ``model.pt`` (best weights) and ``checkpoint.pt``.
    """

    def __init__(self, config: Config, data: SequenceData, split: Split, run_dir: Path | None = None,
                 log: Any = print) -> None:
        self.config = config
        self.data = data
        self.split = split
        self.run_dir = run_dir
        self.log = log
        self.device = resolve_device(config.train.device)
        if config.train.threads:
            torch.set_num_threads(config.train.threads)
        torch.manual_seed(config.train.seed)
        self.model = build_model(config.model, data.num_items, config.data.max_len, config.model_params)
        self.model.to(self.device)
        self.sample_generator = torch.Generator().manual_seed(config.train.seed + 1)
        self.sampler = self._make_sampler()

    # ----------------------------------------------------------------------------------------- loss
    def _make_sampler(self) -> Any:
        if self.config.train.loss != "sampled":
            return None
        counts = torch.from_numpy(self.split.train.item_counts).double()
        if self.config.train.sampler == "popularity":
            return losses.PopularitySampler(counts, power=self.config.train.sampler_power)
        return losses.LogUniformSampler.from_counts(counts)

    def loss(self, history: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(total loss, likelihood loss) for a batch."""
        out = self.model(history, target)
        item_emb = self.model.item_embeddings()
        if self.sampler is None:
            like = losses.full_softmax_loss(out.user, item_emb, target)
        else:
            negatives, log_q_neg = self.sampler.sample(self.config.train.num_negatives, self.sample_generator)
            negatives, log_q_neg = negatives.to(self.device), log_q_neg.to(self.device)
            log_q_target = self.sampler.log_q(target.cpu(), self.config.train.num_negatives).to(self.device)
            like = losses.sampled_softmax_loss(out.user, item_emb, target, negatives, log_q_target, log_q_neg)
        return like + self.model.auxiliary_loss(out), like

    # ----------------------------------------------------------------------------------------- eval
    def evaluate(self, which: str, progress: bool = False) -> EvalResult:
        queries = self.split.valid if which == "valid" else self.split.test
        return evaluate(self.model, self.data, queries, self.config.data.max_len,
                        self.split.protocol.excludes_history, self.config.eval, self.device,
                        progress=progress, desc=which)

    # ----------------------------------------------------------------------------------------- fit
    def fit(self, resume: bool = False) -> TrainResult:
        cfg = self.config.train
        if not self.model.trainable:
            counts = self.split.train.item_counts  # (M + 1,) interactions per item in the training part
            train_items = np.repeat(np.arange(len(counts)), counts)
            self.model.fit_counts(items=torch.from_numpy(train_items).to(self.device))
            valid, test = self.evaluate("valid", cfg.progress), self.evaluate("test", cfg.progress)
            if self.run_dir is not None:
                save_torch(self.run_dir / "model.pt", self.model.state_dict())
            return TrainResult(self.model, valid, test)

        optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        batches = TrainBatches(self.data.items, self.split.train, self.config.data.max_len, cfg.batch_size,
                               seed=cfg.seed)
        history: list[dict[str, Any]] = []
        best_value, best_epoch, bad_epochs, start_epoch = -math.inf, 0, 0, 0
        best_state = copy.deepcopy(self.model.state_dict())
        ckpt_path = self.run_dir / "checkpoint.pt" if self.run_dir else None
        if resume:
            if ckpt_path is None or not ckpt_path.exists():
                raise SinerecError(f"--resume: no checkpoint at {ckpt_path}")
            state = load_torch(ckpt_path)
            self.model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            best_state = state["best_model"]
            best_value, best_epoch, bad_epochs = state["best_value"], state["best_epoch"], state["bad_epochs"]
            start_epoch = state["epoch"]
            history = state["history"]
            self.sample_generator.set_state(state["sample_generator"])
            torch.set_rng_state(state["torch_rng"])
            self.log(f"resumed from {ckpt_path} after epoch {start_epoch}")
            # the log may hold epochs after the checkpoint (a crash between the two writes): rewrite it
            atomic_write_text(ckpt_path.parent / "log.jsonl", "".join(json.dumps(r) + "\n" for r in history))

        train_seconds = sum(h["seconds"] for h in history)
        n_seen = sum(h["examples"] for h in history)
        stop = bad_epochs >= cfg.patience
        for epoch in range(start_epoch, cfg.epochs):
            if stop:
                break
            self.model.train()
            n_batches = batches.num_batches(epoch)
            if cfg.max_steps_per_epoch:
                n_batches = min(n_batches, cfg.max_steps_per_epoch)
            bar = tqdm(total=n_batches, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch",
                       disable=not cfg.progress, leave=False)
            t0 = time.perf_counter()
            total, total_like, examples = 0.0, 0.0, 0
            for step, (hist, target) in enumerate(batches.epoch(epoch)):
                if step >= n_batches:
                    break
                hist, target = hist.to(self.device, non_blocking=True), target.to(self.device, non_blocking=True)
                loss, like = self.loss(hist, target)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip:
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
                optimizer.step()
                n = hist.shape[0]
                total += loss.item() * n
                total_like += like.item() * n
                examples += n
                if step % 20 == 0 or step == n_batches - 1:
                    rate = examples / max(time.perf_counter() - t0, 1e-9)
                    bar.set_postfix(loss=f"{total / examples:.4f}", ex_s=f"{rate:,.0f}")
                bar.update(1)
            bar.close()
            seconds = time.perf_counter() - t0
            if not math.isfinite(total):
                raise SinerecError(f"training diverged at epoch {epoch + 1} (loss {total}); lower train.lr")
            train_seconds += seconds
            n_seen += examples
            record: dict[str, Any] = {"epoch": epoch + 1, "loss": total / max(examples, 1),
                                      "likelihood_loss": total_like / max(examples, 1), "examples": examples,
                                      "seconds": round(seconds, 3),
                                      "examples_per_second": round(examples / max(seconds, 1e-9), 1)}
            if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs:
                t1 = time.perf_counter()
                valid = self.evaluate("valid")
                record["eval_seconds"] = round(time.perf_counter() - t1, 3)
                record["valid"] = valid.means
                value = valid.means[cfg.monitor]
                if value > best_value:
                    best_value, best_epoch, bad_epochs = value, epoch + 1, 0
                    best_state = copy.deepcopy(self.model.state_dict())
                    if self.run_dir is not None:
                        save_torch(self.run_dir / "model.pt", best_state)
                else:
                    bad_epochs += 1
                stop = bad_epochs >= cfg.patience
            history.append(record)
            self.log(_epoch_line(record, cfg.monitor, best_epoch))
            if self.run_dir is not None:
                _append_jsonl(self.run_dir / "log.jsonl", record)
                save_torch(ckpt_path, {
                    "model": self.model.state_dict(), "optimizer": optimizer.state_dict(),
                    "best_model": best_state, "best_value": best_value, "best_epoch": best_epoch,
                    "bad_epochs": bad_epochs, "epoch": epoch + 1, "history": history,
                    "sample_generator": self.sample_generator.get_state(), "torch_rng": torch.get_rng_state(),
                })
        self.model.load_state_dict(best_state)
        valid, test = self.evaluate("valid"), self.evaluate("test")
        return TrainResult(self.model, valid, test, history, best_epoch, train_seconds,
                           n_seen / max(train_seconds, 1e-9))


def _epoch_line(record: dict[str, Any], monitor: str, best_epoch: int) -> str:
    line = (f"epoch {record['epoch']:3d}  loss {record['loss']:.4f}  {record['seconds']:.1f}s  "
            f"{record['examples_per_second']:,.0f} ex/s")
    if "valid" in record:
        line += f"  valid {monitor} {100 * record['valid'][monitor]:.2f}%  (best epoch {best_epoch})"
    return line


def _append_jsonl(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a") as fh:
        fh.write(json.dumps(record) + "\n")

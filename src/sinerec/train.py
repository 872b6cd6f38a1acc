"""The training loop: one trainer for every model.

Adam, early stopping on a validation metric with patience, the best weights restored for the test
evaluation, a progress bar with loss and examples per second, a per-epoch JSON log, seeded and
deterministic on CPU, resumable from the last checkpoint. Process-level concerns (devices, ranks) stay here
and in ``sinerec.distributed``; models only map histories to vectors. The trainer changes no process-wide
state: its random draws (initial weights, dropout) come from its own stream seeded by ``train.seed``
(:meth:`Trainer.random_stream`), and torch threads are the training job's (``sinerec.job``). The files it
writes into a run directory are named and written by ``sinerec.runs``.

Several processes (``torchrun``, see ``sinerec.distributed``): ``train.batch_size`` is the *global* batch;
each of N ranks takes its ``batch_size / N`` share of every step's examples (a disjoint shard of the epoch's
seeded permutation, the union over ranks being exactly the single process's batch), the whole loss runs
inside one DistributedDataParallel forward (:class:`TrainingLoss`) and each rank's loss is weighted by its
share of the step's examples, so the averaged gradient is the combined batch's mean gradient, also for a
short last batch. Sampled negatives come from one generator seeded alike on every rank: all ranks draw the
same negatives, as one process shares them across its batch. Evaluation is sharded by query batches and
gathered (metrics identical to one process's); the early-stopping decision therefore is the same on every
rank. Only rank 0 prints, shows progress and writes files.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from sinerec import distributed, losses, optim, runs, runtime
from sinerec.callbacks import Callback, CallbackList
from sinerec.config import Config
from sinerec.data.batching import TrainBatches
from sinerec.data.preprocess import SequenceData
from sinerec.data.splits import Split
from sinerec.distributed import DistContext
from sinerec.errors import SinerecError
from sinerec.evaluate import EvalResult, evaluate
from sinerec.models import SequentialRecommender, build_model

LOGGER = logging.getLogger("sinerec")  # where progress goes unless the caller passes ``log``


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
    precision: str = "float32"  # what train.amp resolved to here: "bf16" (autocast) or "float32"


class TrainingLoss(nn.Module):
    """A model's whole training objective as one module: forward, item table, likelihood and regularisers.

    DistributedDataParallel all-reduces the gradients of what flows through *its* forward, so the loss is
    computed inside one forward (and ``torch.compile`` sees one graph); the model stays unaware of both.

    ``forward(history (B, T), target (B,))`` with full softmax, or with ``negatives (S,)``,
    ``log_q_target (B,)``, ``log_q_negatives (S,)`` for sampled softmax -> (total loss, likelihood loss).
    """

    def __init__(self, model: SequentialRecommender, sparse: bool = False) -> None:
        super().__init__()
        self.model = model
        self.sparse = sparse  # sampled softmax looks item rows up sparsely (``train.optimizer = "lazy-adam"``)

    def forward(self, history: torch.Tensor, target: torch.Tensor, negatives: torch.Tensor | None = None,
                log_q_target: torch.Tensor | None = None,
                log_q_negatives: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(history, target)
        item_emb = self.model.item_embeddings()
        if negatives is None:
            like = losses.full_softmax_loss(out.user, item_emb, target)
        else:
            assert log_q_target is not None and log_q_negatives is not None
            like = losses.sampled_softmax_loss(out.user, item_emb, target, negatives, log_q_target,
                                               log_q_negatives, sparse=self.sparse)
        return like + self.model.auxiliary_loss(out), like


class Trainer:
    """Trains ``config.model`` on ``split.train`` and evaluates on ``split.valid`` / ``split.test``.

    ``run_dir`` (optional) receives ``log.jsonl``, ``model.pt`` (best weights) and ``checkpoint.pt`` (rank 0
    only, see ``sinerec.runs``). ``dist`` is the process context from :func:`sinerec.distributed.init`
    (default: one process on ``train.device``). ``callbacks`` are told of the fit's progress and may stop it
    (``sinerec.callbacks``; rank 0 only). Constructing and fitting a trainer leaves torch's global
    generators and thread count as they were.
    """

    def __init__(self, config: Config, data: SequenceData, split: Split, run_dir: Path | None = None,
                 log: Callable[[str], None] = LOGGER.info, dist: DistContext | None = None,
                 callbacks: Iterable[Callback] = ()) -> None:
        self.config = config
        self.data = data
        self.split = split
        self.run_dir = run_dir
        device = resolve_device(config.train.device)
        self.dist = dist if dist is not None else DistContext(device=device)
        self.device = self.dist.device
        self.log = log if self.dist.is_main else (lambda *a, **k: None)
        self.writes = run_dir is not None and self.dist.is_main  # only rank 0 writes files
        self.callbacks = CallbackList(callbacks, self.dist)
        seed, cuda = config.train.seed, self.device.type == "cuda"
        self._rng_state = torch.Generator().manual_seed(seed).get_state()
        self._cuda_rng_state = torch.Generator(self.device).manual_seed(seed).get_state() if cuda else None
        with self.random_stream():
            self.model = build_model(config.model, data.num_items, config.data.max_len, config.model_params)
        self.model.to(self.device)
        sparse = config.train.optimizer == "lazy-adam" and self.model.trainable
        if sparse:
            optim.make_item_tables_sparse(self.model)
        self.loss_module = TrainingLoss(self.model, sparse=sparse)
        self.step_module: Callable[..., Any] = self.loss_module  # DDP- / compile-wrapped in fit
        # the same seed on every rank: all ranks draw the same negatives at every step
        self.sample_generator = torch.Generator().manual_seed(config.train.seed + 1)
        self.sampler = self._make_sampler()
        self.precision = runtime.resolve_precision(config.train.amp, self.device.type, self.model.cpu_bf16)
        self.autocast = self.precision == "bf16"
        prefetch = config.train.prefetch
        self.prefetch = prefetch if prefetch is not None else (2 if self.device.type == "cuda" else 0)

    @contextlib.contextmanager
    def random_stream(self) -> Iterator[None]:
        """Torch's global generators (CPU, and this trainer's GPU) replaced by the trainer's stream for the
        block, and the caller's put back after it: the trainer's draws are one sequence seeded by
        ``train.seed`` (what ``torch.manual_seed(seed)`` before building the model would give) and the
        process's own generators are not touched."""
        cuda = self._cuda_rng_state is not None
        with torch.random.fork_rng(devices=[self.device] if cuda else [], device_type="cuda"):
            torch.set_rng_state(self._rng_state)
            if self._cuda_rng_state is not None:
                torch.cuda.set_rng_state(self._cuda_rng_state, self.device)
            try:
                yield
            finally:
                self._rng_state = torch.get_rng_state()
                if cuda:
                    self._cuda_rng_state = torch.cuda.get_rng_state(self.device)

    # ----------------------------------------------------------------------------------------- loss
    def _make_sampler(self) -> Any:
        if self.config.train.loss != "sampled":
            return None
        counts = torch.from_numpy(self.split.train.item_counts).double()
        if self.config.train.sampler == "popularity":
            return losses.PopularitySampler(counts, power=self.config.train.sampler_power)
        return losses.LogUniformSampler.from_counts(counts)

    def _negatives(self, target: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(negatives, log Q of the targets, log Q of the negatives) on the device, or () for full softmax.
        ``target`` (B,) on the CPU (no device sync)."""
        if self.sampler is None:
            return ()
        num = self.config.train.num_negatives
        negatives, log_q_neg = self.sampler.sample(num, self.sample_generator)
        log_q_target = self.sampler.log_q(target, num)
        return tuple(t.to(self.device, non_blocking=True) for t in (negatives, log_q_target, log_q_neg))

    def loss(self, history: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(total loss, likelihood loss) for a batch."""
        extra = self._negatives(target.cpu())
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
            return self.step_module(history.to(self.device), target.to(self.device), *extra)

    def wrap_step_module(self) -> None:
        """DDP around the loss module (several processes), then torch.compile (``train.compile``)."""
        module = distributed.wrap(self.loss_module, self.dist)
        self.step_module = torch.compile(module) if self.config.train.compile else module

    def unwrap_step_module(self) -> None:
        """Drop the DDP / compiled wrappers (they must not outlive the process group)."""
        self.step_module = self.loss_module

    # ----------------------------------------------------------------------------------------- eval
    def evaluate(self, which: str, progress: bool = False) -> EvalResult:
        queries = self.split.valid if which == "valid" else self.split.test
        gather = (lambda a: distributed.all_gather_arrays(a, self.dist)) if self.dist.enabled else None
        return evaluate(self.model, self.data, queries, self.config.data.max_len,
                        self.split.protocol.excludes_history, self.config.eval, self.device,
                        progress=progress and self.dist.is_main, desc=which, rank=self.dist.rank,
                        world_size=self.dist.world_size, gather=gather)

    # ----------------------------------------------------------------------------------------- train
    def make_optimizer(self) -> torch.optim.Optimizer:
        """``train.optimizer``: fused Adam, or the row-wise lazy Adam of ``sinerec.optim`` for sparse item tables."""
        cfg = self.config.train
        return optim.make_optimizer(self.model, cfg.optimizer, cfg.lr, cfg.weight_decay)

    def make_batches(self) -> TrainBatches:
        """This rank's batches: ``batch_size / world_size`` examples of each global batch."""
        cfg, world = self.config.train, self.dist.world_size
        if cfg.batch_size % world:
            raise SinerecError(f"train.batch_size: {cfg.batch_size} is the global batch and must be a multiple "
                               f"of the number of processes ({world})")
        return TrainBatches(self.data.items, self.split.train, self.config.data.max_len, cfg.batch_size // world,
                            seed=cfg.seed, rank=self.dist.rank, world_size=world)

    def num_steps(self) -> int:
        """Optimisation steps of an epoch: global batches, capped by ``train.max_steps_per_epoch``."""
        cfg = self.config.train
        steps = -(-len(self.split.train) // cfg.batch_size)
        return min(steps, cfg.max_steps_per_epoch) if cfg.max_steps_per_epoch else steps

    def _rank_batches(self, batches: TrainBatches, epoch: int,
                      n_steps: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, int]]:
        """(history, target, real examples) for each of the epoch's ``n_steps`` steps. A rank whose shard
        runs out before the last step (at most one short step) gets one real row with weight 0, so every rank
        takes part in every all-reduce."""
        it = batches.epoch(epoch)
        if self.prefetch:
            it = _prefetched(it, self.prefetch, pin=self.device.type == "cuda")
        with contextlib.closing(it):
            spare: tuple[torch.Tensor, torch.Tensor] | None = None
            for _ in range(n_steps):
                batch = next(it, None)
                if batch is not None:
                    spare = spare or (batch[0][:1], batch[1][:1])
                    yield batch[0], batch[1], batch[0].shape[0]
                else:
                    if spare is None:  # an empty shard: a row of another rank's data would do as well
                        spare = next(iter(TrainBatches(self.data.items, self.split.train, self.config.data.max_len,
                                                       1, seed=0, shuffle=False).epoch(0)))
                    yield spare[0], spare[1], 0

    def train_epoch(self, epoch: int, optimizer: torch.optim.Optimizer, batches: TrainBatches) -> dict[str, Any]:
        """One epoch of optimisation steps. Returns the epoch's record (loss and examples over all ranks)."""
        cfg = self.config.train
        world, n_total, n_steps = self.dist.world_size, len(self.split.train), self.num_steps()
        self.model.train()
        bar = tqdm(total=n_steps, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch",
                   disable=not (cfg.progress and self.dist.is_main), leave=False)
        t0 = time.perf_counter()
        sums = torch.zeros(2, dtype=torch.float64, device=self.device)  # sum over examples of (loss, like)
        examples = 0
        for step, (hist, target, n) in enumerate(self._rank_batches(batches, epoch, n_steps)):
            extra = self._negatives(target)
            hist, target = hist.to(self.device, non_blocking=True), target.to(self.device, non_blocking=True)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.autocast):
                loss, like = self.step_module(hist, target, *extra)
            optimizer.zero_grad(set_to_none=True)
            if world > 1:
                # DDP averages gradients over ranks: weighting each rank's mean by its share of the step's
                # examples (x world) makes the average the combined batch's mean, even for unequal shares.
                step_examples = min(cfg.batch_size, n_total - step * cfg.batch_size)
                (loss * (n * world / step_examples)).backward()
            else:
                loss.backward()
            if cfg.grad_clip:
                optim.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)  # sparse tables too
            optimizer.step()
            sums += torch.stack([loss.detach(), like.detach()]).double() * n
            examples += n
            if step % 20 == 0 or step == n_steps - 1:
                rate = examples / max(time.perf_counter() - t0, 1e-9)
                bar.set_postfix(loss=f"{sums[0].item() / max(examples, 1):.4f}", ex_s=f"{rate * world:,.0f}")
            bar.update(1)
        bar.close()
        seconds = time.perf_counter() - t0
        total, total_like, examples_all = distributed.all_reduce_sum(
            np.array([*sums.tolist(), examples]), self.dist).tolist()
        examples_all = int(examples_all)
        return {"epoch": epoch + 1, "loss": total / max(examples_all, 1),
                "likelihood_loss": total_like / max(examples_all, 1), "examples": examples_all,
                "seconds": round(seconds, 3), "examples_per_second": round(examples_all / max(seconds, 1e-9), 1)}

    # ----------------------------------------------------------------------------------------- fit
    def fit(self, resume: bool = False) -> TrainResult:
        """Train (or, with ``resume``, continue from ``run_dir``'s checkpoint), restore the best weights and
        evaluate them on the validation and test queries."""
        self.callbacks.on_fit_start(self.config, self.run_dir)
        with self.random_stream():
            result = self._fit(resume)
        self.callbacks.on_fit_end(result)
        return result

    def _fit(self, resume: bool) -> TrainResult:
        cfg = self.config.train
        if not self.model.trainable:
            counts = self.split.train.item_counts  # (M + 1,) interactions per item in the training part
            train_items = np.repeat(np.arange(len(counts)), counts)
            self.model.fit_counts(items=torch.from_numpy(train_items).to(self.device))
            valid, test = self.evaluate("valid", cfg.progress), self.evaluate("test", cfg.progress)
            if self.writes:
                assert self.run_dir is not None
                runs.save_best_weights(self.run_dir, self.model.state_dict())
            return TrainResult(self.model, valid, test, precision=self.precision)

        optimizer = self.make_optimizer()
        batches = self.make_batches()
        history: list[dict[str, Any]] = []
        best_value, best_epoch, bad_epochs, start_epoch = -math.inf, 0, 0, 0
        best_state = copy.deepcopy(self.model.state_dict())
        fingerprints = {"data_fingerprint": self.data.fingerprint(), "split_fingerprint": self.split.fingerprint} \
            if self.writes or resume else {}
        if resume:
            if self.run_dir is None:
                raise SinerecError("--resume: the trainer has no run directory to resume from")
            state = runs.load_checkpoint(self.run_dir)
            runs.check_resume_data(self.run_dir, state, fingerprints["data_fingerprint"],
                                   fingerprints["split_fingerprint"])
            runs.check_resume_precision(self.run_dir, state, cfg.amp, self.precision, str(self.device))
            try:
                self.model.load_state_dict(state["model"])
                optimizer.load_state_dict(state["optimizer"])
            except (RuntimeError, ValueError) as exc:  # another model, or other shapes
                raise SinerecError(f"--resume: {self.run_dir / runs.CHECKPOINT} does not fit the configured "
                                   f"model ({str(exc).splitlines()[0]})") from None
            for group in optimizer.param_groups:  # the configured rate (it may have changed on resume)
                group["lr"], group["weight_decay"] = cfg.lr, cfg.weight_decay
            best_state = state["best_model"]
            best_value, best_epoch, bad_epochs = state["best_value"], state["best_epoch"], state["bad_epochs"]
            start_epoch = state["epoch"]
            history = state["history"]
            self.sample_generator.set_state(state["sample_generator"])
            torch.set_rng_state(state["torch_rng"])
            self.log(f"resumed from {self.run_dir / runs.CHECKPOINT} after epoch {start_epoch}")
            if self.writes:
                # the log may hold epochs after the checkpoint (a crash between the two writes): rewrite it
                runs.rewrite_log(self.run_dir, history)
        self.wrap_step_module()

        train_seconds = sum(h["seconds"] for h in history)
        n_seen = sum(h["examples"] for h in history)
        stop = bad_epochs >= cfg.patience
        if stop and start_epoch < cfg.epochs:
            self.log(f"early stopping fired after epoch {start_epoch} (train.patience={cfg.patience}); raise "
                     "train.patience to train on")
        for epoch in range(start_epoch, cfg.epochs):
            if stop:
                break
            record = self.train_epoch(epoch, optimizer, batches)
            if not math.isfinite(record["loss"]):
                raise SinerecError(f"training diverged at epoch {epoch + 1} (loss {record['loss']}); lower train.lr")
            train_seconds += record["seconds"]
            n_seen += record["examples"]
            if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs:
                t1 = time.perf_counter()
                valid = self.evaluate("valid")  # gathered: the same metrics, hence decisions, on every rank
                record["eval_seconds"] = round(time.perf_counter() - t1, 3)
                record["valid"] = valid.means
                value = valid.means[cfg.monitor]
                if value > best_value:
                    best_value, best_epoch, bad_epochs = value, epoch + 1, 0
                    best_state = copy.deepcopy(self.model.state_dict())
                    if self.writes:
                        assert self.run_dir is not None
                        runs.save_best_weights(self.run_dir, best_state)
                else:
                    bad_epochs += 1
                stop = bad_epochs >= cfg.patience
            history.append(record)
            self.log(_epoch_line(record, cfg.monitor, best_epoch))
            if self.writes:
                assert self.run_dir is not None
                runs.append_log(self.run_dir, record)
                runs.save_checkpoint(self.run_dir, {
                    "model": self.model.state_dict(), "optimizer": optimizer.state_dict(),
                    "best_model": best_state, "best_value": best_value, "best_epoch": best_epoch,
                    "bad_epochs": bad_epochs, "epoch": epoch + 1, "history": history,
                    "sample_generator": self.sample_generator.get_state(), "torch_rng": torch.get_rng_state(),
                    "precision": self.precision, **fingerprints,
                })
            self.callbacks.on_epoch_end(epoch + 1, record)
            stop = self.callbacks.should_stop() or stop
        self.unwrap_step_module()
        self.model.load_state_dict(best_state)
        valid, test = self.evaluate("valid"), self.evaluate("test")
        return TrainResult(self.model, valid, test, history, best_epoch, train_seconds,
                           n_seen / max(train_seconds, 1e-9), self.precision)


def _prefetched(batches: Iterator[tuple[torch.Tensor, torch.Tensor]], depth: int,
                pin: bool) -> Generator[tuple[torch.Tensor, torch.Tensor], None, None]:
    """``batches`` prepared ``depth`` ahead by a background thread (pinned for fast host-to-GPU copies).

    The thread consumes the same deterministic iterator in order, so the batches are exactly those of the
    plain loop; randomness the step draws (negatives) stays in the training loop. Closing the generator
    stops the thread.
    """
    slots: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                slots.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for hist, target in batches:
                if pin:
                    hist, target = hist.pin_memory(), target.pin_memory()
                if not put((hist, target)):
                    return
            put(done)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the training loop
            put(exc)

    thread = threading.Thread(target=work, name="sinerec-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = slots.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


def _epoch_line(record: dict[str, Any], monitor: str, best_epoch: int) -> str:
    line = (f"epoch {record['epoch']:3d}  loss {record['loss']:.4f}  {record['seconds']:.1f}s  "
            f"{record['examples_per_second']:,.0f} ex/s")
    if "valid" in record:
        line += f"  valid {monitor} {100 * record['valid'][monitor]:.2f}%  (best epoch {best_epoch})"
    return line

"""Several processes (gloo on CPU) give a single process's parameters and metrics; devices and loading.

The two-process tests start 2 workers with torchrun's environment variables on a free local port (a spawned
``multiprocessing`` context, joined with a timeout so a hung collective fails instead of hanging).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import traceback
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
from conftest import free_port

from sinerec import distributed
from sinerec.config import load_config
from sinerec.data.preprocess import preprocess
from sinerec.data.splits import make_split
from sinerec.data.synthetic import planted_concepts
from sinerec.errors import ConfigError, SinerecError
from sinerec.evaluate import EvalConfig, evaluate, shard_batches
from sinerec.train import Trainer

GLOO = dist.is_available() and dist.is_gloo_available()
needs_gloo = pytest.mark.skipif(not GLOO, reason="torch.distributed with the gloo backend is unavailable")

# 55 users x 7 training targets = 385 examples: 6 global batches of 64 (32 per rank) and a last batch of one
# example, which rank 1 does not have (it takes part with a zero-weight row). float32: the parameters are
# compared to ~1e-7, which bf16 autocast's rounding (the default on CPUs with bf16 in hardware) would blur.
TINY = ["data.max_len=8", "train.batch_size=64", "train.progress=false", "train.epochs=2", "train.patience=5",
        "model_params.dim=16", "model_params.num_concepts=10", "model_params.num_interests=2", "train.seed=7",
        "train.amp=off"]
LOSSES = {"full": [], "sampled": ["train.loss=sampled", "train.num_negatives=20"],
          "lazy-adam": ["train.loss=sampled", "train.num_negatives=20", "train.optimizer=lazy-adam"]}
EVAL = EvalConfig(ks=(5, 10), batch_size=13)  # 55 queries: 5 batches, 3 on rank 0 and 2 on rank 1


def tiny_data():
    data = preprocess(planted_concepts(n_users=55, n_items=60, n_concepts=6, length=10, seed=1))
    return data, make_split(data, load_config(overrides=TINY).protocol)


def train(loss: str, ctx: distributed.DistContext | None = None) -> tuple[Trainer, list[float]]:
    """Train on the tiny data; returns the trainer and the per-epoch mean losses."""
    data, split = tiny_data()
    trainer = Trainer(load_config(overrides=TINY + LOSSES[loss]), data, split, log=lambda *a: None, dist=ctx)
    result = trainer.fit()
    return trainer, [h["loss"] for h in result.history]


def _worker(rank: int, world: int, port: int, out: Path) -> None:
    try:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                          WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
        torch.set_num_threads(1)
        ctx = distributed.init("cpu", timeout_s=60)
        assert (ctx.rank, ctx.world_size, ctx.backend) == (rank, world, "gloo")
        result = {}
        for loss in LOSSES:
            trainer, epoch_losses = train(loss, ctx)
            result[loss] = {"state": trainer.model.state_dict(), "losses": epoch_losses}
        # evaluation of fixed weights, sharded and gathered
        data, split = tiny_data()
        trainer = Trainer(load_config(overrides=TINY), data, split, log=lambda *a: None, dist=ctx)
        trainer.model.load_state_dict(torch.load(out / "eval-weights.pt", weights_only=True))
        res = evaluate(trainer.model, data, split.test, 8, True, EVAL, rank=ctx.rank, world_size=ctx.world_size,
                       gather=lambda a: distributed.all_gather_arrays(a, ctx))
        result["eval"] = {"means": res.means, "per_query": res.per_query}
        result["gathered"] = distributed.all_gather_arrays(np.arange(rank * 3, dtype=np.int32).reshape(-1, 1),
                                                           ctx)
        torch.save(result, out / f"rank{rank}.pt")
        distributed.cleanup(ctx)
    except BaseException:
        (out / f"rank{rank}.err").write_text(traceback.format_exc())
        raise


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """Run the workers once; return (rank results, single-process reference trainers, eval weights dir)."""
    out = tmp_path_factory.mktemp("ddp")
    reference = {loss: train(loss) for loss in LOSSES}
    torch.save(reference["full"][0].model.state_dict(), out / "eval-weights.pt")
    ctx = mp.get_context("spawn")
    port = free_port()
    procs = [ctx.Process(target=_worker, args=(r, 2, port, out)) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=240)
    for p in procs:
        if p.is_alive():
            p.terminate()
            p.join()
    errors = [f.read_text() for f in sorted(out.glob("*.err"))]
    assert not errors and all(p.exitcode == 0 for p in procs), "\n".join(errors) or [p.exitcode for p in procs]
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(2)]
    return ranks, reference


# LN2's bias (SINE Eq. 3) adds the same LN1(x) . b to the logit of every slot k, which the softmax over k
# ignores: its true gradient is exactly 0 and what it gets is float rounding noise, which Adam (dividing by
# sqrt(v)) turns into steps of about lr whatever the noise's size. It random-walks in both runs, differently.
ZERO_GRADIENT = {"concept_norm.bias"}


@pytest.mark.slow
@needs_gloo
@pytest.mark.parametrize("loss", list(LOSSES))
def test_two_processes_train_the_single_process_parameters(two_ranks, loss):
    # 14 Adam steps (2 epochs, the 7th step of each with one example, all on rank 0) of a deterministic
    # loss: each rank's loss is weighted by its share of the global batch, DDP averages the gradients, so
    # the update is the combined batch's. Sampled softmax: the same negatives on both ranks. Only the float
    # summation order differs (parameters agree to ~1e-7). lazy-adam: the item table's gradients are sparse
    # (DDP all-reduces them as sparse tensors over gloo) and the row-wise update is the one process's.
    ranks, reference = two_ranks
    trainer, single_losses = reference[loss]
    single = trainer.model.state_dict()
    for r in range(2):  # the logged epoch losses are over all ranks' examples
        assert np.allclose(ranks[r][loss]["losses"], single_losses, rtol=1e-6), ranks[r][loss]["losses"]
    lr_steps = 14 * trainer.config.train.lr
    for name, value in single.items():
        for r in range(2):
            got = ranks[r][loss]["state"][name]
            if name in ZERO_GRADIENT:
                assert got.abs().max() <= lr_steps and value.abs().max() <= lr_steps, name
                continue
            assert torch.allclose(got, value, rtol=1e-5, atol=1e-6), (loss, name, r, (got - value).abs().max())
        assert torch.equal(ranks[0][loss]["state"][name], ranks[1][loss]["state"][name]), name


@pytest.mark.slow
@needs_gloo
def test_two_processes_evaluate_exactly_like_one(two_ranks):
    ranks, reference = two_ranks
    trainer = reference["full"][0]
    single = evaluate(trainer.model, trainer.data, trainer.split.test, 8, True, EVAL)
    for r in range(2):
        got = ranks[r]["eval"]
        assert got["means"] == single.means
        for name, values in single.per_query.items():
            assert np.array_equal(got["per_query"][name], values), name
    assert [a.ravel().tolist() for a in ranks[0]["gathered"]] == [[], [0, 1, 2]]


def test_shard_batches_cover_every_batch_once_in_order():
    # 23 queries in batches of 5 -> 5 batches: ranks of 3 get 2, 2, 1 batches
    assert [list(shard_batches(23, 5, r, 3)) for r in range(3)] == [[0, 1], [2, 3], [4]]
    assert [list(shard_batches(3, 5, r, 2)) for r in range(2)] == [[0], []]
    assert list(shard_batches(23, 5)) == [0, 1, 2, 3, 4]


def test_without_torchrun_everything_is_single_process(monkeypatch):
    for var in distributed.ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    ctx = distributed.init("cpu")
    assert (ctx.rank, ctx.world_size, ctx.backend, ctx.is_main, ctx.enabled) == (0, 1, None, True, False)
    module = torch.nn.Linear(3, 2)
    assert distributed.wrap(module, ctx) is module
    a = np.arange(6).reshape(3, 2)
    gathered = distributed.all_gather_arrays(a, ctx)
    assert len(gathered) == 1 and np.array_equal(gathered[0], a)
    assert distributed.broadcast_object({"x": 1}, ctx) == {"x": 1}
    assert distributed.all_reduce_sum(np.array([1.5, 2.0]), ctx).tolist() == [1.5, 2.0]


def test_global_batch_must_divide_among_processes():
    data, split = tiny_data()
    ctx = distributed.DistContext(rank=0, world_size=3)  # no process group is needed to reach the check
    trainer = Trainer(load_config(overrides=TINY), data, split, log=lambda *a: None, dist=ctx)
    with pytest.raises(SinerecError, match="train.batch_size: 64 is the global batch"):
        trainer.make_batches()


def test_prefetching_thread_gives_the_same_training():
    data, split = tiny_data()
    states = []
    for prefetch in (0, 3):
        config = load_config(overrides=TINY + ["train.epochs=1", f"train.prefetch={prefetch}",
                                               "train.max_steps_per_epoch=4"])
        trainer = Trainer(config, data, split, log=lambda *a: None)
        trainer.fit()
        states.append(trainer.model.state_dict())
    for name, value in states[0].items():
        assert torch.equal(value, states[1][name]), name


@pytest.mark.parametrize("key, value", [("amp", "fp16"), ("prefetch", -1), ("threads", 0)])
def test_device_settings_are_validated(key, value):
    with pytest.raises(ConfigError, match=f"train.{key}"):
        load_config(overrides=[f"train.{key}={value}"])

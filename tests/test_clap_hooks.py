"""CLAP hooks: prototype EM maintenance, Gram gradient, ray-sampler warm-up, and their building."""

import math
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from fvcore.common.param_scheduler import ConstantParamScheduler, CosineParamScheduler
from torch import nn

from clap.config import get_cfg
from clap.engine.clap_hooks import (
    GramRegularizerHook,
    PrototypeEMHook,
    RaySamplerWarmupHook,
    build_clap_hooks,
)
from clap.modeling.prototype_head import SwappedPrototypeHead, prototype_spread


class _RecordingStorage:
    """Keeps what hooks log: scalars and histograms per name."""

    def __init__(self):
        self.scalars, self.histograms, self.images = {}, {}, {}

    def put_scalar(self, name, value):
        self.scalars[name] = value

    def put_histogram(self, name, tensor, bins):
        self.histograms[name] = (tensor.clone(), bins)

    def put_image(self, name, image):
        self.images[name] = image


class _FakeGradScaler:
    def __init__(self, scale):
        self.scale = scale

    def get_scale(self):
        return self.scale


class _Trainer:
    """The trainer interface the hooks rely on, running the documented call order."""

    def __init__(self, model, optimizer, hooks, max_iter=10, grad_scaler=None, start_iter=0):
        self.model, self.optimizer, self.grad_scaler = model, optimizer, grad_scaler
        self.iter, self.max_iter = start_iter, max_iter
        self.storage = _RecordingStorage()
        self.hooks = hooks
        for hook in hooks:
            hook._bind(self)

    def run_step(self, compute_loss):
        for hook in self.hooks:
            hook.before_step()
        self.optimizer.zero_grad()
        compute_loss().backward()
        for hook in self.hooks:
            hook.after_backward()
        self.optimizer.step()
        for hook in self.hooks:
            hook.after_step()

    def train(self, compute_loss, until):
        for hook in self.hooks:
            hook.before_train()
        while self.iter < until:
            self.run_step(lambda: compute_loss(self.iter))
            self.iter += 1


class _Model(nn.Module):
    def __init__(self, head, ray_sampler=None):
        super().__init__()
        self.prototype_head = head
        self.ray_sampler = ray_sampler


class _CurvatureSamplerStandIn:
    use_uniform = False
    warmup_epochs = 4


def _tiny_head(num_prototypes=4, embed_dim=3, buffer_size=16):
    return SwappedPrototypeHead(
        lidar_channels=2, camera_channels=3, num_prototypes=num_prototypes, embed_dim=embed_dim,
        hidden_dim=8, embedding_buffer_size=buffer_size,
    )


def _head_loss(head, iteration):
    """Deterministic per-iteration inputs and RNG, so two runs of one iteration agree."""
    torch.manual_seed(1000 + iteration)
    lidar = torch.randn(1, 2, 2, 2, 3)
    camera = torch.randn(1, 3, 2, 2, 3)
    paired = torch.rand(1, 2, 2, 3) > 0.2
    out = head(lidar, camera, paired)
    return out["loss_swav"] + out["loss_em"]


def _analytic_gram_gradient(prototypes, term="mean_off_diagonal"):
    """d/dK of mean_{i != j} G_ij (row i: 2 (sum_j K_j - K_i) / (N (N - 1))) or of
    mean_{i != j} G_ij^2 (row i: 4 sum_{j != i} G_ij K_j / (N (N - 1))), G = K K^T."""
    n = prototypes.shape[0]
    if term == "mean_off_diagonal":
        return 2 * (prototypes.sum(dim=0, keepdim=True) - prototypes) / (n * (n - 1))
    gram = prototypes @ prototypes.t()
    off_diagonal = gram - torch.diag(gram.diagonal())
    return 4 * off_diagonal @ prototypes / (n * (n - 1))


@pytest.mark.parametrize(
    "scale, term",
    [(None, "mean_off_diagonal"), (1024.0, "mean_off_diagonal"),
     (None, "mean_squared_off_diagonal"), (1024.0, "mean_squared_off_diagonal")],
)
def test_gram_hook_changes_only_the_prototype_gradient(scale, term):
    torch.manual_seed(0)
    head = _tiny_head()
    hook = GramRegularizerHook(head, ConstantParamScheduler(0.1), term=term)
    grad_scaler = None if scale is None else _FakeGradScaler(scale)
    optimizer = torch.optim.SGD(head.parameters(), lr=0.1)
    trainer = _Trainer(head, optimizer, [hook], grad_scaler=grad_scaler)
    _head_loss(head, 0).backward()
    before = {name: p.grad.clone() for name, p in head.named_parameters()}

    hook.after_backward()

    for name, parameter in head.named_parameters():
        if name != "prototypes":
            assert torch.equal(parameter.grad, before[name]), name
    expected = 0.1 * _analytic_gram_gradient(head.prototypes.detach(), term) * (scale or 1.0)
    added = head.prototypes.grad - before["prototypes"]
    assert torch.count_nonzero(added) > 0
    assert torch.allclose(added, expected, rtol=1e-4, atol=1e-7 * (scale or 1.0))
    assert not head.prototypes.grad.requires_grad
    logged = trainer.storage.scalars
    assert set(logged) == {f"prototypes/gram_{term}", "prototypes/gram_weight"}
    assert logged["prototypes/gram_weight"] == pytest.approx(0.1)
    cosines = head.prototypes.detach() @ head.prototypes.detach().t()
    pairs = cosines[~torch.eye(4, dtype=torch.bool)]
    expected_gram = pairs.mean() if term == "mean_off_diagonal" else pairs.pow(2).mean()
    assert logged[f"prototypes/gram_{term}"] == pytest.approx(float(expected_gram), abs=1e-6)


def _em_driven_prototypes(term, steps=300):
    """Prototypes (16, 8) trained by the EM loss alone (paper weights w_EM = w_GMM = 0.1,
    tau = 1) on embeddings concentrated around one direction, with the Gram hook `term` and the
    EM hook's renormalisation, by plain SGD."""
    torch.manual_seed(0)
    head = SwappedPrototypeHead(
        lidar_channels=2, camera_channels=2, num_prototypes=16, embed_dim=8, hidden_dim=4,
        embedding_buffer_size=0, assignment_temperature=1.0, em_weight=0.1,
    )
    concentrated = F.normalize(F.one_hot(torch.zeros(64, dtype=torch.long), 8).float()
                               + 0.1 * torch.randn(64, 8), dim=1)
    head.embed = lambda *args: (concentrated, concentrated, torch.zeros(64, 2, dtype=torch.long))
    hooks = [
        PrototypeEMHook(head, period=steps),
        GramRegularizerHook(head, ConstantParamScheduler(0.1), term=term),
    ]
    trainer = _Trainer(head, torch.optim.SGD([head.prototypes], lr=10.0), hooks, max_iter=steps)
    volume, paired = torch.zeros(1, 2, 1, 1, 1), torch.ones(1, 1, 1, 1, dtype=torch.bool)
    trainer.train(lambda iteration: head(volume, volume, paired)["loss_em"], until=steps)
    return trainer.storage.scalars  # the EM hook's diagnostics at the end of its period


def test_em_loss_collapses_the_prototypes_under_the_literal_gram_term_only():
    literal = _em_driven_prototypes("mean_off_diagonal")
    assert literal["prototypes/top_singular_share"] > 0.9
    assert literal["prototypes/effective_rank"] < 2.0
    assert literal["prototypes/mean_squared_off_diagonal"] > 0.9
    # The literal term reads "healthy" (mean cosine near 0) on the collapsed prototypes.
    assert abs(literal["prototypes/gram_mean_off_diagonal"]) < 0.1

    squared = _em_driven_prototypes("mean_squared_off_diagonal")
    assert squared["prototypes/top_singular_share"] < 0.6
    assert squared["prototypes/effective_rank"] > 6.0
    assert squared["prototypes/mean_squared_off_diagonal"] < 0.3


def test_gram_hook_weight_follows_its_scheduler_and_fills_a_missing_gradient():
    head = _tiny_head()
    hook = GramRegularizerHook(head, CosineParamScheduler(0.2, 0.0))
    trainer = _Trainer(head, torch.optim.SGD(head.parameters(), lr=0.1), [hook], max_iter=10)
    trainer.iter = 5  # halfway: cosine weight is 0.1
    assert head.prototypes.grad is None
    hook.after_backward()
    assert trainer.storage.scalars["prototypes/gram_weight"] == pytest.approx(0.1)
    # The default term is the mean squared off-diagonal.
    expected = 0.1 * _analytic_gram_gradient(head.prototypes.detach(), "mean_squared_off_diagonal")
    assert torch.allclose(head.prototypes.grad, expected, rtol=1e-4, atol=1e-8)


def test_em_hook_renormalises_prototypes_after_each_step():
    head = _tiny_head()
    hook = PrototypeEMHook(head, period=3)
    trainer = _Trainer(head, torch.optim.SGD(head.parameters(), lr=0.5), [hook])
    with torch.no_grad():
        head.prototypes.mul_(torch.tensor([[0.5], [2.0], [3.0], [0.1]]))
    directions = F.normalize(head.prototypes.detach(), dim=1)
    hook.after_step()
    assert torch.allclose(head.prototypes.norm(dim=1), torch.ones(4), atol=1e-6)
    assert torch.allclose(head.prototypes, directions, atol=1e-6)
    # An optimizer step moves them off the sphere; the hook brings them back.
    trainer.run_step(lambda: _head_loss(head, 0) + 10 * head.prototypes.sum())
    assert torch.allclose(head.prototypes.norm(dim=1), torch.ones(4), atol=1e-6)


def test_em_hook_counts_usage_of_hand_made_assignments_and_logs_the_period():
    head = _tiny_head()
    hook = PrototypeEMHook(head, period=2)
    trainer = _Trainer(head, torch.optim.SGD(head.parameters(), lr=0.1), [hook])
    head.last_assignments = {"lidar": torch.tensor([0, 0, 2]), "camera": torch.tensor([0, 1, 2])}
    hook.after_step()  # iteration 0: counted, not yet the end of the period
    assert head.last_assignments is None  # consumed
    assert hook.usage_counts.tolist() == [[2, 0, 1, 0], [1, 1, 1, 0]]
    assert hook.agreement_counts.tolist() == [2, 3]
    assert trainer.storage.scalars == {}

    trainer.iter = 1
    head.last_assignments = {"lidar": torch.tensor([3]), "camera": torch.tensor([1])}
    hook.after_step()  # end of the period: logged and reset
    logged = trainer.storage.scalars
    lidar_probability = torch.tensor([2, 0, 1, 1]) / 4
    camera_probability = torch.tensor([1, 2, 1, 0]) / 4

    def perplexity(p):
        return math.exp(-sum(float(x) * math.log(float(x)) for x in p if x > 0))

    assert logged["prototypes/perplexity_lidar"] == pytest.approx(perplexity(lidar_probability))
    assert logged["prototypes/perplexity_camera"] == pytest.approx(perplexity(camera_probability))
    assert logged["prototypes/in_use_lidar"] == 3 and logged["prototypes/in_use_camera"] == 3
    assert logged["prototypes/agreement"] == pytest.approx(2 / 4)
    assert logged["prototypes/num_reseeded"] == 0
    spread = prototype_spread(head.prototypes)
    for name in ("top_singular_share", "mean_squared_off_diagonal", "effective_rank"):
        assert logged[f"prototypes/{name}"] == pytest.approx(spread[name])
    usage, bins = trainer.storage.histograms["prototypes/usage_fraction_lidar"]
    assert torch.allclose(usage, lidar_probability) and bins > 0
    assert hook.usage_counts.sum() == 0 and hook.agreement_counts.sum() == 0


def _fill_buffer(head, embeddings):
    with torch.no_grad():
        head.recent_embeddings[: embeddings.shape[0]] = embeddings
        head.recent_embeddings_written.fill_(embeddings.shape[0])


def test_em_hook_shows_a_collapse_of_the_embeddings():
    torch.manual_seed(0)
    head = _tiny_head(num_prototypes=4, embed_dim=3, buffer_size=16)
    hook = PrototypeEMHook(head, period=1)
    trainer = _Trainer(head, torch.optim.SGD(head.parameters(), lr=0.1), [hook])
    hook.after_step()  # nothing stored yet: no embedding diagnostic
    assert "prototypes/embedding_top_singular_share" not in trainer.storage.scalars
    _fill_buffer(head, torch.eye(3).repeat(3, 1))  # evenly spread
    hook.after_step()
    assert trainer.storage.scalars["prototypes/embedding_top_singular_share"] == pytest.approx(
        1 / 3, abs=1e-5
    )
    one_direction = F.normalize(torch.tensor([[1.0, 2.0, 2.0]]), dim=1)
    _fill_buffer(head, one_direction.repeat(9, 1))  # collapsed, K untouched
    hook.after_step()
    assert trainer.storage.scalars["prototypes/embedding_top_singular_share"] == pytest.approx(
        1.0, abs=1e-5
    )


@pytest.mark.parametrize("reseed", [True, False])
def test_em_hook_reseeds_dead_prototypes_only_when_enabled(reseed):
    torch.manual_seed(0)
    head = _tiny_head(num_prototypes=4, embed_dim=3)
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-3)
    hook = PrototypeEMHook(head, period=2, dead_threshold=2, reseed=reseed, seed=7)
    trainer = _Trainer(head, optimizer, [hook])
    trainer.run_step(lambda: _head_loss(head, 0) + head.prototypes.sum())  # Adam state exists
    assert hook.usage_counts.sum() > 0
    hook.usage_counts.zero_()
    hook.agreement_counts.zero_()
    stored = F.normalize(torch.randn(5, 3), dim=1)
    _fill_buffer(head, stored)
    trainer.iter = 1
    before = head.prototypes.detach().clone()
    # Prototype 1 used once, prototype 3 never: both below the threshold of 2.
    head.last_assignments = {
        "lidar": torch.tensor([0, 0, 2, 2]), "camera": torch.tensor([0, 1, 2, 0])
    }
    hook.after_step()

    dead, alive = [1, 3], [0, 2]
    assert torch.allclose(head.prototypes[alive], before[alive], atol=1e-6)
    assert torch.allclose(head.prototypes.norm(dim=1), torch.ones(4), atol=1e-6)
    if reseed:
        assert trainer.storage.scalars["prototypes/num_reseeded"] == 2
        cosine_to_stored = head.prototypes[dead].detach() @ stored.t()
        assert (cosine_to_stored.max(dim=1).values > 0.99).all()  # a stored embedding + jitter
        exp_avg = optimizer.state[head.prototypes]["exp_avg"]
        assert torch.count_nonzero(exp_avg[dead]) == 0
        assert torch.count_nonzero(exp_avg[alive]) > 0
    else:
        assert trainer.storage.scalars["prototypes/num_reseeded"] == 0
        assert torch.allclose(head.prototypes[dead], before[dead], atol=1e-6)


def test_em_hook_does_not_reseed_without_data_or_stored_embeddings():
    head = _tiny_head(buffer_size=0)
    hook = PrototypeEMHook(head, period=1, reseed=True)
    trainer = _Trainer(head, torch.optim.SGD(head.parameters(), lr=0.1), [hook])
    before = head.prototypes.detach().clone()
    hook.after_step()  # a period without any assignment: nothing is judged dead
    head.last_assignments = {"lidar": torch.tensor([0]), "camera": torch.tensor([0])}
    hook.after_step()  # 3 dead prototypes, but nothing to re-seed them from
    assert trainer.storage.scalars["prototypes/num_reseeded"] == 0
    assert torch.allclose(head.prototypes, before, atol=1e-6)


def test_em_hook_state_dict_round_trip_is_exact():
    head = _tiny_head()
    hook = PrototypeEMHook(head, period=5, reseed=True, seed=3)
    trainer = _Trainer(head, torch.optim.SGD(head.parameters(), lr=0.1), [hook])
    head.last_assignments = {"lidar": torch.tensor([1, 1, 3]), "camera": torch.tensor([2, 1, 0])}
    hook.after_step()
    torch.randn(4, generator=hook.generator)  # move the generator off its seed
    state = hook.state_dict()
    assert trainer.iter == 0

    fresh = PrototypeEMHook(_tiny_head(), period=5, reseed=True, seed=99)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.usage_counts, hook.usage_counts)
    assert torch.equal(fresh.agreement_counts, hook.agreement_counts)
    draws = [torch.rand(6, generator=h.generator) for h in (fresh, hook)]
    assert torch.equal(draws[0], draws[1])
    with pytest.raises(ValueError, match="NUM_PROTOTYPES"):
        PrototypeEMHook(_tiny_head(num_prototypes=6), period=5).load_state_dict(state)


def _resumable_run(start_iter, until, checkpoint=None, max_iter=7):
    torch.manual_seed(0)
    head = _tiny_head(num_prototypes=6, buffer_size=8)
    optimizer = torch.optim.Adam(head.parameters(), lr=0.05)
    hooks = [
        PrototypeEMHook(head, period=2, dead_threshold=3, reseed=True, seed=5),
        GramRegularizerHook(head, CosineParamScheduler(0.5, 0.0)),
    ]
    if checkpoint is not None:
        saved = torch.load(checkpoint, weights_only=True)
        head.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        hooks[0].load_state_dict(saved["PrototypeEMHook"])
    trainer = _Trainer(head, optimizer, hooks, max_iter=max_iter, start_iter=start_iter)
    trainer.train(lambda iteration: _head_loss(head, iteration), until=until)
    return head, hooks[0], optimizer, trainer


def test_resume_restores_prototypes_and_em_hook_state_exactly(tmp_path):
    # Reference: 7 uninterrupted iterations (re-seeding happens at the ends of the periods).
    reference_head, reference_hook, _, _ = _resumable_run(0, 7)
    # Interrupted: stop after 3 iterations (mid-period), save, resume into fresh objects.
    head, hook, optimizer, _ = _resumable_run(0, 3)
    assert hook.usage_counts.sum() > 0  # the saved state holds a half-finished period
    path = tmp_path / "checkpoint.pt"
    torch.save(
        {
            "model": head.state_dict(), "optimizer": optimizer.state_dict(),
            "PrototypeEMHook": hook.state_dict(),
        },
        path,
    )
    resumed_head, resumed_hook, _, resumed = _resumable_run(3, 7, checkpoint=path)
    # The last period (iterations 4-5) re-seeded prototypes after the resume.
    assert resumed.storage.scalars["prototypes/num_reseeded"] > 0

    assert torch.equal(resumed_head.prototypes, reference_head.prototypes)
    assert torch.equal(resumed_head.recent_embeddings, reference_head.recent_embeddings)
    assert torch.equal(resumed_hook.usage_counts, reference_hook.usage_counts)
    assert torch.equal(resumed_hook.agreement_counts, reference_hook.agreement_counts)
    assert torch.equal(resumed_hook.generator.get_state(), reference_hook.generator.get_state())
    unused = torch.Generator().manual_seed(5).get_state()
    assert not torch.equal(reference_hook.generator.get_state(), unused)


def test_ray_sampler_warmup_hook_switches_at_the_warmup_boundary():
    sampler = _CurvatureSamplerStandIn()
    hook = RaySamplerWarmupHook(sampler, warmup_iters=2)
    model = nn.Linear(1, 1)
    trainer = _Trainer(model, torch.optim.SGD(model.parameters(), lr=0.1), [hook])
    states = []
    for iteration in range(4):
        trainer.iter = iteration
        hook.before_step()
        states.append((sampler.use_uniform, trainer.storage.scalars["ray_sampler/uniform"]))
    assert states == [(True, 1), (True, 1), (False, 0), (False, 0)]
    assert hook.state_dict() == {}
    with pytest.raises(TypeError, match="use_uniform"):
        RaySamplerWarmupHook(object(), warmup_iters=2)


class _DistributedWrapper(nn.Module):
    def __init__(self, module):
        super().__init__()
        self.module = module


def test_build_clap_hooks_follows_the_config_and_the_model():
    cfg = get_cfg()
    cfg.MODEL.PROTOTYPE_HEAD.EM_PERIOD = 7
    cfg.MODEL.PROTOTYPE_HEAD.RESEED_DEAD = True
    cfg.MODEL.PROTOTYPE_HEAD.LOSS_WEIGHT = 2.0
    cfg.MODEL.PROTOTYPE_HEAD.GRAM_SCHEDULE = "cosine"
    head, sampler = _tiny_head(), _CurvatureSamplerStandIn()

    hooks = build_clap_hooks(cfg, _DistributedWrapper(_Model(head, sampler)), iters_per_epoch=10)
    assert [type(h) for h in hooks] == [PrototypeEMHook, GramRegularizerHook, RaySamplerWarmupHook]
    em_hook, gram_hook, warmup_hook = hooks
    assert em_hook.prototype_head is head and em_hook.period == 7 and em_hook.reseed
    assert gram_hook.weight_scheduler(0.0) == pytest.approx(2.0 * 0.1)  # w_proto * w_GMM
    assert gram_hook.weight_scheduler(1.0) == pytest.approx(0.0)
    assert gram_hook.term == "mean_squared_off_diagonal"
    assert warmup_hook.ray_sampler is sampler and warmup_hook.warmup_iters == 40  # 4 epochs

    assert build_clap_hooks(cfg, _Model(None, None), iters_per_epoch=10) == []
    no_switch = build_clap_hooks(cfg, _Model(None, object()), iters_per_epoch=10)
    assert no_switch == []  # a sampler without a warm-up switch needs no hook
    cfg.MODEL.PROTOTYPE_HEAD.GRAM_WEIGHT = 0.0
    assert [type(h) for h in build_clap_hooks(cfg, _Model(head), 10)] == [PrototypeEMHook]
    cfg.MODEL.PROTOTYPE_HEAD.GRAM_WEIGHT = 0.1
    cfg.MODEL.PROTOTYPE_HEAD.GRAM_TERM = "mean_off_diagonal"
    assert build_clap_hooks(cfg, _Model(head), 10)[1].term == "mean_off_diagonal"
    cfg.MODEL.PROTOTYPE_HEAD.GRAM_TERM = "frobenius"
    with pytest.raises(ValueError, match="GRAM_TERM"):
        build_clap_hooks(cfg, _Model(head), 10)
    cfg.MODEL.PROTOTYPE_HEAD.GRAM_TERM = "mean_off_diagonal"
    cfg.MODEL.PROTOTYPE_HEAD.GRAM_SCHEDULE = "linear"
    with pytest.raises(ValueError, match="GRAM_SCHEDULE"):
        build_clap_hooks(cfg, _Model(head), 10)


def _distributed_em_worker(rank, world_size, init_file, out_dir):
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size,
        timeout=timedelta(seconds=60),  # fail instead of hanging on a mismatched collective
    )
    try:
        torch.manual_seed(0)  # same initial prototypes on both ranks, as DDP guarantees
        head = _tiny_head(num_prototypes=4, embed_dim=3)
        # Different recent embeddings per rank; rank 0's re-seeded prototypes must win.
        _fill_buffer(head, F.normalize(torch.randn(3, 3) + 5 * rank, dim=1))
        hook = PrototypeEMHook(head, period=2, dead_threshold=1, reseed=True, seed=1)
        trainer = _Trainer(head, torch.optim.SGD(head.parameters(), lr=0.1), [hook])
        local = [
            {"lidar": torch.tensor([0, 0]), "camera": torch.tensor([0, 1])},
            {"lidar": torch.tensor([1, 1, 1]), "camera": torch.tensor([1, 1, 0])},
        ][rank]
        head.last_assignments = local
        hook.after_step()
        counts_after_first_step = hook.usage_counts.clone()
        agreement_after_first_step = hook.agreement_counts.clone()
        trainer.iter = 1
        if rank == 0:  # rank 1 saw no paired cell in this step
            head.last_assignments = {"lidar": torch.tensor([0]), "camera": torch.tensor([0])}
        hook.after_step()  # end of period: prototypes 2 and 3 are dead everywhere
        torch.save(
            {
                "counts": counts_after_first_step, "agreement": agreement_after_first_step,
                "prototypes": head.prototypes.detach().clone(),
                "num_reseeded": trainer.storage.scalars["prototypes/num_reseeded"],
            },
            f"{out_dir}/rank{rank}.pt",
        )
    finally:
        dist.destroy_process_group()


def test_em_hook_across_two_gloo_processes_reduces_counts_and_keeps_ranks_identical(tmp_path):
    mp.spawn(
        _distributed_em_worker,
        args=(2, str(tmp_path / "rendezvous"), str(tmp_path)),
        nprocs=2,
        join=True,
    )
    results = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    for result in results:
        assert result["counts"].tolist() == [[2, 3, 0, 0], [2, 3, 0, 0]]
        assert result["agreement"].tolist() == [3, 5]
        assert result["num_reseeded"] == 2
    assert torch.equal(results[0]["prototypes"], results[1]["prototypes"])

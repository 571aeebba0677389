"""CLAP-specific training hooks: prototype maintenance, the Gram regulariser, sampler warm-up.

These hooks change state (parameter values, gradients, sampler switches, statistics); none of
them adds to the autograd graph of the model's loss. They reach the trainer through the
interface documented on `HookBase` (`iter`, `max_iter`, `optimizer`, `storage`, `grad_scaler`)
and log only through `trainer.storage` (`put_scalar`, `put_histogram`).
"""

from typing import List, Optional

import torch
import torch.distributed as dist
import torch.nn.functional as F
from fvcore.common.param_scheduler import (
    ConstantParamScheduler,
    CosineParamScheduler,
    ParamScheduler,
)
from torch import nn

from clap.modeling.prototype_head import (
    get_gram_term,
    perplexity_from_counts,
    prototype_spread,
    reduction_world_size,
    top_singular_share,
)

from .train_loop import HookBase

_USAGE_HISTOGRAM_BINS = 64


class PrototypeEMHook(HookBase):
    """Keeps the prototypes on the unit sphere and tracks (and optionally repairs) their usage.

    After every iteration: renormalises each prototype to unit length (in place, no gradient)
    and adds the head's last hard assignments (`prototype_head.last_assignments`, consumed) to
    per-prototype usage counts for LiDAR and camera, all-reduced over ranks so that every rank
    holds the global counts. At the end of every `period` iterations it logs the period's
    statistics, re-seeds dead prototypes if `reseed` is on, and restarts the counts.

    Dead prototype: argmax of fewer than `dead_threshold` cells (both modalities together, all
    ranks) during the period; only judged when the period saw at least one paired cell. Each
    dead prototype is replaced by a random recent embedding (`prototype_head.stored_embeddings()`)
    plus Gaussian noise of std `reseed_jitter`, renormalised; the optimizer's per-element state
    (e.g. Adam moments) of those rows is zeroed. Draws use the hook's own generator (seeded with
    `seed`, saved in `state_dict`); under DDP rank 0's re-seeded prototypes are broadcast so all
    ranks stay identical.

    Logged every period (storage names), the collapse diagnostics:
    "prototypes/usage_fraction_{lidar,camera}" (histogram of the N_K per-prototype usage
    fractions), "prototypes/perplexity_{lidar,camera}" (exp entropy of the usage distribution),
    "prototypes/in_use_{lidar,camera}" (prototypes assigned at least once), "prototypes/agreement"
    (fraction of cells with the same LiDAR and camera prototype), "prototypes/num_reseeded", and
    the spread of K after any re-seeding (`prototype_spread`): "prototypes/top_singular_share",
    "prototypes/mean_squared_off_diagonal", "prototypes/effective_rank"; and, when the head has
    stored embeddings, "prototypes/embedding_top_singular_share" (`top_singular_share` of the
    stored recent embeddings, LiDAR and camera mixed), which shows a collapse of the embeddings
    onto one direction that K's spread and the argmax usage do not.

    Register it before the periodic checkpointer so a checkpoint includes the iteration's counts.
    """

    def __init__(
        self,
        prototype_head: nn.Module,
        period: int,
        dead_threshold: int = 1,
        reseed: bool = False,
        reseed_jitter: float = 0.01,
        seed: int = 0,
    ):
        """
        Args:
            prototype_head: module with `prototypes` (N_K, d_K), `last_assignments` and
                `stored_embeddings()` (see `PROTOTYPE_HEAD_REGISTRY`).
            period: iterations per statistics period (>= 1).
            dead_threshold: usage count below which a prototype counts as dead.
            reseed: re-seed dead prototypes at the end of each period.
            reseed_jitter: std of the noise added to a re-seeding embedding (unit-vector scale).
            seed: seed of the re-seeding generator.
        """
        if period < 1:
            raise ValueError(f"PrototypeEMHook period must be >= 1 iteration, got {period}")
        self.prototype_head = prototype_head
        self.period = period
        self.dead_threshold = dead_threshold
        self.reseed = reseed
        self.reseed_jitter = reseed_jitter
        self.generator = torch.Generator().manual_seed(seed)
        num_prototypes = prototype_head.prototypes.shape[0]
        # Global (all-rank) counts of the current period: row 0 LiDAR, row 1 camera.
        self.usage_counts = torch.zeros(2, num_prototypes, dtype=torch.long)
        # Global counts of the current period: [cells with equal assignments, cells].
        self.agreement_counts = torch.zeros(2, dtype=torch.long)

    def after_step(self):
        self.renormalize_prototypes()
        self.accumulate_usage()
        if (self.trainer.iter + 1) % self.period == 0:
            self.end_period()

    @torch.no_grad()
    def renormalize_prototypes(self) -> None:
        """Project every prototype back onto the unit sphere, in place."""
        prototypes = self.prototype_head.prototypes
        prototypes.copy_(F.normalize(prototypes, dim=1))

    @torch.no_grad()
    def accumulate_usage(self) -> None:
        """Add the head's last assignments (all ranks) to the period's counts and consume them."""
        num_prototypes = self.usage_counts.shape[1]
        device = self.prototype_head.prototypes.device
        step_counts = torch.zeros(2 * num_prototypes + 2, dtype=torch.long, device=device)
        last = self.prototype_head.last_assignments
        self.prototype_head.last_assignments = None
        if last is not None:
            lidar, camera = last["lidar"].to(device), last["camera"].to(device)
            step_counts[:num_prototypes] = torch.bincount(lidar, minlength=num_prototypes)
            step_counts[num_prototypes : 2 * num_prototypes] = torch.bincount(
                camera, minlength=num_prototypes
            )
            step_counts[-2] = (lidar == camera).sum()
            step_counts[-1] = lidar.numel()
        # Every rank reduces every iteration (also without assignments) so the calls line up.
        if reduction_world_size() > 1:
            dist.all_reduce(step_counts)
        step_counts = step_counts.cpu()
        self.usage_counts += step_counts[: 2 * num_prototypes].view(2, num_prototypes)
        self.agreement_counts += step_counts[-2:]

    def end_period(self) -> None:
        """Log the period's statistics, re-seed dead prototypes if enabled, reset the counts."""
        counts = self.usage_counts
        num_reseeded = 0
        if self.reseed and counts.sum() > 0:
            dead = torch.nonzero(counts.sum(dim=0) < self.dead_threshold).flatten()
            if dead.numel() > 0:
                num_reseeded = self.reseed_prototypes(dead)

        storage = self.trainer.storage
        perplexity = perplexity_from_counts(counts)
        cells = self.agreement_counts[1].clamp(min=1)
        for row, modality in enumerate(("lidar", "camera")):
            fraction = counts[row].float() / counts[row].sum().clamp(min=1)
            storage.put_histogram(
                f"prototypes/usage_fraction_{modality}", fraction, bins=_USAGE_HISTOGRAM_BINS
            )
            storage.put_scalar(f"prototypes/perplexity_{modality}", float(perplexity[row]))
            storage.put_scalar(f"prototypes/in_use_{modality}", int((counts[row] > 0).sum()))
        storage.put_scalar("prototypes/agreement", float(self.agreement_counts[0] / cells))
        storage.put_scalar("prototypes/num_reseeded", num_reseeded)
        for name, value in prototype_spread(self.prototype_head.prototypes).items():
            storage.put_scalar(f"prototypes/{name}", value)
        embeddings = self.prototype_head.stored_embeddings()
        if embeddings.shape[0] > 0:
            storage.put_scalar(
                "prototypes/embedding_top_singular_share", top_singular_share(embeddings)
            )
        self.usage_counts.zero_()
        self.agreement_counts.zero_()

    @torch.no_grad()
    def reseed_prototypes(self, dead: torch.Tensor) -> int:
        """Replace the prototypes `dead` (long indices) by jittered recent embeddings.

        Every rank must call this with the same `dead` (it is derived from all-reduced counts).

        Returns:
            Number of prototypes re-seeded (0 when some rank has no stored embeddings).
        """
        prototypes = self.prototype_head.prototypes
        candidates = self.prototype_head.stored_embeddings()
        available = torch.tensor(candidates.shape[0], device=prototypes.device)
        if reduction_world_size() > 1:
            dist.all_reduce(available, op=dist.ReduceOp.MIN)
        if int(available) == 0:
            return 0
        num_dead, num_candidates = dead.numel(), candidates.shape[0]
        if num_candidates >= num_dead:
            pick = torch.randperm(num_candidates, generator=self.generator)[:num_dead]
        else:
            pick = torch.randint(num_candidates, (num_dead,), generator=self.generator)
        noise = torch.randn(num_dead, prototypes.shape[1], generator=self.generator)
        seeds = candidates[pick.to(candidates.device)].float()
        seeds = seeds + self.reseed_jitter * noise.to(seeds.device)
        dead_on_device = dead.to(prototypes.device)
        prototypes[dead_on_device] = F.normalize(seeds, dim=1).to(prototypes.dtype)
        if reduction_world_size() > 1:
            dist.broadcast(prototypes.data, src=0)
        self._reset_optimizer_rows(prototypes, dead_on_device)
        return num_dead

    def _reset_optimizer_rows(self, prototypes: torch.Tensor, rows: torch.Tensor) -> None:
        """Zero the optimizer's per-element state (same shape as the prototypes) at `rows`."""
        optimizer = getattr(self.trainer, "optimizer", None)
        if optimizer is None:
            return
        for value in optimizer.state.get(prototypes, {}).values():
            if torch.is_tensor(value) and value.shape == prototypes.shape:
                value[rows] = 0

    def state_dict(self) -> dict:
        return {
            "usage_counts": self.usage_counts.clone(),
            "agreement_counts": self.agreement_counts.clone(),
            "generator_state": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        if tuple(state["usage_counts"].shape) != tuple(self.usage_counts.shape):
            raise ValueError(
                "PrototypeEMHook state: usage_counts has shape "
                f"{tuple(state['usage_counts'].shape)}, expected {tuple(self.usage_counts.shape)} "
                "(2, MODEL.PROTOTYPE_HEAD.NUM_PROTOTYPES)"
            )
        self.usage_counts.copy_(state["usage_counts"])
        self.agreement_counts.copy_(state["agreement_counts"])
        self.generator.set_state(state["generator_state"])


class GramRegularizerHook(HookBase):
    """Adds the gradient of w_GMM * L_GMM(K) to the prototypes' gradient after the backward pass.

    L_GMM is the Gram term `term` (a name in `clap.modeling.prototype_head.GRAM_TERMS`; the
    default penalises the squared off-diagonal of K K^T). Its gradient is computed on a
    detached leaf copy of K, so only `prototypes.grad` changes; with AMP (`trainer.grad_scaler`
    not None) it is multiplied by the scaler's current scale, like the gradients of the loss.
    The trainer must call `after_backward` before it unscales the gradients.

    The weight is `weight_scheduler(iter / max_iter)` (an fvcore ParamScheduler; include w_proto
    in it). Logged each iteration: "prototypes/gram_<term>" (L_GMM before weighting, named by its
    form) and "prototypes/gram_weight". Whether K has collapsed is read from the diagnostics of
    `PrototypeEMHook`, not from this value (the literal form reads near 0 for a collapsed K).
    """

    def __init__(
        self, prototype_head: nn.Module, weight_scheduler: ParamScheduler,
        term: str = "mean_squared_off_diagonal",
    ):
        self.prototype_head = prototype_head
        self.weight_scheduler = weight_scheduler
        self.term = term
        self.gram_term = get_gram_term(term)

    def after_backward(self):
        trainer = self.trainer
        weight = float(self.weight_scheduler(trainer.iter / max(trainer.max_iter, 1)))
        prototypes = self.prototype_head.prototypes
        leaf = prototypes.detach().clone().float().requires_grad_(True)
        with torch.enable_grad():
            gram = self.gram_term(leaf)
            (gradient,) = torch.autograd.grad(gram, leaf)
        if weight != 0.0:
            gradient = gradient * weight
            grad_scaler = getattr(trainer, "grad_scaler", None)
            if grad_scaler is not None:
                gradient = gradient * grad_scaler.get_scale()
            gradient = gradient.to(prototypes.dtype)
            if prototypes.grad is None:
                prototypes.grad = gradient
            else:
                prototypes.grad.add_(gradient)
        trainer.storage.put_scalar(f"prototypes/gram_{self.term}", float(gram.detach()))
        trainer.storage.put_scalar("prototypes/gram_weight", weight)


class RaySamplerWarmupHook(HookBase):
    """Uniform ray sampling for the first `warmup_iters` iterations, then the sampler's own rule.

    Before each iteration sets `ray_sampler.use_uniform = trainer.iter < warmup_iters` and logs
    it as "ray_sampler/uniform" (1 or 0). Stateless: the switch follows from `trainer.iter`.
    """

    def __init__(self, ray_sampler, warmup_iters: int):
        if not hasattr(ray_sampler, "use_uniform"):
            raise TypeError(
                f"RaySamplerWarmupHook: {type(ray_sampler).__name__} has no `use_uniform` "
                "attribute to switch"
            )
        self.ray_sampler = ray_sampler
        self.warmup_iters = warmup_iters

    def before_step(self):
        uniform = self.trainer.iter < self.warmup_iters
        self.ray_sampler.use_uniform = uniform
        self.trainer.storage.put_scalar("ray_sampler/uniform", int(uniform))


def build_gram_weight_scheduler(cfg) -> ParamScheduler:
    """w_proto * w_GMM over training, from MODEL.PROTOTYPE_HEAD.GRAM_SCHEDULE."""
    head_cfg = cfg.MODEL.PROTOTYPE_HEAD
    weight = head_cfg.LOSS_WEIGHT * head_cfg.GRAM_WEIGHT
    if head_cfg.GRAM_SCHEDULE == "constant":
        return ConstantParamScheduler(weight)
    if head_cfg.GRAM_SCHEDULE == "cosine":
        return CosineParamScheduler(weight, 0.0)
    raise ValueError(
        f"MODEL.PROTOTYPE_HEAD.GRAM_SCHEDULE must be 'constant' or 'cosine', "
        f"got {head_cfg.GRAM_SCHEDULE!r}"
    )


def build_clap_hooks(cfg, model: nn.Module, iters_per_epoch: int) -> List[HookBase]:
    """The CLAP hooks for `model` (possibly DDP-wrapped), in the order to register them.

    - `PrototypeEMHook` and (when w_proto * w_GMM != 0) `GramRegularizerHook` if the model has a
      `prototype_head`;
    - `RaySamplerWarmupHook` if the model has a `ray_sampler` with a `use_uniform` switch, for
      the sampler's `warmup_epochs` (MODEL.RAY_SAMPLER.WARMUP_EPOCHS for `Curvature`) epochs
      of `iters_per_epoch` iterations.
    A missing or None attribute skips its hooks.
    """
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    hooks: List[HookBase] = []
    head: Optional[nn.Module] = getattr(model, "prototype_head", None)
    if head is not None:
        head_cfg = cfg.MODEL.PROTOTYPE_HEAD
        hooks.append(
            PrototypeEMHook(
                head,
                period=head_cfg.EM_PERIOD,
                dead_threshold=head_cfg.DEAD_THRESHOLD,
                reseed=head_cfg.RESEED_DEAD,
                seed=max(cfg.SEED, 0),
            )
        )
        if head_cfg.LOSS_WEIGHT * head_cfg.GRAM_WEIGHT != 0:
            hooks.append(
                GramRegularizerHook(
                    head, build_gram_weight_scheduler(cfg), term=head_cfg.GRAM_TERM
                )
            )
    ray_sampler = getattr(model, "ray_sampler", None)
    if ray_sampler is not None and hasattr(ray_sampler, "use_uniform"):
        warmup_iters = int(round(ray_sampler.warmup_epochs * iters_per_epoch))
        hooks.append(RaySamplerWarmupHook(ray_sampler, warmup_iters))
    return hooks

"""Prototype head: Sinkhorn codes (single process and across gloo ranks), losses, Gram term."""

import math
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from clap.config import get_cfg
from clap.layers import ShapeSpec
from clap.modeling.prototype_head import (
    SwappedPrototypeHead,
    build_prototype_head,
    get_gram_term,
    gram_mean_off_diagonal,
    gram_mean_squared_off_diagonal,
    prototype_spread,
    sinkhorn_knopp,
)


def _balanced_scores(num_prototypes=6, per_prototype=3, noise=0.002, seed=0):
    """Circulant similarity profile (every prototype equally favoured) plus a little noise."""
    generator = torch.Generator().manual_seed(seed)
    profile = torch.rand(num_prototypes, generator=generator) * 2 - 1
    sample = torch.arange(num_prototypes * per_prototype)[:, None]
    prototype = torch.arange(num_prototypes)[None]
    scores = profile[(sample - prototype) % num_prototypes]
    return scores + noise * torch.randn(scores.shape, generator=generator)


def test_sinkhorn_codes_are_doubly_stochastic_on_a_balanced_case():
    scores = _balanced_scores()
    num_samples, num_prototypes = scores.shape
    codes = sinkhorn_knopp(scores, num_iters=3, epsilon=0.05)
    # Returned codes: every sample's row is a distribution over prototypes (sums to 1), i.e.
    # the transport plan codes / B has rows summing to 1/B ...
    plan = codes / num_samples
    assert torch.allclose(plan.sum(dim=1), torch.full((num_samples,), 1 / num_samples), atol=1e-6)
    # ... and columns (prototypes) summing to 1/K within 1e-3 (relative to 1/K).
    column_error = (plan.sum(dim=0) * num_prototypes - 1).abs().max()
    assert column_error < 1e-3
    # Before any iteration the plan exp(scores / epsilon) is far from balanced.
    start = sinkhorn_knopp(scores, num_iters=0, epsilon=0.05)
    assert (start.sum(dim=1) - 1).abs().max() > 1e-2
    assert (codes >= 0).all()


def test_sinkhorn_makes_a_skewed_batch_use_every_prototype():
    # Every sample prefers prototype 0; the equipartition spreads the codes over all prototypes.
    scores = torch.tensor([[0.9, 0.5, 0.4, 0.1]] * 8) + 0.01 * torch.randn(8, 4)
    codes = sinkhorn_knopp(scores, num_iters=3, epsilon=0.05)
    assert torch.allclose(codes.sum(dim=1), torch.ones(8), atol=1e-5)
    assert (codes.sum(dim=0) > 1.0).all()  # B/K = 2 per prototype, none left empty
    assert torch.softmax(scores / 0.05, dim=1).argmax(dim=1).eq(0).all()


def test_sinkhorn_solves_leading_dimensions_independently():
    first, second = _balanced_scores(seed=1), torch.rand(18, 6)
    stacked = sinkhorn_knopp(torch.stack([first, second]), 3, 0.05)
    assert torch.allclose(stacked[0], sinkhorn_knopp(first, 3, 0.05), atol=1e-6)
    assert torch.allclose(stacked[1], sinkhorn_knopp(second, 3, 0.05), atol=1e-6)


def _sinkhorn_worker(rank, world_size, init_file, scores, splits, out_dir):
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size,
        timeout=timedelta(seconds=60),  # fail instead of hanging on a mismatched collective
    )
    try:
        start = sum(splits[:rank])
        local = scores[:, start : start + splits[rank]]
        codes = sinkhorn_knopp(local, num_iters=3, epsilon=0.05)
        # A rank without samples must still take part and return an empty result.
        only_rank0 = scores[0, : splits[0]] if rank == 0 else scores[0, :0]
        codes_rank0_only = sinkhorn_knopp(only_rank0, num_iters=3, epsilon=0.05)
        torch.save(
            {"codes": codes, "codes_rank0_only": codes_rank0_only}, f"{out_dir}/rank{rank}.pt"
        )
    finally:
        dist.destroy_process_group()


def test_sinkhorn_across_two_gloo_processes_matches_single_process(tmp_path):
    generator = torch.Generator().manual_seed(3)
    scores = F.normalize(torch.randn(2, 11, 4, generator=generator), dim=-1)  # 2 problems
    splits = [5, 6]
    mp.spawn(
        _sinkhorn_worker,
        args=(2, str(tmp_path / "rendezvous"), scores, splits, str(tmp_path)),
        nprocs=2,
        join=True,
    )
    results = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    distributed = torch.cat([r["codes"] for r in results], dim=1)
    assert distributed.shape == (2, 11, 4)
    assert torch.allclose(distributed, sinkhorn_knopp(scores, 3, 0.05), atol=1e-5)

    alone = sinkhorn_knopp(scores[0, : splits[0]], 3, 0.05)
    assert torch.allclose(results[0]["codes_rank0_only"], alone, atol=1e-5)
    assert results[1]["codes_rank0_only"].shape == (0, 4)


def test_literal_gram_term_is_the_mean_off_diagonal_cosine_and_blind_to_collapse():
    prototypes = F.normalize(torch.randn(5, 3), dim=1)
    pairs = [
        float(prototypes[i] @ prototypes[j]) for i in range(5) for j in range(5) if i != j
    ]
    literal = gram_mean_off_diagonal(prototypes)
    assert float(literal) == pytest.approx(sum(pairs) / len(pairs), abs=1e-6)
    closed_form = (prototypes.sum(0).pow(2).sum() - 5) / 20
    assert float(literal) == pytest.approx(float(closed_form), abs=1e-6)
    # Two antipodal clusters (a collapse to one line) reach the literal term's minimum,
    # -1 / (N - 1), below any spread configuration; the squared term is at its maximum there.
    direction = F.normalize(torch.randn(1, 3), dim=1)
    collapsed = torch.cat([direction.expand(3, 3), -direction.expand(3, 3)])
    assert float(gram_mean_off_diagonal(collapsed)) == pytest.approx(-1 / 5, abs=1e-6)
    assert float(gram_mean_squared_off_diagonal(collapsed)) == pytest.approx(1.0, abs=1e-6)


def test_squared_gram_term_is_minimal_for_spread_prototypes():
    orthonormal = torch.eye(4)
    assert float(gram_mean_squared_off_diagonal(orthonormal)) == pytest.approx(0.0)
    # A tight frame of N = 4 unit vectors in d = 2 (every 45 degrees): the minimum over unit
    # rows, (N / d - 1) / (N - 1) = 1 / 3, below a random set of 4 unit vectors.
    angles = torch.arange(4) * math.pi / 4
    frame = torch.stack([angles.cos(), angles.sin()], dim=1)
    assert float(gram_mean_squared_off_diagonal(frame)) == pytest.approx(1 / 3, abs=1e-6)
    generator = torch.Generator().manual_seed(0)
    for _ in range(5):
        random = F.normalize(torch.randn(4, 2, generator=generator), dim=1)
        assert float(gram_mean_squared_off_diagonal(random)) >= 1 / 3 - 1e-6
    identity_form = (frame @ frame.t() - torch.eye(4)).pow(2).sum() / (4 * 3)
    assert float(gram_mean_squared_off_diagonal(frame)) == pytest.approx(float(identity_form))
    assert get_gram_term("mean_squared_off_diagonal") is gram_mean_squared_off_diagonal
    with pytest.raises(ValueError, match="GRAM_TERM"):
        get_gram_term("mean")
    with pytest.raises(ValueError, match="at least 2"):
        gram_mean_squared_off_diagonal(torch.ones(1, 3))


def test_prototype_spread_tells_collapse_from_spread():
    direction = F.normalize(torch.randn(1, 4), dim=1)
    collapsed = prototype_spread(torch.cat([direction.expand(5, 4), -direction.expand(3, 4)]))
    assert collapsed["top_singular_share"] == pytest.approx(1.0, abs=1e-5)
    assert collapsed["effective_rank"] == pytest.approx(1.0, abs=1e-3)
    assert collapsed["mean_squared_off_diagonal"] == pytest.approx(1.0, abs=1e-5)
    # Two copies of an orthonormal basis of R^4: equal singular values.
    spread = prototype_spread(torch.cat([torch.eye(4), -torch.eye(4)]))
    assert spread["top_singular_share"] == pytest.approx(1 / 4, abs=1e-5)
    assert spread["effective_rank"] == pytest.approx(4.0, abs=1e-4)
    assert spread["mean_squared_off_diagonal"] == pytest.approx(8 / 56, abs=1e-6)


def _tiny_head(**overrides):
    arguments = dict(
        lidar_channels=4, camera_channels=4, num_prototypes=8, embed_dim=6, hidden_dim=16,
        embedding_buffer_size=32,
    )
    arguments.update(overrides)
    return SwappedPrototypeHead(**arguments)


def _volumes(batch=2, channels=4, grid=(2, 3, 4), seed=0):
    generator = torch.Generator().manual_seed(seed)
    lidar = torch.randn((batch, channels) + grid, generator=generator)
    camera = torch.randn((batch, channels) + grid, generator=generator)
    paired = torch.rand((batch,) + grid, generator=generator) > 0.3
    return lidar, camera, paired


def test_head_built_from_config_returns_losses_and_statistics():
    cfg = get_cfg()
    cfg.MODEL.PROTOTYPE_HEAD.NUM_PROTOTYPES = 16
    cfg.MODEL.PROTOTYPE_HEAD.EMBED_DIM = 8
    cfg.MODEL.PROTOTYPE_HEAD.PROJ_HIDDEN_DIM = 12
    cfg.MODEL.PROTOTYPE_HEAD.ASSIGNMENT_TEMPERATURE = 0.2
    cfg.MODEL.PROTOTYPE_HEAD.SINKHORN_TEMPERATURE = 0.03
    head = build_prototype_head(cfg, ShapeSpec(channels=5), ShapeSpec(channels=3))
    assert isinstance(head, SwappedPrototypeHead)
    assert head.assignment_temperature == 0.2 and head.sinkhorn_temperature == 0.03
    assert head.prototypes.shape == (16, 8)
    assert torch.allclose(head.prototypes.norm(dim=1), torch.ones(16), atol=1e-6)

    generator = torch.Generator().manual_seed(0)
    lidar = torch.randn(2, 5, 2, 3, 4, generator=generator)
    camera = torch.randn(2, 3, 2, 3, 4, generator=generator)
    paired = torch.zeros(2, 2, 3, 4, dtype=torch.bool)
    paired[0, 1, 2, 3] = paired[1, 0, 0, 1] = paired[1, 1, 1, 1] = True
    out = head(lidar, camera, paired)
    assert out["loss_swav"].dim() == 0 and out["loss_swav"].requires_grad
    assert out["loss_em"].dim() == 0 and out["loss_em"].requires_grad
    assert int(out["num_paired_cells"]) == 3
    assert out["paired_cell_index"].tolist() == [[0, 1 * 12 + 2 * 4 + 3], [1, 1], [1, 12 + 4 + 1]]
    for modality in ("lidar", "camera"):
        assignment = out[f"assignment_{modality}"]
        assert assignment.shape == (3,) and assignment.dtype == torch.long
        assert not assignment.requires_grad
        assert 1.0 <= float(out[f"perplexity_{modality}"]) <= 3.0
        assert torch.equal(head.last_assignments[modality], assignment)
    expected = (out["assignment_lidar"] == out["assignment_camera"]).float().mean()
    assert float(out["agreement"]) == pytest.approx(float(expected))
    # Six unit embeddings (3 cells x 2 modalities) went into the ring buffer.
    stored = head.stored_embeddings()
    assert stored.shape == (6, 8) and not stored.requires_grad
    assert torch.allclose(stored.norm(dim=1), torch.ones(6), atol=1e-5)


def test_head_subsamples_paired_cells_and_rejects_mismatched_inputs():
    head = _tiny_head(max_paired_cells=5)
    lidar, camera, paired = _volumes()
    assert int(paired.sum()) > 5
    out = head(lidar, camera, paired)
    assert int(out["num_paired_cells"]) == 5
    chosen = out["paired_cell_index"]
    assert paired.flatten(1)[chosen[:, 0], chosen[:, 1]].all()
    with pytest.raises(ValueError, match="paired mask"):
        head(lidar, camera, paired[:, :1])
    with pytest.raises(ValueError, match="bool"):
        head(lidar, camera, paired.float())


def test_ring_buffer_keeps_the_most_recent_embeddings():
    head = _tiny_head(embedding_buffer_size=4)
    lidar, camera, paired = _volumes()
    paired = torch.zeros_like(paired)
    paired[0, 0, 0, 0] = True  # one cell: 2 embeddings per forward
    written = []
    for seed in range(3):
        lidar, camera, _ = _volumes(seed=seed)
        head(lidar, camera, paired)
        lidar_embedding, camera_embedding, _ = head.embed(lidar, camera, paired)
        written += [lidar_embedding[0], camera_embedding[0]]
    assert int(head.recent_embeddings_written) == 6
    stored = head.stored_embeddings()
    # Ring positions: writes 4, 5 overwrote rows 0, 1.
    expected = torch.stack([written[4], written[5], written[2], written[3]])
    assert torch.allclose(stored, expected, atol=1e-6)


def test_no_paired_cells_gives_zero_losses_connected_to_every_parameter():
    head = _tiny_head()
    lidar, camera, paired = _volumes()
    out = head(lidar, camera, torch.zeros_like(paired))
    assert out["loss_swav"].item() == 0.0 and out["loss_em"].item() == 0.0
    assert int(out["num_paired_cells"]) == 0
    (out["loss_swav"] + out["loss_em"]).backward()
    for name, parameter in head.named_parameters():
        assert parameter.grad is not None, name
        assert torch.count_nonzero(parameter.grad) == 0, name


def _fixed_embeddings(head, lidar_embeddings, camera_embeddings):
    """Replace the head's projection by given unit embeddings (N, d_K)."""
    cell_index = torch.zeros(lidar_embeddings.shape[0], 2, dtype=torch.long)
    head.embed = lambda *args: (lidar_embeddings, camera_embeddings, cell_index)


def test_em_loss_equals_hand_computed_entropy():
    head = _tiny_head(
        num_prototypes=2, embed_dim=2, em_weight=0.5, loss_weight=2.0, assignment_temperature=1.0
    )
    with torch.no_grad():
        head.prototypes.copy_(torch.eye(2))
    diagonal = torch.tensor([[1.0, 1.0]]) / math.sqrt(2)
    # Cell 0: LiDAR on prototype 0, camera on prototype 1. Cell 1: both halfway.
    lidar = torch.cat([torch.tensor([[1.0, 0.0]]), diagonal])
    camera = torch.cat([torch.tensor([[0.0, 1.0]]), diagonal])
    _fixed_embeddings(head, lidar, camera)
    out = head(*_volumes())

    # Similarities (1, 0): p = (e / (e + 1), 1 / (e + 1)); equal similarities: p = (1/2, 1/2).
    p = math.e / (math.e + 1)
    entropy_sharp = -(p * math.log(p) + (1 - p) * math.log(1 - p))
    entropy_flat = math.log(2)
    em = (2 * entropy_sharp + 2 * entropy_flat) / 2  # mean over 2 cells of H(p_P) + H(p_I)
    assert out["loss_em"].item() == pytest.approx(2.0 * 0.5 * em, rel=1e-5)


def test_temperature_sharpens_the_assignment():
    lidar = F.normalize(torch.randn(10, 6), dim=1)
    camera = F.normalize(torch.randn(10, 6), dim=1)
    losses = []
    for temperature in (1.0, 0.1):
        head = _tiny_head(assignment_temperature=temperature, em_weight=1.0)
        torch.manual_seed(0)
        with torch.no_grad():
            head.prototypes.copy_(F.normalize(torch.randn(8, 6), dim=1))
        _fixed_embeddings(head, lidar, camera)
        losses.append(head(*_volumes())["loss_em"].item())
    assert losses[1] < losses[0] <= 2 * math.log(8) + 1e-5


def test_default_temperature_lets_the_em_loss_leave_its_uniform_value():
    # 512 unit prototypes of 128 dims, every cell embedded exactly on a prototype: the best case.
    cfg = get_cfg()
    uniform = 2 * math.log(512)
    entropies = {}
    for temperature in (1.0, cfg.MODEL.PROTOTYPE_HEAD.ASSIGNMENT_TEMPERATURE):
        cfg.MODEL.PROTOTYPE_HEAD.ASSIGNMENT_TEMPERATURE = temperature
        head = build_prototype_head(cfg, ShapeSpec(channels=4), ShapeSpec(channels=4))
        on_prototypes = head.prototypes.detach()[:64]
        _fixed_embeddings(head, on_prototypes, on_prototypes)
        entropies[temperature] = head(*_volumes())["loss_em"].item() / head.em_weight
    # At tau = 1 the softmax cannot exceed e / (e + 511 e^-1) = 0.014: L_EM stays near uniform.
    assert entropies[1.0] > 0.95 * uniform
    assert min(entropies.values()) < 0.1 * uniform


def test_swav_loss_is_lower_when_modalities_agree_than_when_shuffled():
    torch.manual_seed(0)
    head = _tiny_head(num_prototypes=16, embed_dim=8, assignment_temperature=0.1)
    lidar_embeddings = F.normalize(torch.randn(64, 8), dim=1)
    camera_embeddings = F.normalize(lidar_embeddings + 0.1 * torch.randn(64, 8), dim=1)
    volumes = _volumes()

    _fixed_embeddings(head, lidar_embeddings, camera_embeddings)
    agreeing = head(*volumes)
    _fixed_embeddings(head, lidar_embeddings, camera_embeddings[torch.randperm(64)])
    shuffled = head(*volumes)
    assert agreeing["loss_swav"].item() < shuffled["loss_swav"].item() - 0.1
    assert float(agreeing["agreement"]) > float(shuffled["agreement"])


def test_swav_loss_matches_the_swapped_cross_entropy_of_sinkhorn_codes():
    head = _tiny_head(
        swav_weight=0.5, loss_weight=3.0, assignment_temperature=0.5, sinkhorn_temperature=0.2
    )
    lidar = F.normalize(torch.randn(12, 6), dim=1)
    camera = F.normalize(torch.randn(12, 6), dim=1)
    _fixed_embeddings(head, lidar, camera)
    out = head(*_volumes())

    prototypes = head.prototypes.detach()
    s_lidar, s_camera = lidar @ prototypes.t(), camera @ prototypes.t()
    q_lidar, q_camera = sinkhorn_knopp(s_lidar, 3, 0.2), sinkhorn_knopp(s_camera, 3, 0.2)
    cross_entropy = -(q_camera * F.log_softmax(s_lidar / 0.5, dim=1)).sum(1)
    cross_entropy -= (q_lidar * F.log_softmax(s_camera / 0.5, dim=1)).sum(1)
    assert out["loss_swav"].item() == pytest.approx(1.5 * float(cross_entropy.mean()), rel=1e-5)


def test_swav_gradient_does_not_flow_through_the_codes():
    head = _tiny_head()
    lidar, camera, paired = _volumes()
    head(lidar, camera, paired)["loss_swav"].backward()
    assert head.prototypes.grad is not None
    assert torch.count_nonzero(head.prototypes.grad) > 0
    assert torch.count_nonzero(head.lidar_projection[0].weight.grad) > 0
    assert torch.count_nonzero(head.camera_projection[0].weight.grad) > 0


def test_losses_stay_float32_under_autocast():
    head = _tiny_head()
    volumes = _volumes()
    reference = head(*volumes)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = head(*volumes)
    for key in ("loss_swav", "loss_em"):
        assert mixed[key].dtype == torch.float32
        assert mixed[key].item() == pytest.approx(reference[key].item(), rel=0.05)
    mixed["loss_swav"].backward()
    assert head.prototypes.grad.dtype == torch.float32


def test_sinkhorn_queue_gives_few_cells_sharp_swap_targets():
    # Two cells, both modalities on prototype 0, and 8 prototypes: equipartition over the two
    # cells alone spreads their codes over every prototype, so the swap loss rewards flat
    # assignments; with earlier embeddings (one near each prototype) in the equipartition the
    # codes of the two cells point at prototype 0, and the loss of the sharp assignment is low.
    losses = {}
    for queue_size in (0, 32):
        torch.manual_seed(0)
        head = _tiny_head(sinkhorn_queue_size=queue_size, assignment_temperature=0.1)
        prototypes = head.prototypes.detach()
        if queue_size:
            head.queue.copy_(prototypes.repeat(2, 4, 1))
            head.queue_filled.fill_(queue_size)
        cells = prototypes[:1].repeat(2, 1)
        _fixed_embeddings(head, cells, cells)
        losses[queue_size] = head(*_volumes())["loss_swav"].item()
    uniform = 2 * math.log(8)
    assert losses[0] > 0.5 * uniform
    assert losses[32] < 0.25 * losses[0]


def test_sinkhorn_queue_is_left_out_in_evaluation():
    head = _tiny_head(sinkhorn_queue_size=32).eval()
    head.queue.copy_(F.normalize(torch.randn(2, 32, 6), dim=2))
    head.queue_filled.fill_(32)
    similarity = torch.randn(2, 3, 8)
    assert head._with_queue(similarity, head.prototypes) is similarity
    head.train()
    assert head._with_queue(similarity, head.prototypes).shape == (2, 3 + 32, 8)


def test_sinkhorn_queue_holds_each_modalitys_most_recent_embeddings_newest_first():
    # Queue of 3, one paired cell per forward: after 4 forwards it holds the LiDAR embeddings of
    # forwards 3, 2, 1 in its LiDAR row and the camera ones in its camera row.
    head = _tiny_head(sinkhorn_queue_size=3)
    paired = torch.zeros(2, 2, 3, 4, dtype=torch.bool)
    paired[0, 0, 0, 0] = True
    written = []
    for seed in range(4):
        lidar, camera, _ = _volumes(seed=seed)
        head(lidar, camera, paired)
        with torch.no_grad():
            lidar_embedding, camera_embedding, _ = head.embed(lidar, camera, paired)
        written.append((lidar_embedding[0], camera_embedding[0]))
        assert int(head.queue_filled) == min(seed + 1, 3)
    for modality in (0, 1):
        expected = torch.stack([written[i][modality] for i in (3, 2, 1)])
        assert torch.allclose(head.queue[modality], expected, atol=1e-6)
    assert {"queue", "queue_filled"} <= set(head.state_dict())


def test_embeddings_do_not_depend_on_the_scale_of_the_cell_features():
    # The depth-distribution lift starts with camera features ~1/D of the image features; a
    # 10x smaller camera volume must give the same camera embeddings.
    torch.manual_seed(0)
    head = _tiny_head()
    lidar, camera, paired = _volumes()
    _, camera_embeddings, _ = head.embed(lidar, camera, paired)
    _, small_camera_embeddings, _ = head.embed(lidar, camera * 0.1, paired)
    assert torch.allclose(small_camera_embeddings, camera_embeddings, atol=1e-2)

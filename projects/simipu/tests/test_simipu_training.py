"""SimIPU trains on the real nuScenes frame: 50 iterations lower its loss."""

import torch
from simipu import build_split_optimizer
from simipu_test_helpers import frame_batch, small_cfg

import clap.modeling  # noqa: F401
from clap.modeling import build_model


def test_fifty_iterations_lower_the_simipu_loss(tmp_path):
    cfg = small_cfg(tmp_path / "cache", "MODEL.SIMIPU.OPTIMIZER_SPLIT", True)
    batch = frame_batch(cfg)
    torch.manual_seed(0)
    model = build_model(cfg)
    model.train()
    optimizer = build_split_optimizer(cfg, model)
    history = []
    for _ in range(50):
        torch.manual_seed(1)  # the same second view and point subsets every iteration
        losses = model(batch)
        assert set(losses) == {"loss_intra", "loss_inter"}
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
        history.append([losses["loss_intra"].item(), losses["loss_inter"].item()])
    history = torch.tensor(history)
    first, last = history[:5].mean(dim=0), history[-5:].mean(dim=0)
    print("mean of the first 5 (intra, inter):", first.tolist(), "of the last 5:", last.tolist())
    assert torch.isfinite(history).all()
    assert last.sum() < 0.7 * first.sum()
    assert (last < first).all()

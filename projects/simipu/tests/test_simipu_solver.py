"""The optimiser split: AdamW for the LiDAR encoder, SGD for the image encoder and heads."""

import pytest
import torch
from simipu import AdamWSGD, build_split_optimizer
from simipu_test_helpers import small_cfg

import clap.modeling  # noqa: F401
from clap.modeling import build_model


def test_adamwsgd_steps_equal_torch_adamw_and_sgd():
    torch.manual_seed(0)
    weights = [torch.randn(6, 3, requires_grad=True), torch.randn(4, requires_grad=True)]
    others = [torch.randn(5, 2, requires_grad=True), torch.randn(3, requires_grad=True)]
    copies = [p.detach().clone().requires_grad_() for p in weights + others]
    combined = AdamWSGD([
        {"params": weights, "algorithm": "adamw", "lr": 0.01, "weight_decay": 0.05,
         "betas": (0.8, 0.99), "eps": 1e-6},
        {"params": others, "algorithm": "sgd", "lr": 0.03, "weight_decay": 1e-3,
         "momentum": 0.9, "nesterov": True},
    ])
    adamw = torch.optim.AdamW(copies[:2], lr=0.01, weight_decay=0.05, betas=(0.8, 0.99), eps=1e-6)
    sgd = torch.optim.SGD(copies[2:], lr=0.03, weight_decay=1e-3, momentum=0.9, nesterov=True)

    def loss(params):
        return sum((p.sin() * p + p.square()).sum() for p in params)

    for _ in range(6):
        for optimizers, params in (([combined], weights + others), ([adamw, sgd], copies)):
            for optimizer in optimizers:
                optimizer.zero_grad()
            loss(params).backward()
            for optimizer in optimizers:
                optimizer.step()
    for mine, reference in zip(weights + others, copies):
        assert torch.allclose(mine, reference, atol=1e-6)
    # optimizer state survives a state-dict round trip
    restored = AdamWSGD([{"params": weights, "algorithm": "adamw"},
                         {"params": others, "algorithm": "sgd", "momentum": 0.9}])
    restored.load_state_dict(combined.state_dict())
    assert restored.param_groups[0]["betas"] == (0.8, 0.99)
    assert torch.equal(restored.state[weights[0]]["exp_avg"], combined.state[weights[0]]["exp_avg"])


def test_unknown_algorithm_is_an_error():
    with pytest.raises(ValueError, match="algorithm"):
        AdamWSGD([{"params": [torch.zeros(1, requires_grad=True)], "algorithm": "lamb"}])


def test_split_puts_the_lidar_encoder_on_adamw_and_the_rest_on_sgd(tmp_path):
    cfg = small_cfg(tmp_path, "MODEL.SIMIPU.POINT_LR", 2e-3, "MODEL.SIMIPU.IMAGE_LR", 0.05)
    model = build_model(cfg)
    optimizer = build_split_optimizer(cfg, model)
    assert isinstance(optimizer, AdamWSGD)
    algorithm_of = {}
    for group in optimizer.param_groups:
        expected_lr = 2e-3 if group["algorithm"] == "adamw" else 0.05
        assert group["lr"] == expected_lr
        for name, param in zip(group["param_names"], group["params"]):
            assert name not in algorithm_of
            algorithm_of[name] = group["algorithm"]
            assert dict(model.named_parameters())[name] is param
            if param.dim() > 1:  # weights of convs and linear layers (not norms, biases)
                expected_decay = (cfg.MODEL.SIMIPU.POINT_WEIGHT_DECAY if group["algorithm"]
                                  == "adamw" else cfg.MODEL.SIMIPU.IMAGE_WEIGHT_DECAY)
                assert group["weight_decay"] == expected_decay
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert set(algorithm_of) == trainable
    for name, algorithm in algorithm_of.items():
        assert algorithm == ("adamw" if name.startswith("lidar_backbone.") else "sgd"), name

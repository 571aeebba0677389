"""Running a model over a test loader and feeding an evaluator.

An evaluator is any object with
    reset() -> None                       start a new evaluation,
    process(batch, outputs) -> None       take one batch and the model's eval-mode outputs
                                          (a list with one prediction dict per sample),
    evaluate() -> dict | None             the metrics as nested dicts of numbers, on the main
                                          rank (gathering across ranks is its own job; other
                                          ranks may return None).
"""

import datetime
import logging
import time
from contextlib import contextmanager
from typing import Iterable, Optional

import torch
from tqdm import tqdm

from clap.utils import comm

__all__ = ["inference_context", "inference_on_dataset"]


@contextmanager
def inference_context(model: torch.nn.Module):
    """Put the model in eval mode inside the block and restore its previous mode after."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def inference_on_dataset(
    model: torch.nn.Module, data_loader: Iterable, evaluator
) -> Optional[dict]:
    """Run `model(batch)` in eval mode without gradients over the loader, pass every batch and
    its outputs to `evaluator.process`, and return `evaluator.evaluate()`.

    Shows a progress bar on the main rank and logs the time per batch.
    """
    logger = logging.getLogger(__name__)
    evaluator.reset()
    num_batches = len(data_loader) if hasattr(data_loader, "__len__") else None
    start = time.perf_counter()
    with inference_context(model), torch.no_grad():
        progress = tqdm(
            data_loader,
            total=num_batches,
            desc="inference",
            disable=not comm.is_main_process(),
            leave=False,
        )
        for batch in progress:
            outputs = model(batch)
            evaluator.process(batch, outputs)
    seconds = time.perf_counter() - start
    if num_batches:
        logger.info(
            f"Inference on {num_batches} batches: {datetime.timedelta(seconds=int(seconds))} "
            f"({seconds / num_batches:.4f} s / batch on this rank)"
        )
    return evaluator.evaluate()

"""Evaluator interface and the loop that runs a model over a data set."""

import datetime
import logging
import time

import torch
import torch.distributed as dist
from tqdm import tqdm

logger = logging.getLogger(__name__)


class DatasetEvaluator:
    """Accumulates a model's outputs over a data set and turns them into metrics.

    `reset` before a pass, `process(inputs, outputs)` for every batch (the batch the model got
    and what it returned), then `evaluate()` for a dict of metrics (empty on ranks other than
    the main one, which gathers the others' results).
    """

    def reset(self) -> None:
        """Forget everything processed so far."""

    def process(self, inputs, outputs) -> None:
        """Take in one batch and the model's outputs for it."""

    def evaluate(self) -> dict:
        """Metrics of everything processed since the last `reset`."""
        raise NotImplementedError


def _is_main_process() -> bool:
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def inference_on_dataset(model: torch.nn.Module, data_loader, evaluator: DatasetEvaluator) -> dict:
    """Run `model` in eval mode without gradients over `data_loader`, feeding `evaluator`.

    The model's training / eval mode is restored afterwards, also on an error. Shows a progress
    bar on the main process and logs the time per batch.

    Returns:
        `evaluator.evaluate()`.
    """
    was_training = model.training
    evaluator.reset()
    try:
        total = len(data_loader)
    except TypeError:
        total = None
    start = time.perf_counter()
    num_batches = 0
    model.eval()
    try:
        with torch.no_grad():
            for batch in tqdm(data_loader, total=total, desc="inference",
                              disable=not _is_main_process()):
                outputs = model(batch)
                evaluator.process(batch, outputs)
                num_batches += 1
    finally:
        model.train(was_training)
    elapsed = time.perf_counter() - start
    logger.info("Inference on %d batches took %s (%.4f s / batch)", num_batches,
                datetime.timedelta(seconds=int(elapsed)), elapsed / max(num_batches, 1))
    return evaluator.evaluate()

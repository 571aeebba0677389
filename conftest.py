"""Test-suite wide settings and fixtures: torch on one thread; `restore_loggers`; the `cuda`
marker (its tests are skipped on a machine without a CUDA GPU).

The tests run tiny tensors, which are faster on one thread than on several threads competing
for the few cores of a small machine; the previous setting is restored after each test.
"""

import logging

import pytest
import torch


@pytest.fixture(autouse=True)
def single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def restore_loggers():
    """default_setup configures the "clap" and "fvcore" loggers (own handlers, no propagation);
    put them back so later tests still see their records."""
    loggers = [logging.getLogger(name) for name in ("clap", "fvcore")]
    saved = [(logger.propagate, list(logger.handlers), logger.level) for logger in loggers]
    yield
    for logger, (propagate, handlers, level) in zip(loggers, saved):
        for handler in logger.handlers:
            if handler not in handlers:
                handler.close()
        logger.propagate, logger.handlers, logger.level = propagate, handlers, level


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "cuda: needs a CUDA GPU (skipped without one; run by tools/gpu_check.py)"
    )


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (none here)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)

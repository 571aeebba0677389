"""Test-suite wide settings: torch on one thread.

The tests run tiny tensors, which are faster on one thread than on several threads competing
for the few cores of a small machine; the previous setting is restored after each test.
"""

import pytest
import torch


@pytest.fixture(autouse=True)
def single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

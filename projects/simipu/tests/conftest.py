"""Make the `simipu` package importable and keep torch to one thread in these tests.

The tiny tensors here run far faster on one thread than on several threads competing for the
few cores of a busy machine; the previous setting is restored after each test.
"""

import os
import sys

import pytest
import torch

_PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _PROJECT_ROOT not in sys.path:
    sys.path.insert(0, _PROJECT_ROOT)


@pytest.fixture(autouse=True)
def single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

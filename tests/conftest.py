"""Process-wide test settings.

Tiny models run far faster on one thread when the two CPUs are shared (intra-op spin
waits dominate matmuls of size 64), so the whole suite uses one torch thread.
"""

from __future__ import annotations

import pytest
import torch

pytest_plugins = ["ci_required"]  # tests/ci_required.py: under CI=true, no silent skips


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

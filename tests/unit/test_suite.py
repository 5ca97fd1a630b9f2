"""The test suite's own set-up: parallel workers that do not oversubscribe the CPUs."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import WORKER_THREADS
from tests.pipeline.conftest import clean_env


def test_each_xdist_worker_and_its_stages_get_a_share_of_the_cpus_as_torch_threads():
    if WORKER_THREADS is None:
        pytest.skip("one process (`pytest -n 0`) or the user's OMP_NUM_THREADS: no share to check")
    assert torch.get_num_threads() == WORKER_THREADS  # set before torch was imported
    assert clean_env()["OMP_NUM_THREADS"] == str(WORKER_THREADS)  # the pipeline tests' stages inherit it

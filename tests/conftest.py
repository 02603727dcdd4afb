import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _single_thread():
    # Tests share two cores with each other and measure equality, not speed.
    torch.set_num_threads(1)
    yield


@pytest.fixture
def rng():
    return np.random.default_rng(0)

"""Shared pytest set-up: markers (`slow`, `gpu`, `reference`), seeding, and paths to the shared fixtures.

- `slow` tests run only with ``--runslow``.
- `gpu` tests skip cleanly when CUDA is not available.
- `reference` tests need a local checkout of ByteDance-Seed/Bagel named by ``BAGEL_REPO``.
Every test starts from the same seeds and the default dtype, so results do not depend on test order.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("UNIMAGE_SHARED", REPO_ROOT.parent / "shared"))
FIXTURES = SHARED / "fixtures"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    run_slow = config.getoption("--runslow")
    has_cuda = _cuda_available()
    bagel_repo = os.environ.get("BAGEL_REPO")
    for item in items:
        if "slow" in item.keywords and not run_slow:
            item.add_marker(pytest.mark.skip(reason="slow: pass --runslow to run"))
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(pytest.mark.skip(reason="gpu: CUDA is not available"))
        if "reference" in item.keywords and not (bagel_repo and Path(bagel_repo).is_dir()):
            item.add_marker(
                pytest.mark.skip(reason="reference: set BAGEL_REPO to a local ByteDance-Seed/Bagel checkout")
            )


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


@pytest.fixture(autouse=True)
def _seed_everything() -> None:
    """Seed python, numpy and torch; restore the default dtype; turn TF32 off for exact comparisons."""
    random.seed(0)
    try:
        import numpy as np

        np.random.seed(0)
    except ImportError:
        pass
    try:
        import torch
    except ImportError:
        return
    torch.manual_seed(0)
    torch.set_default_dtype(torch.float32)
    if torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """`../shared/fixtures`; tests that need it skip if the shared folder is absent."""
    if not FIXTURES.is_dir():
        pytest.skip(f"shared fixtures not found at {FIXTURES}")
    return FIXTURES

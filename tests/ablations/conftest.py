"""The sweep-check cache of `ablations.schema_fit` goes to a folder of this test session, not the user's home."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ablations.schema_fit import CACHE_ENV


@pytest.fixture(autouse=True, scope="session")
def _sweep_check_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(CACHE_ENV, str(tmp_path_factory.mktemp("sweep-checks")))
        yield

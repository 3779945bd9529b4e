"""Prompt Alignment judges: an OpenAI-compatible chat-completions client with an on-disk cache, and a toy judge.

Importing this package makes no network call and reads no environment variable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from bench.judge.base import ASPECTS, MAX_SCORE, MIN_SCORE, Aspect, Judge, JudgeRequest, JudgeScore

__all__ = [
    "ASPECTS",
    "CACHE_FILENAME",
    "MAX_SCORE",
    "MIN_SCORE",
    "Aspect",
    "Judge",
    "JudgeRequest",
    "JudgeScore",
    "load_judge",
    "make_judge",
]

JudgeKind = Literal["openai", "toy"]
#: File name of the answer cache inside a `cache_dir`.
CACHE_FILENAME = "judge_cache.sqlite"


def make_judge(
    kind: JudgeKind,
    *,
    model: str | None = None,
    base_url: str | None = None,
    api_key: str | None = None,
    era: Literal["A", "B", "C"] = "A",
    rubrics_dir: Path | str | None = None,
    cache_path: Path | str | None = None,
    cache_dir: Path | str | None = None,
    **kwargs: Any,
) -> Judge:
    """Build a judge.

    Args:
        kind: "openai" — an OpenAI-compatible endpoint (model, base URL and key from the arguments, else env
            MODEL_ID / BASE_URL / API_KEY); "toy" — offline colour-word judge, NOT comparable.
        model: model id (default "gpt-4.1").
        base_url: endpoint base URL.
        api_key: bearer token.
        era: message layout and parsing rules.
        rubrics_dir: directory with the official rubric files; None → our rubrics.
        cache_path: SQLite answer cache file; None → no cache (unless `cache_dir`).
        cache_dir: directory for the cache file `judge_cache.sqlite` (used when `cache_path` is None).
        **kwargs: further `JudgeConfig` fields (max_attempts, workers, retry_wait_s, ...).

    Raises:
        ValueError: unknown kind.
        bench.judge.openai.JudgeError: no API key for "openai".
    """
    if kind == "toy":
        from bench.judge.toy import ToyJudge

        return ToyJudge()
    if kind == "openai":
        from bench.judge.openai import JudgeConfig, OpenAIJudge

        if cache_path is None and cache_dir is not None:
            cache_path = Path(cache_dir) / CACHE_FILENAME

        config = JudgeConfig.from_env(
            model=model,
            base_url=base_url,
            api_key=api_key,
            era=era,
            rubrics_dir=Path(rubrics_dir) if rubrics_dir is not None else None,
            cache_path=Path(cache_path) if cache_path is not None else None,
            **kwargs,
        )
        return OpenAIJudge(config)
    raise ValueError(f"judge kind must be 'openai' or 'toy', got {kind!r}")


#: Alias of `make_judge`.
load_judge = make_judge

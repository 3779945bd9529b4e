"""Prompt Alignment judge over any OpenAI-compatible chat-completions endpoint (ViStoryBench §6).

Request (§6.2): POST `<base>/v1/chat/completions` (or `<base>/chat/completions` when the base already ends
in `/v1`), model "gpt-4.1" by default, temperature 0, seed 123, max_tokens 512, top_p 0.2 in Eras A/B (not
sent in Era C). The image is PIL-resized to exactly 512×512 (aspect squashed), RGB, JPEG at Pillow's default
quality, sent as a base64 data URL.

Message layout per era:
- Era A: [system: empty] + user [rubric, text, image(detail=high)]; single-character: user ["Below is the
  system prompt", rubric, "Below is the text prompt", text, "Evaluated Character Name is <name>",
  crop(detail=high)]. (Era A passed the character's key as <name>.)
- Era B/C: user [rubric, text, image]; single-character: system [rubric] + user [text, "Evaluated Character
  Name is <name>", crop(detail=low)].

Parsing: regex `(score|Score):\\s*[a-zA-Z]*\\s*(\\d+)`; Era A requires exactly one match, Eras B/C take the
first. Deviation: a parsed value outside 0–4 counts as a parse failure (the official code would accept it).

Retries (§6.2): after a parse failure the temperature rises by 0.1; after a rate-limit/server/network error
by 0.2 (capped at 1.0) after a pause. The official code retries up to 10000 times (Era A) or forever (HTTP
errors); we stop after `max_attempts` requests and score 0 with `failed=True` (the Era C rule). 400/401/403/404
are configuration errors and raise `JudgeError` at once instead of burning the cap on every item.

Caching: answers are stored in a SQLite file keyed by (model, every text part of the request and its
settings, sha256 of the image pixels), so a re-run sends no request for anything already answered.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from PIL import Image

from bench.judge.base import ASPECTS, MAX_SCORE, MIN_SCORE, Aspect, JudgeRequest, JudgeScore
from bench.judge.cache import JudgeCache, cache_key, image_digest

Era = Literal["A", "B", "C"]

DEFAULT_MODEL = "gpt-4.1"
DEFAULT_BASE_URL = "https://api.openai.com/v1"
SCORE_PATTERN = re.compile(r"(score|Score):\s*[a-zA-Z]*\s*(\d+)")
IMAGE_SIZE = (512, 512)

#: Official rubric file names (ViStoryBench `vistorybench/bench/prompt_align/user_prompts/`) per aspect.
OFFICIAL_RUBRIC_FILES: dict[Aspect, str] = {
    "scene": "user_prompt_environment_text_align.txt",
    "camera": "user_prompt_camera_text_align.txt",
    "character_action": "user_prompt_character_text_align.txt",
    "single_character_action": "user_prompt_single_character_text_align.txt",
}


#: SHA-256 of the official rubric files (identical at a4933ed, e67e43e and 514cc31). Alignment is comparable with
#: published numbers only when the judge reads exactly these bytes; their text is not in this repository.
OFFICIAL_RUBRIC_SHA256: dict[str, str] = {
    "user_prompt_environment_text_align.txt": "261d80b0d4eb7f796a8654c1a1c128ec7704a10b5e3f7ac8eb27110d21cad4de",
    "user_prompt_camera_text_align.txt": "ff0ae56cfbb37247832898280eb63912139b4e22c9ca9c51268b2245ab0ca0e9",
    "user_prompt_character_text_align.txt": "ac9c248a2bd8018c3091f516d4af0dca3c1c65ca1de93130d0efae49d1b2bc19",
    "user_prompt_single_character_text_align.txt": "6466c6c9c7622a8b5ecdde41fdd19d066626bc9bbafff546186da4a12c02a02c",
}

#: Where the rubric folder sits relative to a weight bundle inside a ViStoryBench checkout (`data/pretrain/`)
#: or beside it.
RUBRIC_SUBDIRS: tuple[str, ...] = (
    "user_prompts",
    "prompt_align/user_prompts",
    "vistorybench/bench/prompt_align/user_prompts",
    "bench/prompt_align/user_prompts",
)


class JudgeError(RuntimeError):
    """A judge configuration or endpoint error that retrying cannot fix (bad key, model, URL, request)."""


class _RetryableError(Exception):
    """Rate limit, server error, network failure or an empty answer: retry with a temperature bump."""


#####################################################################################################
# Rubrics, images, messages, parsing
#####################################################################################################


def load_rubrics(rubrics_dir: Path | str | None = None) -> dict[Aspect, str]:
    """The four rubric texts.

    Args:
        rubrics_dir: None → our own rubrics shipped in `bench/judge/rubrics/`; otherwise a directory holding
            either the official files (e.g. a ViStoryBench checkout's `vistorybench/bench/prompt_align/
            user_prompts/`) or files named `<aspect>.txt`.

    Raises:
        FileNotFoundError: naming the rubric file looked for.
    """
    if rubrics_dir is None:
        package = resources.files("bench.judge") / "rubrics"
        return {a: (package / f"{a}.txt").read_text(encoding="utf-8") for a in ASPECTS}
    return {aspect: path.read_text(encoding="utf-8") for aspect, path in rubric_files(rubrics_dir).items()}


def rubric_files(rubrics_dir: Path | str) -> dict[Aspect, Path]:
    """The rubric file used for each aspect in ``rubrics_dir`` (official name first, then ``<aspect>.txt``)."""
    root = Path(rubrics_dir)
    files: dict[Aspect, Path] = {}
    for aspect in ASPECTS:
        candidates = [root / OFFICIAL_RUBRIC_FILES[aspect], root / f"{aspect}.txt"]
        found = next((p for p in candidates if p.is_file()), None)
        if found is None:
            raise FileNotFoundError(f"rubric for {aspect!r} not found: looked for {candidates[0]} and {candidates[1]}")
        files[aspect] = found
    return files


def rubric_hashes(rubrics_dir: Path | str) -> dict[str, str]:
    """File name -> SHA-256 of every rubric file the judge reads from ``rubrics_dir``."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in rubric_files(rubrics_dir).values()}


def rubrics_problem(rubrics_dir: Path | str | None) -> str | None:
    """Why Alignment made with these rubrics is not comparable with published numbers; None if it is."""
    if rubrics_dir is None:
        return (
            "judge prompts are this project's own rubric texts, not the official ones; pass --rubrics "
            "<ViStoryBench checkout>/vistorybench/bench/prompt_align/user_prompts"
        )
    hashes = rubric_hashes(rubrics_dir)
    wrong = sorted(n for n, h in OFFICIAL_RUBRIC_SHA256.items() if hashes.get(n) != h)
    if wrong:
        return f"rubric files in {rubrics_dir} differ from the official ones (SHA-256 mismatch: {', '.join(wrong)})"
    return None


def find_rubrics(weights_dir: Path | str | None) -> Path | None:
    """The official rubric folder beside or above a weight bundle (``--weights``), or None.

    Looks in ``<dir>/<sub>`` for ``dir`` = the bundle and up to three parents (a checkout keeps its bundle in
    ``data/pretrain/``) and every ``sub`` of :data:`RUBRIC_SUBDIRS`; a folder counts when all four official file
    names are in it.
    """
    if weights_dir is None:
        return None
    start = Path(weights_dir).resolve()
    for base in [start, *list(start.parents)[:3]]:
        for sub in RUBRIC_SUBDIRS:
            folder = base / sub
            if all((folder / name).is_file() for name in OFFICIAL_RUBRIC_SHA256):
                return folder
    return None


def encode_image(image: Image.Image) -> str:
    """The official image encoding: resize to 512×512 (squash), RGB, JPEG (default quality), base64."""
    img = image.resize(IMAGE_SIZE)
    if img.mode != "RGB":
        img = img.convert("RGB")
    buffer = io.BytesIO()
    img.save(buffer, format="JPEG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _text(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def _image(b64: str, detail: str | None) -> dict[str, Any]:
    url: dict[str, Any] = {"url": f"data:image/jpeg;base64,{b64}"}
    if detail is not None:
        url["detail"] = detail
    return {"type": "image_url", "image_url": url}


def build_messages(era: Era, request: JudgeRequest, rubric: str, image_b64: str) -> list[dict[str, Any]]:
    """The chat messages the official code sends for this era and aspect (see module docstring)."""
    single = request.aspect == "single_character_action"
    name_line = f"Evaluated Character Name is {request.character_name}"
    if era == "A":
        image = _image(image_b64, "high")
        if single:
            user = [
                _text("Below is the system prompt"),
                _text(rubric),
                _text("Below is the text prompt"),
                _text(request.text),
                _text(name_line),
                image,
            ]
        else:
            user = [_text(rubric), _text(request.text), image]
        return [{"role": "system", "content": []}, {"role": "user", "content": user}]
    if single:
        return [
            {"role": "system", "content": [_text(rubric)]},
            {"role": "user", "content": [_text(request.text), _text(name_line), _image(image_b64, "low")]},
        ]
    return [{"role": "user", "content": [_text(rubric), _text(request.text), _image(image_b64, None)]}]


def parse_score(answer: str, era: Era) -> int | None:
    """The 0–4 score in a judge answer, or None (Era A: exactly one "Score: n"; B/C: the first)."""
    matches = [int(n) for _, n in SCORE_PATTERN.findall(answer)]
    if not matches or (era == "A" and len(matches) != 1):
        return None
    score = matches[0]
    return score if MIN_SCORE <= score <= MAX_SCORE else None


#####################################################################################################
# Client
#####################################################################################################


@dataclass(frozen=True)
class JudgeConfig:
    """Settings of the OpenAI-compatible judge.

    Attributes:
        model: model id ("gpt-4.1" in the paper-v3 numbers).
        base_url: endpoint base, with or without the trailing `/v1`.
        api_key: bearer token (never written anywhere).
        era: message layout, top_p and parsing rules (A is UniMAGE's Table 1).
        temperature, seed, max_tokens: request settings (0, 123, 512 officially).
        top_p: None → 0.2 in Eras A/B, not sent in Era C.
        max_attempts: hard cap on requests per answer (parse failures and retryable errors together).
        parse_bump, error_bump, error_temperature_cap: the official temperature steps.
        retry_wait_s: pause after a retryable error (officially 10 s).
        timeout_s: HTTP timeout per request.
        workers: concurrent requests in `score_many`.
        rubrics_dir: None → our rubrics; else a directory with the official rubric files.
        cache_path: SQLite cache file; None → no cache.
    """

    model: str = DEFAULT_MODEL
    base_url: str = DEFAULT_BASE_URL
    api_key: str = field(default="", repr=False)
    era: Era = "A"
    temperature: float = 0.0
    seed: int = 123
    max_tokens: int = 512
    top_p: float | None = None
    max_attempts: int = 10
    parse_bump: float = 0.1
    error_bump: float = 0.2
    error_temperature_cap: float = 1.0
    retry_wait_s: float = 10.0
    timeout_s: float = 120.0
    workers: int = 4
    rubrics_dir: Path | None = None
    cache_path: Path | None = None

    def __post_init__(self) -> None:
        if self.era not in ("A", "B", "C"):
            raise ValueError(f"era must be A, B or C, got {self.era!r}")
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")

    @staticmethod
    def from_env(
        model: str | None = None, base_url: str | None = None, api_key: str | None = None, **kwargs: Any
    ) -> JudgeConfig:
        """Fill model, base URL and key from arguments, else the official env vars MODEL_ID, BASE_URL,
        API_KEY, else OPENAI_BASE_URL / OPENAI_API_KEY, else the defaults.

        Raises:
            JudgeError: no API key anywhere.
        """
        key = api_key or os.environ.get("API_KEY") or os.environ.get("OPENAI_API_KEY") or ""
        if not key:
            raise JudgeError("no API key for the alignment judge: pass --api-key or set API_KEY (or OPENAI_API_KEY)")
        return JudgeConfig(
            model=model or os.environ.get("MODEL_ID") or DEFAULT_MODEL,
            base_url=base_url or os.environ.get("BASE_URL") or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL,
            api_key=key,
            **kwargs,
        )

    @property
    def endpoint(self) -> str:
        """The chat-completions URL (the official rule for bases with and without `/v1`)."""
        base = self.base_url.rstrip("/")
        return f"{base}/chat/completions" if base.endswith("/v1") else f"{base}/v1/chat/completions"

    @property
    def effective_top_p(self) -> float | None:
        """top_p actually sent: the explicit value, else 0.2 in Eras A/B and nothing in Era C."""
        if self.top_p is not None:
            return self.top_p
        return None if self.era == "C" else 0.2


class OpenAIJudge:
    """`Judge` over an OpenAI-compatible chat-completions endpoint, with an on-disk answer cache."""

    def __init__(self, config: JudgeConfig) -> None:
        """Load the rubrics and open the cache named in `config`.

        ``comparable`` is True only with the official rubric files (checked by SHA-256); otherwise
        ``non_comparable_reason`` says why.
        """
        self.config = config
        self.name = config.model
        self.rubrics = load_rubrics(config.rubrics_dir)
        self.rubric_sha256 = rubric_hashes(config.rubrics_dir) if config.rubrics_dir is not None else {}
        self.non_comparable_reason = rubrics_problem(config.rubrics_dir)
        self.comparable = self.non_comparable_reason is None
        self.cache = JudgeCache(config.cache_path) if config.cache_path is not None else None
        self._stats_lock = threading.Lock()
        self.stats = {"requests": 0, "cache_hits": 0, "failed": 0, "retries": 0}

    def _count(self, key: str, n: int = 1) -> None:
        with self._stats_lock:
            self.stats[key] += n

    def _payload(self, messages: list[dict[str, Any]], temperature: float) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": self.config.model,
            "max_tokens": self.config.max_tokens,
            "temperature": round(temperature, 6),
            "messages": messages,
            "seed": self.config.seed,
        }
        if self.config.effective_top_p is not None:
            payload["top_p"] = self.config.effective_top_p
        return payload

    def _post(self, payload: dict[str, Any]) -> str:
        """One request; returns the answer text or raises `_RetryableError` / `JudgeError`."""
        body = json.dumps(payload).encode("utf-8")
        req = urllib.request.Request(
            self.config.endpoint,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.config.api_key}"},
        )
        self._count("requests")
        try:
            with urllib.request.urlopen(req, timeout=self.config.timeout_s) as resp:
                data = json.loads(resp.read().decode("utf-8"))
        except urllib.error.HTTPError as err:
            detail = err.read().decode("utf-8", "replace")[:500]
            if err.code in (400, 401, 403, 404):
                raise JudgeError(f"judge endpoint {self.config.endpoint} answered HTTP {err.code}: {detail}") from err
            raise _RetryableError(f"HTTP {err.code}: {detail}") from err
        except (urllib.error.URLError, TimeoutError, ConnectionError, json.JSONDecodeError) as err:
            raise _RetryableError(str(err)) from err
        try:
            text = data["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError) as err:
            raise _RetryableError(f"no choices in answer: {str(data)[:200]}") from err
        if not isinstance(text, str) or len(text) < 2:
            raise _RetryableError(f"empty answer: {text!r}")
        return text

    def score(self, request: JudgeRequest) -> JudgeScore:
        """Score one request (cache first; then up to `max_attempts` requests)."""
        rubric = self.rubrics[request.aspect]
        # Key the cache on the messages with the image replaced by its pixel hash: cheap, and independent
        # of the JPEG encoder version.
        image_hash = image_digest(request.image)
        key_messages = build_messages(self.config.era, request, rubric, "<image>")
        settings = {k: v for k, v in self._payload([], self.config.temperature).items() if k != "messages"}
        key = cache_key(self.config.model, {"messages": key_messages, "settings": settings}, image_hash)
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                self._count("cache_hits")
                return hit
        messages = build_messages(self.config.era, request, rubric, encode_image(request.image))
        temperature, last = self.config.temperature, ""
        for attempt in range(1, self.config.max_attempts + 1):
            try:
                last = self._post(self._payload(messages, temperature))
            except _RetryableError as err:
                last = f"<error: {err}>"
                temperature = min(temperature + self.config.error_bump, self.config.error_temperature_cap)
                self._count("retries")
                if attempt < self.config.max_attempts:
                    time.sleep(self.config.retry_wait_s)
                continue
            parsed = parse_score(last, self.config.era)
            if parsed is not None:
                answer = JudgeScore(score=parsed, attempts=attempt, raw=last)
                if self.cache is not None:
                    self.cache.put(key, self.config.model, answer)
                return answer
            temperature += self.config.parse_bump
            self._count("retries")
        self._count("failed")
        return JudgeScore(score=0, attempts=self.config.max_attempts, failed=True, raw=last)

    def score_many(self, requests: Sequence[JudgeRequest]) -> list[JudgeScore]:
        """Score requests concurrently (`workers` threads); results in request order."""
        if self.config.workers == 1 or len(requests) <= 1:
            return [self.score(r) for r in requests]
        with ThreadPoolExecutor(max_workers=self.config.workers) as pool:
            return list(pool.map(self.score, requests))

    def provenance(self) -> dict[str, Any]:
        """What the evaluator records about the judge (no API key)."""
        cfg = replace(self.config, api_key="")
        return {
            "judge": self.config.model,
            "endpoint": self.config.endpoint,
            "era": cfg.era,
            "temperature": cfg.temperature,
            "seed": cfg.seed,
            "top_p": cfg.effective_top_p,
            "max_attempts": cfg.max_attempts,
            "rubrics": str(cfg.rubrics_dir) if cfg.rubrics_dir else "bench/judge/rubrics (ours)",
            "rubrics_sha256": dict(self.rubric_sha256),
            "rubrics_official": self.comparable,
            "non_comparable_reason": self.non_comparable_reason,
            "stats": dict(self.stats),
        }

    def close(self) -> None:
        """Close the cache."""
        if self.cache is not None:
            self.cache.close()

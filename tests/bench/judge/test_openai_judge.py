"""The OpenAI-compatible judge against a real HTTP server on 127.0.0.1 started by the test.

The server checks every request body (model, temperature, seed, top_p, image size and format) and answers
from a script: good answers, malformed answers (→ retry with +0.1 temperature), server errors (→ +0.2),
auth errors (→ immediate error). A second run with the same cache must send zero requests.
"""

from __future__ import annotations

import base64
import io
import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from bench.judge import CACHE_FILENAME, JudgeRequest, load_judge
from bench.judge import make_judge as bench_make_judge
from bench.judge.openai import (
    OFFICIAL_RUBRIC_FILES,
    JudgeConfig,
    JudgeError,
    OpenAIJudge,
    encode_image,
    load_rubrics,
    parse_score,
)


class ScriptedServer:
    """A chat-completions server; `answer(body) -> (status, text)` decides each reply; bodies are recorded."""

    def __init__(self, answer: Callable[[dict], tuple[int, str]]) -> None:
        self.answer = answer
        self.bodies: list[dict] = []
        self.paths: list[str] = []
        self.auth: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.bodies.append(body)
                outer.paths.append(self.path)
                outer.auth.append(self.headers.get("Authorization", ""))
                status, text = outer.answer(body)
                payload = (
                    {"choices": [{"message": {"role": "assistant", "content": text}}]}
                    if status == 200
                    else {"error": {"message": text}}
                )
                raw = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server_factory():
    servers = []

    def make(answer):
        s = ScriptedServer(answer)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.close()


def image_of(body: dict) -> Image.Image:
    parts = [p for m in body["messages"] for p in (m["content"] if isinstance(m["content"], list) else [])]
    (img_part,) = [p for p in parts if p["type"] == "image_url"]
    url = img_part["image_url"]["url"]
    assert url.startswith("data:image/jpeg;base64,")
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))


def texts_of(body: dict, role: str = "user") -> list[str]:
    (msg,) = [m for m in body["messages"] if m["role"] == role]
    return [p["text"] for p in msg["content"] if p["type"] == "text"]


def judge_for(server, tmp_path, **kw) -> OpenAIJudge:
    cfg = JudgeConfig(
        model="judge-model-x",
        base_url=server.base_url,
        api_key="sk-test",
        retry_wait_s=0.0,
        timeout_s=10,
        cache_path=tmp_path / "judge.sqlite",
        **kw,
    )
    return OpenAIJudge(cfg)


@pytest.fixture
def shot() -> Image.Image:
    return Image.new("RGB", (300, 200), (10, 120, 200))


def test_request_body_and_score(server_factory, tmp_path, shot):
    server = server_factory(lambda body: (200, "Analysis: the forest is there.\nScore: 3"))
    judge = judge_for(server, tmp_path)
    answer = judge.score(JudgeRequest("scene", "A dark forest at night.", shot))
    assert (answer.score, answer.attempts, answer.cached, answer.failed) == (3, 1, False, False)
    (body,) = server.bodies
    assert server.paths == ["/v1/chat/completions"]
    assert server.auth == ["Bearer sk-test"]
    assert body["model"] == "judge-model-x"
    assert body["temperature"] == 0.0 and body["seed"] == 123 and body["max_tokens"] == 512
    assert body["top_p"] == 0.2  # Era A
    img = image_of(body)
    assert img.format == "JPEG" and img.size == (512, 512) and img.mode == "RGB"
    # Era A layout: empty system message, user = [rubric, text, image(detail=high)]
    assert body["messages"][0] == {"role": "system", "content": []}
    assert texts_of(body) == [load_rubrics()["scene"], "A dark forest at night."]
    assert body["messages"][1]["content"][2]["image_url"]["detail"] == "high"


def test_malformed_answers_bump_temperature_then_succeed(server_factory, tmp_path, shot):
    replies = iter(["I think it is good.", "Score: 3\nScore: 4", "Score: 9", "Analysis: ok\nScore: 2"])
    server = server_factory(lambda body: (200, next(replies)))
    judge = judge_for(server, tmp_path)
    answer = judge.score(JudgeRequest("camera", "Medium shot, eye level", shot))
    assert answer.score == 2 and answer.attempts == 4
    # no score, two scores (Era A needs exactly one), out of range → +0.1 each
    assert [b["temperature"] for b in server.bodies] == pytest.approx([0.0, 0.1, 0.2, 0.3])
    assert judge.stats["retries"] == 3


def test_server_errors_bump_by_02_capped_and_hard_cap(server_factory, tmp_path, shot):
    server = server_factory(lambda body: (503, "overloaded"))
    judge = judge_for(server, tmp_path, max_attempts=7)
    answer = judge.score(JudgeRequest("scene", "x", shot))
    assert answer.failed and answer.score == 0 and answer.attempts == 7
    assert [b["temperature"] for b in server.bodies] == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.0])
    # a failed answer is not cached: the next run asks again
    assert judge.cache is not None and len(judge.cache) == 0


def test_parse_failures_hit_the_cap(server_factory, tmp_path, shot):
    server = server_factory(lambda body: (200, "no number here"))
    judge = judge_for(server, tmp_path, max_attempts=10)
    answer = judge.score(JudgeRequest("scene", "x", shot))
    assert answer.failed and answer.score == 0 and len(server.bodies) == 10
    assert server.bodies[-1]["temperature"] == pytest.approx(0.9)
    assert judge.stats["failed"] == 1


def test_auth_error_raises_at_once(server_factory, tmp_path, shot):
    server = server_factory(lambda body: (401, "bad key"))
    judge = judge_for(server, tmp_path)
    with pytest.raises(JudgeError, match=r"HTTP 401.*bad key"):
        judge.score(JudgeRequest("scene", "x", shot))
    assert len(server.bodies) == 1


def test_cache_hit_on_rerun_sends_nothing(server_factory, tmp_path, shot):
    def answer(body):
        return 200, f"Score: {len(texts_of(body)[-1]) % 5}"

    server = server_factory(answer)
    requests = [JudgeRequest("character_action", "a" * n, shot) for n in range(1, 7)]
    first = judge_for(server, tmp_path, workers=3).score_many(requests)
    assert len(server.bodies) == 6
    assert [a.score for a in first] == [n % 5 for n in range(1, 7)]
    rerun_judge = judge_for(server, tmp_path)  # a new process would open the same file
    again = rerun_judge.score_many(requests)
    assert len(server.bodies) == 6  # zero new requests
    assert [a.score for a in again] == [a.score for a in first]
    assert all(a.cached and a.attempts == 0 for a in again)
    assert rerun_judge.stats == {"requests": 0, "cache_hits": 6, "failed": 0, "retries": 0}
    # a different image or model is a different key
    judge_for(server, tmp_path).score(JudgeRequest("character_action", "a", Image.new("RGB", (300, 200))))
    assert len(server.bodies) == 7


def test_era_c_layout_single_character(server_factory, tmp_path):
    server = server_factory(lambda body: (200, "Analysis: fine. Score: 4 and later Score: 1"))
    judge = judge_for(server, tmp_path, era="C")
    crop = Image.new("L", (40, 90), 128)
    answer = judge.score(JudgeRequest("single_character_action", "Lily waves.", crop, character_name="Lily"))
    assert answer.score == 4  # first match in Era C
    (body,) = server.bodies
    assert "top_p" not in body
    assert texts_of(body, "system") == [load_rubrics()["single_character_action"]]
    assert texts_of(body) == ["Lily waves.", "Evaluated Character Name is Lily"]
    assert body["messages"][1]["content"][2]["image_url"]["detail"] == "low"
    assert image_of(body).size == (512, 512)


def test_era_a_single_character_layout(server_factory, tmp_path):
    server = server_factory(lambda body: (200, "Score: 1"))
    judge = judge_for(server, tmp_path, era="A")
    judge.score(JudgeRequest("single_character_action", "Tom runs.", Image.new("RGB", (8, 8)), character_name="Tom"))
    rubric = load_rubrics()["single_character_action"]
    assert texts_of(server.bodies[0]) == [
        "Below is the system prompt",
        rubric,
        "Below is the text prompt",
        "Tom runs.",
        "Evaluated Character Name is Tom",
    ]


def test_official_rubrics_dir_and_errors(tmp_path):
    for aspect, name in OFFICIAL_RUBRIC_FILES.items():
        (tmp_path / name).write_text(f"official {aspect}")
    assert load_rubrics(tmp_path)["camera"] == "official camera"
    (tmp_path / OFFICIAL_RUBRIC_FILES["scene"]).unlink()
    with pytest.raises(FileNotFoundError, match=r"user_prompt_environment_text_align\.txt"):
        load_rubrics(tmp_path)
    ours = load_rubrics()
    assert set(ours) == {"scene", "camera", "character_action", "single_character_action"}
    assert all("Score: <0, 1, 2, 3 or 4>" in text for text in ours.values())


def test_parse_score_rules():
    assert parse_score("Analysis: x\nScore: 3", "A") == 3
    assert parse_score("score: Good 4", "A") == 4  # the regex allows a word before the number
    assert parse_score("Score: 3 ... Score: 2", "A") is None
    assert parse_score("Score: 3 ... Score: 2", "C") == 3
    assert parse_score("Score: 5", "B") is None
    assert parse_score("3/4", "C") is None


def test_endpoint_rule_env_and_key(monkeypatch):
    assert JudgeConfig(base_url="http://h/v1/").endpoint == "http://h/v1/chat/completions"
    assert JudgeConfig(base_url="http://h").endpoint == "http://h/v1/chat/completions"
    for var in ("API_KEY", "OPENAI_API_KEY", "MODEL_ID", "BASE_URL", "OPENAI_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(JudgeError, match="API_KEY"):
        JudgeConfig.from_env()
    monkeypatch.setenv("API_KEY", "sekret-key-123")
    monkeypatch.setenv("MODEL_ID", "gpt-4.1-mini")
    monkeypatch.setenv("BASE_URL", "http://x")
    cfg = JudgeConfig.from_env()
    assert (cfg.model, cfg.base_url, cfg.api_key) == ("gpt-4.1-mini", "http://x", "sekret-key-123")
    assert "sekret" not in repr(cfg)
    judge = load_judge("openai", model="m2")
    assert judge.name == "m2" and "sekret" not in json.dumps(judge.provenance())


def test_make_judge_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("API_KEY", "x")
    judge = bench_make_judge(kind="openai", model=None, base_url=None, cache_dir=tmp_path / "c", rubrics_dir=None)
    assert isinstance(judge, OpenAIJudge)
    assert judge.config.cache_path == tmp_path / "c" / CACHE_FILENAME and judge.config.cache_path.is_file()


def test_encode_image_squashes_to_512():
    img = Image.open(io.BytesIO(base64.b64decode(encode_image(Image.new("RGBA", (1000, 10))))))
    assert img.size == (512, 512) and img.mode == "RGB"

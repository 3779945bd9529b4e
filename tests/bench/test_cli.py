"""`unimage bench evaluate` through the real top-level CLI."""

from __future__ import annotations

import json

from unimage.cli import main


def test_cli_evaluate(bench_data, tmp_path, capsys):
    dataset, outputs = bench_data
    out = tmp_path / "res"
    args = [
        "bench",
        "evaluate",
        "--dataset",
        str(dataset),
        "--outputs",
        str(outputs),
        "--method",
        "toy-method",
        "--mode",
        "base",
    ]
    rc = main(
        [
            *args,
            "--split",
            "lite",
            "--era",
            "B",
            "--metrics",
            "aesthetic",
            "occm",
            "--backbones",
            "toy",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert rc == 0
    printed = json.loads(capsys.readouterr().out)
    assert (
        printed["out"] == str(out)
        and printed["era"] == "B"
        and printed["split"] == "lite"
        and printed["n_stories"] == 2
    )
    assert json.loads((out / "results_row.json").read_text())["aesthetics"] == printed["aesthetics"]
    assert printed["csd_self"] is None  # metric not requested → null, not a made-up number


def test_cli_errors_are_clear(bench_data, tmp_path, capsys):
    dataset, outputs = bench_data
    rc = main(
        [
            "bench",
            "evaluate",
            "--dataset",
            str(dataset),
            "--outputs",
            str(outputs),
            "--method",
            "absent",
            "--no-progress",
        ]
    )
    assert rc == 2
    assert "no outputs for method 'absent'" in capsys.readouterr().err
    rc = main(
        [
            "bench",
            "evaluate",
            "--dataset",
            str(tmp_path / "nowhere"),
            "--outputs",
            str(outputs),
            "--method",
            "toy-method",
            "--no-progress",
        ]
    )
    assert rc == 2
    assert "dataset root is not a directory" in capsys.readouterr().err
    rc = main(
        [
            "bench",
            "evaluate",
            "--dataset",
            str(dataset),
            "--outputs",
            str(outputs),
            "--method",
            "toy-method",
            "--backbones",
            "official",
            "--no-progress",
        ]
    )
    assert rc == 2
    assert "weights_dir" in capsys.readouterr().err


def test_cli_prompt_align_with_openai_judge_on_local_server(bench_data, tmp_path, capsys, monkeypatch):
    """The evaluator with the real OpenAI-compatible client against a server on 127.0.0.1; reruns hit the cache."""
    import http.server
    import threading

    requests = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            requests.append(body)
            text = json.dumps(body["messages"])
            score = 1 if "Shot Perspective" in text or "eye level" in text else 3
            reply = {"choices": [{"message": {"role": "assistant", "content": f"Analysis: fine.\nScore: {score}"}}]}
            data = json.dumps(reply).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("API_KEY", "test-key")
    dataset, outputs = bench_data
    base = ["bench", "evaluate", "--dataset", str(dataset), "--outputs", str(outputs), "--method", "toy-method"]
    judge = [
        "--judge",
        "openai",
        "--judge-base-url",
        f"http://127.0.0.1:{server.server_port}",
        "--judge-model",
        "test-model",
    ]
    try:
        rc = main([*base, *judge, "--metrics", "prompt_align", "--out", str(tmp_path / "r1"), "--no-progress"])
        assert rc == 0
        row = json.loads(capsys.readouterr().out)
        n_first = len(requests)
        assert n_first > 0 and all(
            r["model"] == "test-model" and r["temperature"] == 0 and r["seed"] == 123 for r in requests
        )
        assert row["camera"] == 1.0 and row["scene"] == 3.0 and row["global_action"] == 3.0
        assert row["judge"] and row["comparable_with_published"] is False  # toy backbones
        # A fresh results folder with the same cache: every answer comes from the cache, no request is sent.
        cache = tmp_path / "r1" / "judge_cache"
        rc = main(
            [
                *base,
                *judge,
                "--metrics",
                "prompt_align",
                "--out",
                str(tmp_path / "r2"),
                "--judge-cache",
                str(cache),
                "--no-progress",
            ]
        )
        assert rc == 0
        assert json.loads(capsys.readouterr().out)["alignment"] == row["alignment"]
        assert len(requests) == n_first
    finally:
        server.shutdown()
    monkeypatch.delenv("API_KEY")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    rc = main([*base, *judge, "--metrics", "prompt_align", "--out", str(tmp_path / "r3"), "--no-progress"])
    assert rc == 2 and "no API key" in capsys.readouterr().err


def test_evaluate_options_are_eval_config(capsys, monkeypatch):
    """`bench evaluate`'s options are EvalConfig's fields: help = docstring line, values = the dataclass's."""
    import argparse
    from dataclasses import fields
    from pathlib import Path

    import pytest

    from bench.cli import configure
    from bench.evaluate import EvalConfig
    from cliargs import field_docs, given_values

    monkeypatch.setenv("COLUMNS", "2000")  # one line per option
    with pytest.raises(SystemExit):
        main(["bench", "evaluate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    docs = field_docs(EvalConfig)
    for f in fields(EvalConfig):
        assert docs[f.name] in text, f.name
    assert f"--batch-size INT {docs['batch_size']} (default: 16)" in text

    parser = argparse.ArgumentParser()
    configure(parser)
    base = ["evaluate", "--dataset", "d", "--outputs", "o", "--method", "m"]
    assert EvalConfig(**given_values(parser.parse_args(base), EvalConfig)) == EvalConfig(Path("d"), Path("o"), "m")
    old = [*base, "--fix", "zero-based-shift", "--fix", "gpt-eval-matching", "--no-progress", "--metrics", "csd"]
    new = [*base, "--fixes", "zero-based-shift", "gpt-eval-matching", "--no-progress", "--metrics", "csd"]
    expected = EvalConfig(
        Path("d"), Path("o"), "m", metrics=("csd",), progress=False, fixes=("zero-based-shift", "gpt-eval-matching")
    )
    for argv in (old, new):
        assert EvalConfig(**given_values(parser.parse_args(argv), EvalConfig)) == expected

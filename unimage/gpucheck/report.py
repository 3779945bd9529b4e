"""The short markdown summary beside ``gpucheck.json``: one table of steps, then each step's headline numbers."""

from __future__ import annotations

from typing import Any

__all__ = ["summary_markdown"]


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.{digits}g}" if abs(x) < 1e-2 or abs(x) >= 1e5 else f"{x:.{digits}f}".rstrip("0").rstrip(".")
    return str(x)


def _parity(r: dict[str, Any]) -> list[str]:
    lines = [
        f"L = {r.get('tokens')} tokens, {r.get('documents')} documents, Hq/Hkv/Dh = "
        f"{r.get('heads_q')}/{r.get('heads_kv')}/{r.get('head_dim')}, {r.get('dtype')}",
        "",
        "| backend | out | dq | dk | dv | time |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    base = r.get("dense_same_dtype", {}).get("max_abs_err", {})
    lines.append(
        f"| dense, same dtype (baseline) | {_fmt(base.get('out'))} | {_fmt(base.get('dq'))} | "
        f"{_fmt(base.get('dk'))} | {_fmt(base.get('dv'))} | |"
    )
    for name, e in r.get("backends", {}).items():
        if e.get("status") != "ran":
            why = e.get("reason") or e.get("error", "")
            lines.append(f"| {name} | {e.get('status')}: {why.splitlines()[0] if why else ''} | | | | |")
            continue
        err = e.get("max_abs_err", {})
        t = e.get("fwd_bwd_s", e.get("fwd_s"))
        lines.append(
            f"| {name} | {_fmt(err.get('out'))} | {_fmt(err.get('dq'))} | {_fmt(err.get('dk'))} | "
            f"{_fmt(err.get('dv'))} | {_fmt(t)} s |"
        )
    return lines


def _train(r: dict[str, Any]) -> list[str]:
    lines = [
        f"{r.get('layers')} layers, {r.get('tokens')} tokens, backend {r.get('backend')}, {r.get('dtype')}, "
        f"peak {_fmt(r.get('peak_bf16_tflops'))} TFLOPS" + (f" ({r['mfu_note']})" if r.get("mfu_note") else ""),
        "",
        "| activation checkpointing | step s | tokens/s | TFLOPS | MFU | peak GiB |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, m in r.get("modes", {}).items():
        if "step_s" not in m:
            lines.append(f"| {name} | skipped: {m.get('reason')} | | | | |")
            continue
        lines.append(
            f"| {name.removeprefix('checkpointing_')} | {_fmt(m['step_s'])} | {_fmt(m['tokens_per_s'])} | "
            f"{_fmt(m['model_tflops'])} | {_fmt(m['mfu'])} | {_fmt(m['peak_mem_gib'])} |"
        )
    return lines


def _inference(r: dict[str, Any]) -> list[str]:
    lines = [f"{r.get('layers')} layers, backend {r.get('backend')}, {r.get('dtype')}"]
    if "prefill" in r:
        p = r["prefill"]
        lines.append(f"- prefill: {p['tokens']} tokens in {_fmt(p['s'])} s = {_fmt(p['tokens_per_s'])} tokens/s")
    if "decode" in r:
        d = r["decode"]
        lines.append(
            f"- decode: {d['tokens']} tokens after {d['context_tokens']} = {_fmt(d['tokens_per_s'])} tokens/s "
            f"({_fmt(d['ms_per_token'])} ms/token)"
        )
    k = r.get("keyframe", {})
    for mode in ("batched", "sequential"):
        if mode in k:
            m = k[mode]
            lines.append(
                f"- keyframe {k['px']}² step, 3 CFG branches {mode}: "
                + (f"{_fmt(m['step_s'])} s" if "step_s" in m else f"skipped: {m.get('reason')}")
            )
    if "sequential_over_batched" in k:
        lines.append(
            f"- sequential / batched: {_fmt(k['sequential_over_batched'])}; max |batched − sequential| = "
            f"{_fmt(k['max_abs_diff'])}"
        )
    return lines


def _fsdp(r: dict[str, Any]) -> list[str]:
    if "continuous" not in r:
        return []
    ck = r.get("checkpoint", {})
    return [
        f"{r.get('world_size')} process(es), {r.get('backend')}, {r.get('layers')} layers, {r.get('fsdp_units')} FSDP "
        f"units, {r.get('precision')}",
        f"- losses: continuous {r['continuous'].get('losses')}, resumed after step 1: "
        f"{r.get('resumed', {}).get('losses')}",
        f"- sharded checkpoint: {ck.get('shard_files')} shard file(s), {_fmt(ck.get('bytes'))} bytes, "
        f"saved in {_fmt(ck.get('save_s'))} s",
    ]


_DETAIL = {"parity": _parity, "train": _train, "inference": _inference, "fsdp": _fsdp}


def summary_markdown(doc: dict[str, Any]) -> str:
    """Render ``gpucheck.json``'s document as markdown."""
    env = doc.get("env", {})
    lines = [
        f"# gpucheck ({doc.get('scale')}) on {env.get('device_name')} ({env.get('device_type')})",
        "",
        f"started {doc.get('started')}, wall {_fmt(doc.get('wall_s'))} s of {_fmt(doc.get('budget_s'))} s, "
        f"complete: {doc.get('complete')}, ok: {doc.get('ok')}",
        f"torch {env.get('torch')}, CUDA {env.get('cuda')}, flash-attn {env.get('flash_attn')}, "
        f"lightning {env.get('lightning')}, commit {env.get('git_commit')}",
        "",
        "| step | status | wall s | checks |",
        "| --- | --- | --- | --- |",
    ]
    for name, s in doc.get("steps", {}).items():
        checks = s.get("checks", [])
        passed = sum(bool(c.get("passed")) for c in checks)
        status = s["status"] + (f" ({s['reason'].splitlines()[-1]})" if s.get("reason") else "")
        lines.append(f"| {name}: {s.get('title')} | {status} | {_fmt(s.get('wall_s'))} | {passed}/{len(checks)} |")
    for name, s in doc.get("steps", {}).items():
        detail = _DETAIL.get(name)
        body = detail(s.get("results", {})) if detail and s.get("results") else []
        failed = [c for c in s.get("checks", []) if not c.get("passed")]
        if failed:
            body += [
                "",
                "failed checks: " + ", ".join(f"{c['name']} = {_fmt(c['value'])} > {_fmt(c['limit'])}" for c in failed),
            ]
        if body:
            lines += ["", f"## {name}", "", *body]
    return "\n".join(lines) + "\n"

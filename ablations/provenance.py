"""``provenance.json`` of an arm: what produced its files (code, packages, seeds, device, metric settings).

Read by ``reports`` (the Table 1 footnote names the commit) and by people reproducing a run. Collecting it imports
no torch at module level; the torch version and device are read when torch is already importable.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import platform
import socket
import subprocess
from pathlib import Path
from typing import Any

from ablations.config import ArmSpec, SweepSpec
from ablations.status import ArmStatus, now

PACKAGES = (
    "unimage-harness",
    "torch",
    "torchvision",
    "lightning",
    "transformers",
    "diffusers",
    "torchmetrics",
    "open-clip-torch",
    "safetensors",
    "numpy",
    "pandas",
    "matplotlib",
)
REPO = Path(__file__).resolve().parent.parent
CONSTRAINTS = REPO / "constraints.txt"


def git_state(repo: Path = REPO) -> dict[str, Any]:
    """Commit SHA and whether the work tree has uncommitted changes (None when not a git checkout)."""

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    sha = git("rev-parse", "HEAD")
    porcelain = git("status", "--porcelain", "--untracked-files=no")
    return {"sha": sha, "dirty": bool(porcelain) if porcelain is not None else None}


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    """Installed versions of the packages that shape the numbers."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def _canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def constraints_state(path: Path = CONSTRAINTS) -> dict[str, Any]:
    """The pinned constraints file and how this environment differs from it (DESIGN.md §3.4: the environment).

    Returns:
        ``file`` (its path), ``sha256`` (None when the file is missing), ``pinned`` (number of ``name==version`` lines)
        and ``differs``: ``{name: {"pinned": v, "installed": v or None}}`` for every pinned package whose installed
        version is another one (empty: this is the locked environment).
    """
    if not path.is_file():
        return {"file": str(path), "sha256": None, "pinned": 0, "differs": {}}
    data = path.read_bytes()
    pins: dict[str, str] = {}
    for line in data.decode("utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[_canonical(name.split("[", 1)[0])] = version.strip()
    installed = {
        _canonical(d.metadata["Name"]): d.version for d in importlib.metadata.distributions() if d.metadata["Name"]
    }
    differs = {
        name: {"pinned": version, "installed": installed.get(name)}
        for name, version in sorted(pins.items())
        if installed.get(name) != version
    }
    return {"file": str(path), "sha256": hashlib.sha256(data).hexdigest(), "pinned": len(pins), "differs": differs}


def device_info(requested: str) -> dict[str, Any]:
    """The requested device plus what the machine has (CUDA device names when torch sees any)."""
    info: dict[str, Any] = {"requested": requested, "host": socket.gethostname(), "platform": platform.platform()}
    try:
        import torch

        info["cuda"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except Exception:  # torch missing or CUDA broken: provenance must still be written
        info["cuda"] = None
    return info


def provenance(arm: ArmSpec, sweep: SweepSpec, hashes: dict[str, str], status: ArmStatus) -> dict[str, Any]:
    """The provenance record of ``arm`` (DESIGN.md §3.4)."""
    cfg = arm.config
    ev = cfg["evaluate"]
    git = git_state()
    return {
        "sweep": sweep.name,
        "sweep_file": str(sweep.path),
        "arm": arm.name,
        "published_as": arm.published_as,
        "external": arm.external,
        "git_commit": git["sha"],
        "git_dirty": git["dirty"],
        "versions": package_versions(),
        "constraints": constraints_state(),
        "seeds": {
            "seed": cfg["seed"],
            "synthstory": (cfg["data"].get("synthstory") or {}).get("seed"),
            "sampling": cfg["generate"].get("sampling", {}).get("seed", cfg["seed"]),
        },
        "device": device_info(str(cfg.get("device"))),
        "metric_era": ev["era"],
        "split": ev["split"],
        "lang": ev["lang"],
        "backbones": ev["backbones"],
        "judge": ev["judge"],
        "judge_model": ev.get("judge_model") if ev["judge"] == "openai" else ev["judge"],
        "dataset": ev.get("dataset")
        or (
            f"{status.info('data')['dir']}/eval/ViStory"
            if status.info("data").get("dir")
            else "SynthStory (data stage)"
        ),
        "stage_hashes": hashes,
        "stages": {s: {k: r.get(k) for k in ("state", "hash", "finished_at")} for s, r in status.stages.items()},
        "written_at": now(),
    }

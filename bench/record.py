"""Result files of the benchmarks and experiments: the machine, the command and the versions beside each table."""
from __future__ import annotations

import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    """CPU, GPU, thread count and versions of this machine."""
    import torch

    info = {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
            "python": sys.version.split()[0], "torch": torch.__version__}
    try:
        info["cpu"] = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def save(name: str, table_md: str, data: dict, results: Path = RESULTS) -> Path:
    """Write ``<results>/<name>-<timestamp>.md`` and ``.json`` with the command, machine and versions."""
    results.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    cmd = " ".join(shlex.quote(a) for a in [Path(sys.executable).name, *sys.argv])
    from lavise.run import versions

    meta = {"command": cmd, "machine": machine(), "versions": versions(), "time": stamp}
    md = f"# {name} ({stamp})\n\nCommand: `{cmd}`\n\nMachine: {json.dumps(meta['machine'])}\n\n{table_md}\n"
    (results / f"{name}-{stamp}.md").write_text(md)
    (results / f"{name}-{stamp}.json").write_text(json.dumps({**meta, **data}, indent=1))
    return results / f"{name}-{stamp}.md"

"""Where comparison results go: their file names, and their record in the run's manifest."""
from __future__ import annotations

from pathlib import Path

from ..run import RunFolder

GROUP_FILE = "compare.json"
MODEL_FILE = "compare_models.json"
GROUP_FILES = [GROUP_FILE, "compare.csv", "compare.png"]
MODEL_FILES = [MODEL_FILE, "compare_models.csv", "compare_models.png"]


def record_result(run: RunFolder, out: str | Path, kind: str, files: list[str]) -> None:
    """Record a comparison saved inside the run folder in its manifest as part ``kind:<folder>``
    (saved outside the run folder: nothing to record)."""
    out = Path(out)
    try:
        rel = out.resolve().relative_to(run.path.resolve())
    except ValueError:
        return
    present = [f for f in files if (out / f).is_file()]
    run.record(f"{kind}:{rel.as_posix()}", [(rel / f).as_posix() for f in present])

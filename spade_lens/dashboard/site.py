"""The files of a dashboard folder, and reading its data back.

::

    index.html  dashboard.css  dashboard.js     the page (static, copied from the package)
    dashboard.json                               the index data as plain JSON (also marks the folder as ours)
    data/index.js                                the index data for the page
    data/<sae>/block-0000.js ...                 per-latent data, ``block_size`` latents per file, loaded on demand

Data files are JavaScript (``SPADE_LENS.receive("key", {...json...});``) rather than ``.json`` because browsers
refuse ``fetch`` of local files opened from disk, while a ``<script>`` tag added on demand loads them everywhere.
"""

from __future__ import annotations

import json
import re
import shutil
from importlib import resources
from pathlib import Path
from typing import Any

from spade_lens.errors import SpadeLensError

ASSETS: tuple[str, ...] = ("index.html", "dashboard.css", "dashboard.js")
MARKER = "dashboard.json"
_WRAP = re.compile(r'^SPADE_LENS\.receive\((".*?"), (.*)\);\s*$', re.DOTALL)


def block_file(folder: str, block: int) -> str:
    """Path of a block's data file relative to the dashboard folder."""
    return f"data/{folder}/block-{block:04d}.js"


def _dumps(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), allow_nan=False)


def write_data(root: Path, rel: str, key: str, data: Any) -> None:
    """Write ``data`` as the data file ``root/rel`` under ``key`` (the name the page asks for)."""
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    # "</" is escaped so that no string in the data can close a <script> element.
    body = _dumps(data).replace("</", "<\\/")
    path.write_text(f"SPADE_LENS.receive({json.dumps(key)}, {body});\n", encoding="utf-8")


def read_data(path: str | Path) -> Any:
    """The JSON payload of a data file written by :func:`write_data`."""
    text = Path(path).read_text(encoding="utf-8")
    match = _WRAP.match(text)
    if match is None:
        raise SpadeLensError(f"path: {str(path)!r} is not a dashboard data file; expected SPADE_LENS.receive(...)")
    return json.loads(match.group(2))


def copy_assets(root: Path) -> None:
    """Copy the page's static files into ``root``."""
    folder = resources.files("spade_lens.dashboard") / "assets"
    for name in ASSETS:
        with resources.as_file(folder / name) as src:
            shutil.copyfile(src, root / name)


def write_marker(root: Path, index: dict[str, Any]) -> None:
    (root / MARKER).write_text(json.dumps(index, indent=1, allow_nan=False) + "\n", encoding="utf-8")


def check_out_dir(out: Path, inputs: list[Path]) -> None:
    """Refuse an ``out`` that is a file, an unrelated non-empty folder, or one of the ``inputs``, inside one or
    holding one."""
    resolved = out.resolve()
    for src in inputs:
        src = src.resolve()
        if resolved == src or resolved in src.parents or src in resolved.parents:
            raise SpadeLensError(f"out: {str(out)!r} is, holds or lies inside the input {str(src)!r}; expected a "
                                 "folder apart from the inputs")
    if not out.exists():
        return
    if not out.is_dir():
        raise SpadeLensError(f"out: {str(out)!r} is a file; expected a new folder or a dashboard to replace")
    if any(out.iterdir()) and not (out / MARKER).is_file():
        raise SpadeLensError(f"out: {str(out)!r} is a non-empty folder that is not a dashboard (no {MARKER}); "
                             "expected a new or empty folder, or a dashboard to replace")

"""Where training metrics go: a JSON-lines file, the progress bar, and optionally Weights & Biases.

``out_dir/log.jsonl`` holds one line per SAE per logged step (``kind`` "train") and per evaluation
(``kind`` "eval"), each with ``step`` (steps done), ``tokens`` and ``sae`` (its name).
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

LOG_NAME = "log.jsonl"


def _truncate_log(path: Path, step: int) -> None:
    """Keep only the lines of ``path`` up to ``step`` (a resumed run rewrites what came after its checkpoint)."""
    if not path.is_file():
        return
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    kept = [line for line in lines if json.loads(line).get("step", 0) <= step]
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    tmp.write_text("".join(line + "\n" for line in kept))
    os.replace(tmp, path)


class RunLog:
    """JSON lines in ``out_dir`` (if given), a tqdm bar over the steps, and W&B when asked and installed."""

    def __init__(
        self,
        out_dir: Path | None,
        *,
        total_steps: int,
        start_step: int,
        progress: bool,
        use_wandb: bool,
        wandb_project: str,
        config: dict[str, Any],
    ) -> None:
        self.file = None
        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
            path = out_dir / LOG_NAME
            if start_step > 0:
                _truncate_log(path, start_step)
            self.file = path.open("a" if start_step > 0 else "w")
        self.bar = tqdm(total=total_steps, initial=start_step, disable=not progress, desc="train-sae", unit="step")
        self.wandb: Any = None
        if use_wandb:
            try:
                import wandb
            except ImportError:
                warnings.warn("wandb=True but the wandb package is not installed; not logging to W&B", stacklevel=3)
            else:
                self.wandb = wandb.init(project=wandb_project, config=config, resume="allow")

    def advance(self) -> None:
        self.bar.update(1)

    def write(self, records: list[dict[str, Any]]) -> None:
        """Write records (one per SAE); train records also update the bar's text."""
        if self.file is not None:
            for record in records:
                self.file.write(json.dumps(record) + "\n")
            self.file.flush()
        train = [r for r in records if r.get("kind") == "train"]
        if train:
            self.bar.set_postfix_str(
                " | ".join(
                    f"{r['sae']}: loss {r['loss']:.4g} L0 {r['l0']:.3g} nmse {r['nmse']:.3f} dead {r['dead_fraction']:.2f}"
                    for r in train
                ),
                refresh=False,
            )
        if self.wandb is not None:
            for record in records:
                prefix = f"{record['sae']}/{'eval/' if record.get('kind') == 'eval' else ''}"
                values = {prefix + k: v for k, v in record.items() if k not in ("sae", "kind", "step")}
                self.wandb.log(values, step=record["step"])

    def close(self) -> None:
        self.bar.close()
        if self.file is not None:
            self.file.close()
        if self.wandb is not None:
            self.wandb.finish()

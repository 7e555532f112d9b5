"""spade-lens: sparse autoencoders (ReLU, TopK, JumpReLU, SpaDE) on TransformerLens models.

::

    import spade_lens as sl
    result = sl.run_pipeline("runs/default")            # corpus -> LM -> activations -> 4 SAEs -> probe report
    sae = sl.load_sae("runs/default/saes/spade")        # SAELens layout; raw activations in
    z = sae.encode(acts)                                # (batch, d_sae), on the simplex for spade

Names are imported on first use, so ``import spade_lens`` (and the command line) stays fast; the subpackages
(``spade_lens.saes``, ``.training``, ``.probe``, ``.report``, ``.lm``, ``.metrics``, ``.splice``) hold the rest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from spade_lens._lazy import lazy_exports
from spade_lens.errors import SpadeLensError

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "create_sae": "spade_lens.saes",
    "load_sae": "spade_lens.saes",
    "list_architectures": "spade_lens.saes",
    "register_spade_with_saelens": "spade_lens.saes",
    "sparsemax": "spade_lens.sparsemax",
    "SAETrainConfig": "spade_lens.training",
    "train_saes": "spade_lens.training",
    "probe_saes": "spade_lens.probe",
    "write_report": "spade_lens.report",
    "build_dashboard": "spade_lens.dashboard",
    "spliced_saes": "spade_lens.splice",
    "train_lm": "spade_lens.lm",
    "load_lm": "spade_lens.lm",
    "RunConfig": "spade_lens.pipeline",
    "run_pipeline": "spade_lens.pipeline",
}
__all__ = [
    "RunConfig",
    "SAETrainConfig",
    "SpadeLensError",
    "build_dashboard",
    "create_sae",
    "list_architectures",
    "load_lm",
    "load_sae",
    "probe_saes",
    "register_spade_with_saelens",
    "run_pipeline",
    "sparsemax",
    "spliced_saes",
    "train_lm",
    "train_saes",
    "write_report",
]

if TYPE_CHECKING:
    from spade_lens.dashboard import build_dashboard
    from spade_lens.lm import load_lm, train_lm
    from spade_lens.pipeline import RunConfig, run_pipeline
    from spade_lens.probe import probe_saes
    from spade_lens.report import write_report
    from spade_lens.saes import create_sae, list_architectures, load_sae, register_spade_with_saelens
    from spade_lens.sparsemax import sparsemax
    from spade_lens.splice import spliced_saes
    from spade_lens.training import SAETrainConfig, train_saes


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

"""A latent browser: one static HTML page per run to see what every SAE latent fires on.

``build_dashboard(saes, activations, corpus, out_dir)`` streams the activations once through the SAEs (the
probe's own pass, :func:`spade_lens.probe.stream_probe`) and writes ``out_dir/index.html`` with its data files:
per latent its top-activating tokens in their context (shaded by activation, gold labels on hover), a histogram
of its nonzero activations, firing rate, label distribution, precision / recall / F1 per concept, prototype
distances for SpaDE and, given the model, the logit lens of its decoder row; an index table of every latent,
sortable and filterable, with the run's headline table. No server, no network: open the file in a browser.
"""

from spade_lens.dashboard.build import DashboardConfig, DashboardFiles, build_dashboard
from spade_lens.dashboard.site import read_data

__all__ = ["DashboardConfig", "DashboardFiles", "build_dashboard", "read_data"]

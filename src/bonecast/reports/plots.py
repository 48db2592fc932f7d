"""Figures (matplotlib, no display needed)."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from bonecast import DISCLAIMER
from bonecast.simulation.trials import TrialResult

TITLES = {
    "lumbar_spine": "Lumbar spine BMD",
    "total_hip": "Total hip BMD",
    "femoral_neck": "Femoral neck BMD",
    "ctx": "CTX (resorption)",
    "ntx": "NTX (resorption)",
    "p1np": "P1NP (formation)",
    "bsap": "BSAP (formation)",
    "clinical_fracture": "Clinical fracture (cumulative incidence)",
    "hip_fracture": "Hip fracture (cumulative incidence)",
    "vertebral_fracture": "Clinical vertebral fracture (cumulative incidence)",
}


def plot_trial(result: TrialResult, path: str | Path) -> None:
    """Per quantity, each arm's mean and 5-95 % band of % change from baseline over time."""
    quantities = result.spec.outputs.quantities
    columns = min(3, len(quantities))
    rows = math.ceil(len(quantities) / columns)
    fig, axes = plt.subplots(
        rows, columns, figsize=(5.2 * columns, 3.8 * rows + 0.9), squeeze=False
    )
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    n = result.rows[0].n if result.rows else 0
    for ax, quantity in zip(axes.flat, quantities, strict=False):
        for k, (arm, bands) in enumerate(result.bands.items()):
            band = bands[quantity]
            colour = colours[k % len(colours)]
            ax.fill_between(band.months, band.p05, band.p95, color=colour, alpha=0.18, lw=0)
            ax.plot(band.months, band.mean, color=colour, lw=2, label=arm)
        ax.axhline(0.0, color="0.4", lw=0.8)
        ax.set_title(TITLES[quantity])
        ax.set_xlabel("month")
        ax.set_ylabel(
            "% of patients" if quantity.endswith("fracture") else "% change from baseline"
        )
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(quantities) :]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.suptitle(
        f"{result.spec.name}: mean and 5-95 % band of simulated patients (n = {n} per arm; "
        "bands without DXA measurement error)",
        y=0.995,
        fontsize=12,
    )
    fig.legend(
        handles,
        labels,
        loc="upper center",
        bbox_to_anchor=(0.5, 0.965),
        ncol=min(4, len(labels)),
        frameon=False,
    )
    fig.text(
        0.5,
        0.005,
        f"Parameters: {result.parameter_set_name} ({result.parameter_digest}). {DISCLAIMER}",
        ha="center",
        va="bottom",
        fontsize=7,
        wrap=True,
        color="0.3",
    )
    fig.tight_layout(rect=(0, 0.03, 1, 0.92))
    fig.savefig(path, dpi=120)
    plt.close(fig)

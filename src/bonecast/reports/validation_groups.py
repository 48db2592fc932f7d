"""The validation report by group (issue 14): bias per BMD site and per drug class, BMD after
stopping per drug class, and the femoral neck - each against the published points.

A target's *drug class* is the set of classes of the drugs its arm receives (in words, e.g.
"aromatase inhibitor + bisphosphonate"; "no drug" for a natural-course arm). A target is an
*after-stopping* target when its interval starts after every drug of its arm has stopped
(``stop_month`` at or before the interval's first month); it belongs to the classes stopped.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from bonecast.labels import DRUG_CLASSES
from bonecast.reports.plots import TITLES
from bonecast.simulation.calibration.validation import TargetCheck, ValidationReport
from bonecast.simulation.drugs import DrugClass, get_drug
from bonecast.simulation.parameters import SITES, posterior_draws
from bonecast.simulation.trials import Band

NO_DRUG = "no drug"
"""Drug-class label of an arm without treatment."""
BIAS_COLUMNS = ("grouping", "group", "targets", "mean_difference_pp", "mean_absolute_pp", "passing")
"""Columns of ``validation_bias.csv``."""


def _arm_classes(report: ValidationReport, check: TargetCheck) -> list[DrugClass]:
    link = check.target.link
    spec = report.results[link.trial].spec
    arm = next(a for a in spec.arms if a.name == link.arms[0])
    classes = {get_drug(t.drug).drug_class for t in arm.treatments}
    return sorted(classes, key=list(DrugClass).index)


def drug_class_label(report: ValidationReport, check: TargetCheck) -> str:
    """The drug classes of the target's arm, in words."""
    classes = _arm_classes(report, check)
    return " + ".join(DRUG_CLASSES[c] for c in classes) if classes else NO_DRUG


def stopped_classes(report: ValidationReport, check: TargetCheck) -> list[DrugClass]:
    """Classes stopped before the target's interval begins (empty: not an after-stop target)."""
    link, row = check.target.link, check.target.row
    spec = report.results[link.trial].spec
    arm = next(a for a in spec.arms if a.name == link.arms[0])
    if row.month_from <= 0 or not arm.treatments:
        return []
    if any(t.stop_month is None or t.stop_month > row.month_from for t in arm.treatments):
        return []
    return _arm_classes(report, check)


def _bmd_checks(report: ValidationReport) -> list[TargetCheck]:
    return [
        c for c in report.checks if c.target.link.quantity in SITES and c.difference_pp is not None
    ]


@dataclass(frozen=True)
class BiasRow:
    """Mean signed and absolute difference (model - published, pp) over a group of BMD targets."""

    grouping: str  # "site" or "drug class"
    group: str
    targets: int
    mean_difference_pp: float
    mean_absolute_pp: float
    passing: int


def bias_rows(report: ValidationReport) -> list[BiasRow]:
    """Bias of the BMD targets per site and per drug class (all-target tolerance for passing)."""
    checks = _bmd_checks(report)
    groups: dict[tuple[str, str], list[TargetCheck]] = {}
    for c in checks:
        site = TITLES[c.target.link.quantity].removesuffix(" BMD").lower()
        groups.setdefault(("site", site), []).append(c)
    for c in checks:
        groups.setdefault(("drug class", drug_class_label(report, c)), []).append(c)
    rows = []
    for (grouping, group), members in groups.items():
        diffs = [float(c.difference_pp or 0.0) for c in members]
        rows.append(
            BiasRow(
                grouping,
                group,
                len(members),
                sum(diffs) / len(diffs),
                sum(abs(d) for d in diffs) / len(diffs),
                sum(c.passes(False) for c in members),
            )
        )
    return rows


def mean_absolute_error_pp(report: ValidationReport) -> float:
    """Mean |model - published| over every BMD target (pp)."""
    diffs = [abs(float(c.difference_pp or 0.0)) for c in _bmd_checks(report)]
    return sum(diffs) / len(diffs)


def write_bias_table(rows: Sequence[BiasRow], path: Path) -> None:
    """``validation_bias.csv``: one row per site and per drug class."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(BIAS_COLUMNS)
        for r in rows:
            writer.writerow(
                [
                    r.grouping,
                    r.group,
                    r.targets,
                    f"{r.mean_difference_pp:.2f}",
                    f"{r.mean_absolute_pp:.2f}",
                    r.passing,
                ]
            )


def plot_bias(rows: Sequence[BiasRow], path: Path) -> None:
    """Bars of the mean signed difference per group, dots at the mean absolute difference."""
    fig, ax = plt.subplots(figsize=(8.0, 0.42 * len(rows) + 1.4))
    labels = [f"{r.group} ({r.grouping}, {r.targets})" for r in rows]
    y = list(range(len(rows)))[::-1]
    ax.barh(y, [r.mean_difference_pp for r in rows], color="#0072B2", label="mean difference")
    ax.plot(
        [r.mean_absolute_pp for r in rows],
        y,
        "o",
        color="#D55E00",
        label="mean absolute difference",
    )
    ax.set_yticks(y, labels, fontsize=8)
    ax.axvline(0, color="0.4", lw=0.8)
    ax.set_xlabel("model minus published, percentage points (BMD targets)")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    ax.set_title("Bias per site and per drug class", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _since(band: Band, start: float) -> tuple[list[float], list[float]]:
    """Months since ``start`` and % change since ``start`` of the band's mean, from ``start``."""
    months = [float(m) for m in band.months]
    if start not in months:
        return [], []
    base = 100.0 + float(band.mean[months.index(start)])
    points = [
        (m - start, 100.0 * (100.0 + float(v)) / base - 100.0)
        for m, v in zip(months, band.mean, strict=True)
        if m >= start
    ]
    return [p[0] for p in points], [p[1] for p in points]


def plot_after_stopping(report: ValidationReport, path: Path) -> bool:
    """One panel per stopped drug class: each after-stop target's simulated course since the
    drug stopped (arm minus its comparator for a between-arm target) and the published change
    with its tolerance. Returns False (and draws nothing) when no target is after stopping."""
    by_class: dict[DrugClass, list[TargetCheck]] = {}
    for c in _bmd_checks(report):
        for cls in stopped_classes(report, c):
            by_class.setdefault(cls, []).append(c)
    if not by_class:
        return False
    columns = min(2, len(by_class))
    rows = math.ceil(len(by_class) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(7.0 * columns, 5.0 * rows), squeeze=False)
    for ax in axes.flat[len(by_class) :]:
        ax.set_visible(False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (cls, checks) in zip(axes.flat, by_class.items(), strict=False):
        for k, c in enumerate(checks):
            row, link = c.target.row, c.target.link
            bands = report.results[link.trial].bands
            x, y = _since(bands[link.arms[0]][link.quantity], row.month_from)
            if link.minus is not None:
                _, other = _since(bands[link.minus][link.quantity], row.month_from)
                y = [a - b for a, b in zip(y, other, strict=True)]
            colour = colours[k % len(colours)]
            span = row.month_to - row.month_from
            shown = [(m, v) for m, v in zip(x, y, strict=True) if m <= span + 1e-9]
            ax.plot([p[0] for p in shown], [p[1] for p in shown], color=colour, lw=1.6)
            ax.errorbar(
                span,
                row.value_pct,
                yerr=c.target.tolerance_pp(row.weight == "H"),
                fmt="o" if c.passes(row.weight == "H") else "X",
                color=colour,
                mec="k",
                capsize=3,
                ms=7,
                zorder=5,
            )
            site = TITLES[link.quantity].removesuffix(" BMD").lower()
            ax.annotate(
                f"{row.target_id} ({row.trial}, {site})",
                (span, row.value_pct),
                textcoords="offset points",
                xytext=(4, 3),
                fontsize=7,
            )
        ax.axhline(0, color="0.5", lw=0.7)
        ax.set_title(f"After stopping: {DRUG_CLASSES[cls]}", fontsize=10)
        ax.set_xlabel("months since stopping")
        ax.set_ylabel("% BMD change since stopping")
        ax.grid(alpha=0.3)
    fig.suptitle(
        "Model (lines) vs published (o pass, x miss; bars = tolerance); "
        "between-arm targets drawn as the difference",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def femoral_neck_share(report: ValidationReport) -> tuple[float, float, float] | None:
    """The femoral neck's trabecular share: value and 95 % posterior interval (None without a
    posterior sample)."""
    params = report.parameter_set
    sample = sorted(d["f_femoral_neck"] for d in posterior_draws(params) if "f_femoral_neck" in d)
    if not sample:
        return None
    low = sample[math.floor(0.025 * (len(sample) - 1))]
    high = sample[math.ceil(0.975 * (len(sample) - 1))]
    return params.parameters["f_femoral_neck"].value, low, high


def plot_femoral_neck(report: ValidationReport, path: Path) -> bool:
    """Every femoral-neck target: model against published with its tolerance and the identity
    line. Returns False (and draws nothing) without femoral-neck targets."""
    checks = [c for c in _bmd_checks(report) if c.target.link.quantity == "femoral_neck"]
    if not checks:
        return False
    fig, ax = plt.subplots(figsize=(6.2, 5.6))
    values = [float(c.target.row.value_pct or 0.0) for c in checks] + [c.model_pct for c in checks]
    low, high = min(values) - 1.5, max(values) + 1.5
    ax.plot([low, high], [low, high], color="0.5", lw=0.8)
    for c in checks:
        row = c.target.row
        ok = c.passes(row.weight == "H")
        ax.errorbar(
            float(row.value_pct or 0.0),
            c.model_pct,
            xerr=c.target.tolerance_pp(row.weight == "H"),
            fmt="o" if ok else "X",
            color="#009E73" if ok else "#D55E00",
            mec="k",
            capsize=3,
        )
        ax.annotate(
            f"{row.target_id} ({row.trial})",
            (row.value_pct or 0.0, c.model_pct),
            textcoords="offset points",
            xytext=(4, 3),
            fontsize=7,
        )
    share = femoral_neck_share(report)
    title = "Femoral neck BMD: model vs published"
    if share is not None:
        title += f"\ntrabecular share {share[0]:.2f} (95 % interval {share[1]:.2f}-{share[2]:.2f})"
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("published % change (bars = tolerance)")
    ax.set_ylabel("model % change")
    ax.set_xlim(low, high)
    ax.set_ylim(low, high)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True

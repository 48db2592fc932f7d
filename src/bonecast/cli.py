"""The ``bonecast`` command line (Typer + Rich).

Exit status: 0 on success, 2 for invalid input (the message names the field and what is
accepted; nothing is written), 1 for anything else.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from bonecast import DISCLAIMER
from bonecast.progress import progress_bar
from bonecast.reports.plots import plot_trial
from bonecast.simulation import (
    DRUGS,
    TrialSpecError,
    default_parameter_set,
    load_parameter_set,
    load_trial_spec,
    run_trial,
)
from bonecast.simulation.parameters import ParameterSet

app = typer.Typer(
    help="bonecast: bone health under aromatase inhibitors. " + DISCLAIMER,
    no_args_is_help=True,
    add_completion=False,
)
trial_app = typer.Typer(help="Virtual trials.", no_args_is_help=True)
app.add_typer(trial_app, name="trial")

console = Console()
errors = Console(stderr=True)

INVALID_INPUT = 2


def _fail(message: str) -> typer.Exit:
    errors.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(INVALID_INPUT)


def _writable(path: Path, option: str) -> None:
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise _fail(f"{option}: the folder {parent} does not exist")
    if path.is_dir():
        raise _fail(f"{option}: {path} is a folder, not a file")


def _parameters(path: Path | None) -> ParameterSet:
    if path is None:
        return default_parameter_set()
    try:
        return load_parameter_set(path)
    except (OSError, ValueError) as error:
        raise _fail(f"--parameters: cannot use {path}: {error}") from None


@trial_app.command("run")
def trial_run(
    spec: Annotated[Path, typer.Argument(help="Trial specification (YAML or JSON).")],
    out: Annotated[Path, typer.Option("--out", help="Result CSV to write.")],
    plot: Annotated[
        Path | None,
        typer.Option("--plot", help="PNG figure: per site, each arm's mean and 5-95 % band."),
    ] = None,
    parameters: Annotated[
        Path | None, typer.Option("--parameters", help="Parameter set (YAML); default: bonecast's.")
    ] = None,
) -> None:
    """Run a virtual trial and write one row per arm x quantity x interval."""
    try:
        trial = load_trial_spec(spec)
    except TrialSpecError as error:
        raise _fail(str(error)) from None
    _writable(out, "--out")
    if plot is not None:
        _writable(plot, "--plot")
    params = _parameters(parameters)
    n = trial.population.n if trial.population.variability else 1
    total = len(trial.arms) * n * trial.horizon_days
    with progress_bar(errors) as progress:
        task = progress.add_task(
            f"{trial.name}: {len(trial.arms)} arms x {n} patients x {trial.horizon_days} days",
            total=total,
        )
        result = run_trial(trial, params, progress=lambda k: progress.advance(task, k))
    figure_tmp: str | None = None
    try:
        if plot is not None:
            fd, figure_tmp = tempfile.mkstemp(
                prefix=f".{plot.name}.", suffix=".png", dir=plot.parent
            )
            os.close(fd)
            plot_trial(result, figure_tmp)
        result.write_csv(out)
        if plot is not None and figure_tmp is not None:
            os.replace(figure_tmp, plot)
            figure_tmp = None
    finally:
        if figure_tmp is not None:
            Path(figure_tmp).unlink(missing_ok=True)
    console.print(f"Wrote {len(result.rows)} rows to [bold]{out}[/]")
    if plot is not None:
        console.print(f"Wrote the figure to [bold]{plot}[/]")
    console.print(f"[dim]Parameters: {params.name} ({params.digest()}). {DISCLAIMER}[/]")


@trial_app.command("check")
def trial_check(
    spec: Annotated[Path, typer.Argument(help="Trial specification (YAML or JSON).")],
) -> None:
    """Validate a trial specification without running it."""
    try:
        trial = load_trial_spec(spec)
    except TrialSpecError as error:
        raise _fail(str(error)) from None
    console.print(
        f"{spec}: valid ({len(trial.arms)} arms, {trial.population.n} patients per arm, "
        f"{trial.outputs.horizon_months:g} months)"
    )


@app.command("drugs")
def drugs() -> None:
    """List the drugs bonecast simulates, with their routes and standard regimens."""
    table = Table(title="Drugs")
    table.add_column("drug", no_wrap=True)
    for column in ("class", "routes", "standard regimens", "dose handling"):
        table.add_column(column, overflow="fold")
    for drug in DRUGS.values():
        regimens = "; ".join(
            f"{r.dose_mg:g} mg {r.route.value} every {r.interval_days:g} d" for r in drug.regimens
        )
        table.add_row(
            drug.name,
            drug.drug_class.value,
            ", ".join(r.value for r in drug.routes),
            regimens,
            "standard dose only (exposure)" if drug.is_exposure else "any dose (dose-response)",
        )
    console.print(table)


@app.command("parameters")
def parameters_show(
    file: Annotated[
        Path | None, typer.Option("--file", help="Parameter set (YAML); default: bonecast's.")
    ] = None,
) -> None:
    """Show a parameter set: every value with its unit and source."""
    params = _parameters(file)
    table = Table(title=f"{params.name} v{params.version} ({params.digest()})")
    table.add_column("name", no_wrap=True)
    for column in ("symbol", "value", "unit", "calibrated?", "source"):
        table.add_column(column, overflow="fold")
    for name, entry in params.parameters.items():
        table.add_row(
            name,
            entry.symbol,
            f"{entry.value:g}",
            entry.unit,
            "yes" if entry.calibrate else "",
            entry.source,
        )
    console.print(table)


if __name__ == "__main__":  # pragma: no cover
    app()

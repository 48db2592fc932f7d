"""The ``bonecast`` command line (Typer + Rich).

Exit status: 0 on success, 2 for invalid input (the message names the field and what is
accepted; nothing is written), 1 for anything else.
"""

from __future__ import annotations

import csv
import json
import math
import os
import sys
import tempfile
import time
from contextlib import AbstractContextManager, nullcontext
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, cast

import typer
from rich.console import Console

from bonecast import DISCLAIMER

if TYPE_CHECKING:  # the commands import what they use when they run (fast --help)
    from bonecast.clinical import Patient
    from bonecast.registry import Registry, RegistryError
    from bonecast.registry.models import ThrottleScope
    from bonecast.simulation.calibration.targets import TargetSet
    from bonecast.simulation.executors import Executor
    from bonecast.simulation.parameters import ParameterSet
    from bonecast.simulation.solver import Engine
    from bonecast.simulation.trials import SummaryRow

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
    from bonecast.simulation import default_parameter_set, load_parameter_set

    if path is None:
        return default_parameter_set()
    try:
        return load_parameter_set(path)
    except (OSError, ValueError) as error:
        raise _fail(f"--parameters: cannot use {path}: {error}") from None


RUNNING_CSV_EVERY_S = 1.0
"""Shortest interval between two writes of a trial's running result CSV, s."""


def _executor(
    workers: int | None, scheduler: str | None
) -> AbstractContextManager[Executor | None]:
    """A Dask executor for --workers or --scheduler (at most one of them), else ``None``."""
    if workers is not None and scheduler is not None:
        raise _fail("--workers and --scheduler: give one of them, not both")
    if workers is None and scheduler is None:
        return nullcontext(None)
    from bonecast.simulation.executors import dask_executor

    return dask_executor(workers, scheduler)


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
    engine: Annotated[
        str,
        typer.Option(
            "--engine",
            help="Integrator: auto (default: the compiled Numba kernel, or NumPy when Numba "
            "cannot be imported), numba (compiled) or numpy (the reference path).",
        ),
    ] = "auto",
    uncertainty: Annotated[
        int,
        typer.Option(
            "--uncertainty",
            min=0,
            max=200,
            help="Posterior parameter draws for credible intervals (adds param_cri05/95).",
        ),
    ] = 0,
    predictive: Annotated[
        bool,
        typer.Option(
            "--predictive",
            help="With --uncertainty: param_cri05/95 become the 5-95 % predictive interval of "
            "this trial's mean change (adds the between-trial SD and the sampling error for the "
            "spec's n).",
        ),
    ] = False,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=1,
            help="Simulate chunks on a local Dask cluster of N processes sharing the cores.",
        ),
    ] = None,
    scheduler: Annotated[
        str | None,
        typer.Option("--scheduler", help="Simulate chunks on the Dask scheduler at ADDRESS."),
    ] = None,
    chunk_size: Annotated[
        int | None,
        typer.Option("--chunk-size", min=1, help="Patients per chunk (rows do not depend on it)."),
    ] = None,
) -> None:
    """Run a virtual trial and write one row per arm x quantity x interval.

    With --workers or --scheduler, chunks of patients run on Dask workers, each reduced there to
    exact summaries; the rows are the same as a serial run's. The result CSV is rewritten
    (atomically) as chunks arrive, at most every second, its n column counting the patients so
    far; when the command ends it holds them all.
    """
    from bonecast.progress import progress_bar
    from bonecast.simulation import TrialSpecError, load_trial_spec, run_trial
    from bonecast.simulation.trials import write_rows_csv

    try:
        trial = load_trial_spec(spec)
    except TrialSpecError as error:
        raise _fail(str(error)) from None
    _writable(out, "--out")
    if plot is not None:
        _writable(plot, "--plot")
    if engine not in ("numpy", "numba", "auto"):
        raise _fail(f"--engine: {engine!r} is not one of numpy, numba, auto")
    if predictive and not uncertainty:
        raise _fail("--predictive: needs --uncertainty N (posterior draws, e.g. 100)")
    params = _parameters(parameters)
    n = trial.population.n if trial.population.variability else 1
    written = [-math.inf]  # when the running CSV was last written (time.monotonic)

    def running_csv(rows: list[SummaryRow]) -> None:
        if rows[0].n == n or time.monotonic() - written[0] >= RUNNING_CSV_EVERY_S:
            write_rows_csv(out, rows)
            written[0] = time.monotonic()

    with (
        _executor(workers, scheduler) as executor,
        progress_bar(errors) as progress,
    ):
        task = progress.add_task(
            f"{trial.name}: {len(trial.arms)} arms x {n} patients x {trial.horizon_days} days",
            total=len(trial.arms) * n * trial.horizon_days,
        )
        try:
            result = run_trial(
                trial,
                params,
                progress=lambda k: progress.advance(task, k),
                parameter_draws=uncertainty,
                engine=cast("Engine", engine),
                chunk_size=chunk_size,
                executor=executor,
                on_rows=running_csv,
                predictive=predictive,
            )
        except ValueError as error:  # a set without a posterior or between-trial SD
            raise _fail(f"--{'predictive' if predictive else 'uncertainty'}: {error}") from None
    if plot is not None:
        from bonecast.reports.plots import plot_trial

        fd, figure_tmp = tempfile.mkstemp(prefix=f".{plot.name}.", suffix=".png", dir=plot.parent)
        os.close(fd)
        try:
            plot_trial(result, figure_tmp)
            os.replace(figure_tmp, plot)
        finally:
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
    from bonecast.simulation import TrialSpecError, load_trial_spec

    try:
        trial = load_trial_spec(spec)
    except TrialSpecError as error:
        raise _fail(str(error)) from None
    console.print(
        f"{spec}: valid ({len(trial.arms)} arms, {trial.population.n} patients per arm, "
        f"{trial.outputs.horizon_months:g} months)"
    )


DEFAULT_CALIBRATION_TRIALS = Path("examples/trials/calibration")
HOLDOUT_TRIALS = Path("examples/trials/holdout")
"""Specs of the published trials the model is never fitted to (``bonecast validate``)."""


def _trials_folder(folder: Path) -> Path:
    if not folder.is_dir():
        raise _fail(f"--trials: the folder {folder} does not exist (run from the repository root)")
    return folder


def _targets(path: Path | None) -> TargetSet:
    from bonecast.simulation.calibration.targets import load_targets

    try:
        return load_targets(path)
    except (OSError, ValueError) as error:
        raise _fail(f"--targets: cannot use {path}: {error}") from None


@app.command("calibrate")
def calibrate_command(
    out: Annotated[
        Path, typer.Option("--out", help="Parameter set to write (YAML; posterior CSV beside it).")
    ] = Path("results/calibration/aibl2c_calibrated.yaml"),
    quick: Annotated[
        bool, typer.Option("--quick", help="A few evaluations per stage (tests).")
    ] = False,
    trials: Annotated[
        Path, typer.Option("--trials", help="Folder of the calibration trial specs.")
    ] = DEFAULT_CALIBRATION_TRIALS,
    targets_csv: Annotated[
        Path | None, typer.Option("--targets", help="Targets CSV; default: bonecast's copy.")
    ] = None,
    start: Annotated[
        Path | None,
        typer.Option(
            "--start", help="Starting parameter set; default: docs/model/parameters.md section 7."
        ),
    ] = None,
) -> None:
    """Fit the calibrated parameters to the published targets (staged MAP with priors)."""
    from rich.table import Table

    from bonecast.progress import progress_bar
    from bonecast.simulation.calibration.fit import calibrate, write_calibration
    from bonecast.simulation.parameters import start_parameter_set

    folder = _trials_folder(trials)
    targets = _targets(targets_csv)
    start_set = start_parameter_set() if start is None else _parameters(start)
    if not out.parent.exists():
        out.parent.mkdir(parents=True)
    with progress_bar(errors) as progress:
        task = progress.add_task("calibrating", total=None)
        result = calibrate(
            start_set,
            targets,
            folder,
            quick=quick,
            on_evaluation=lambda: progress.advance(task),
            on_stage=lambda name: progress.update(task, description=f"stage {name}"),
        )
    posterior = write_calibration(result, out)
    table = Table(
        title=f"Calibration ({'quick' if quick else 'full'}), objective {result.objective:.3f}"
    )
    for column in ("stage", "targets", "objective before", "after", "evaluations"):
        table.add_column(column)
    for stage in result.stages:
        table.add_row(
            stage.name,
            str(len(stage.targets)),
            f"{stage.objective_start:.3f}",
            f"{stage.objective_end:.3f}",
            str(stage.evaluations),
        )
    console.print(table)
    console.print(f"Wrote [bold]{out}[/] and its posterior sample [bold]{posterior}[/]")


@app.command("validate")
def validate_command(
    out: Annotated[Path, typer.Option("--out", help="Folder for the report.")] = Path(
        "results/validation"
    ),
    parameters: Annotated[
        Path | None, typer.Option("--parameters", help="Parameter set (YAML); default: bonecast's.")
    ] = None,
    trials: Annotated[
        Path, typer.Option("--trials", help="Folder of the calibration trial specs.")
    ] = DEFAULT_CALIBRATION_TRIALS,
    n_per_arm: Annotated[
        int | None, typer.Option("--n-per-arm", min=1, help="Override the specs' population sizes.")
    ] = None,
    holdout_trials: Annotated[
        Path,
        typer.Option(
            "--holdout-trials",
            help="Folder of the specs of the trials the model is never fitted to.",
        ),
    ] = HOLDOUT_TRIALS,
) -> None:
    """Run every calibration trial and compare the model with each published target, then
    predict the published trials the model was never fitted to."""
    from bonecast.progress import progress_bar
    from bonecast.reports.validation_report import write_validation_report
    from bonecast.simulation.calibration.fit import EXTERNAL_CHECKS
    from bonecast.simulation.calibration.validation import validate, validation_patient_days

    folder = _trials_folder(trials)
    holdout_folder = _trials_folder(holdout_trials)
    params = _parameters(parameters)
    targets = _targets(None)
    with progress_bar(errors) as progress:
        total = validation_patient_days(folder, targets, n_per_arm, holdout_folder)
        task = progress.add_task("validating", total=total)
        report = validate(
            params,
            targets,
            folder,
            n_per_arm=n_per_arm,
            external=EXTERNAL_CHECKS,
            progress=lambda k: progress.advance(task, k),
            holdout_trials=holdout_folder,
        )
    page = write_validation_report(report, out)
    head = report.headline()
    console.print(
        f"{head['high_weight_pass']}/{head['high_weight_total']} high-weight targets within "
        f"max(CI half-width, 1.0 pp); {head['all_pass']}/{head['all_total']} targets within "
        f"max(CI half-width, 1.5 pp)"
    )
    if report.heterogeneity is None:
        console.print("no between-trial SD in this parameter set: no predictive intervals")
    else:
        console.print(
            f"{head['covered']}/{head['covered_total']} targets inside their 95 % predictive "
            "interval; between-trial SD "
            + ", ".join(
                f"{site.replace('_', ' ')} {t[0]:.2f} pp ({t[1]:.2f}-{t[2]:.2f})"
                for site, t in report.heterogeneity.tau_pp.items()
            )
        )
    for miss in report.misses():
        diff = miss.difference_pp
        shown = "wrong sign" if diff is None else f"{diff:+.2f} pp"
        console.print(f"  miss {miss.target.target_id}: {shown}")
    if report.men is not None:
        men = report.men.headline()
        console.print(f"men: {men['pass']}/{men['total']} male targets within tolerance")
    if report.holdout is not None:
        held = report.holdout.headline()
        console.print(
            f"trials never fitted to: {held['within']}/{held['total']} published results within "
            f"max(CI half-width, 1.0 pp), mean absolute error {held['mae_pp']:.2f} pp, "
            f"{held['covered']}/{held['covered_total']} inside their 95 % predictive interval"
        )
    inside = sum(f.passes for f in report.fractures)
    covered = sum(f.covered for f in report.fractures)
    console.print(
        f"fractures: {inside}/{len(report.fractures)} published results inside their 95 % "
        f"interval, {covered}/{len(report.fractures)} inside the model's predictive interval"
    )
    if report.fracture_fit is not None:
        for check in report.fracture_fit.leave_one_trial_out:
            console.print(
                f"  each trial left out of the fit ({check.structure}): {check.inside}/"
                f"{check.total} inside their 95 % interval"
            )
    for fracture in report.fractures:
        verdict = "inside" if fracture.passes else "OUTSIDE"
        low, high = fracture.interval
        console.print(
            f"  {fracture.target.target_id} ({fracture.target.role}) {fracture.outcome}: model "
            f"{fracture.model:.2f}, published {fracture.target.value:.2f} "
            f"({low:.2f} to {high:.2f}): {verdict}"
        )
    console.print(f"Report: [bold]{page}[/]")


@app.command("drugs")
def drugs() -> None:
    """List the drugs bonecast simulates, with their routes and standard regimens."""
    from rich.table import Table

    from bonecast.simulation import DRUGS

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


class ParameterFormat(StrEnum):
    """Output of ``bonecast parameters``."""

    TABLE = "table"
    CSV = "csv"


@app.command("parameters")
def parameters_show(
    file: Annotated[
        Path | None, typer.Option("--file", help="Parameter set (YAML); default: bonecast's.")
    ] = None,
    output: Annotated[
        ParameterFormat,
        typer.Option(
            "--format",
            help="table for people; csv (to stdout) adds prior ranges and 95 % posterior "
            "intervals.",
        ),
    ] = ParameterFormat.TABLE,
) -> None:
    """Show a parameter set: every value with its unit and source."""
    from rich.table import Table

    from bonecast.simulation.parameters import PARAMETER_SUMMARY_COLUMNS, parameter_summary

    params = _parameters(file)
    if output is ParameterFormat.CSV:
        writer = csv.DictWriter(sys.stdout, fieldnames=PARAMETER_SUMMARY_COLUMNS)
        writer.writeheader()
        writer.writerows(parameter_summary(params))
        return
    table = Table(title=f"{params.name} v{params.version} ({params.digest()})")
    table.add_column("name", no_wrap=True)
    for column in ("symbol", "value", "unit", "fit", "source"):  # fit: by bonecast calibrate
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


class OutputFormat(StrEnum):
    """Output of ``bonecast assess``."""

    TEXT = "text"
    JSON = "json"


def _fhir_patient(path: Path) -> tuple[Patient, list[str]]:
    """The clinical input of a FHIR Bundle file, with the decoder's notes."""
    from bonecast.services import PrefetchError
    from bonecast.services.fhir_input import patient_from_bundle

    try:
        bundle = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise _fail(f"{path}: not a readable JSON file ({error})") from None
    try:
        return patient_from_bundle(bundle)
    except PrefetchError as error:
        raise _fail(f"{path}: {error}") from None


@app.command("assess")
def assess_patient(
    patient: Annotated[Path, typer.Argument(help="Patient file (JSON; see the README).")],
    guideline: Annotated[
        str | None,
        typer.Option("--guideline", help="Rule set: aibl-2025 (default) or aibl-2017."),
    ] = None,
    output: Annotated[
        OutputFormat, typer.Option("--format", help="text for people, json for machines.")
    ] = OutputFormat.TEXT,
    precision: Annotated[
        Path | None,
        typer.Option(
            "--precision",
            help="Facility precision study CSV (patient_id,site,bmd_g_cm2); default: ISCD LSCs.",
        ),
    ] = None,
    forecast_years: Annotated[
        int,
        typer.Option(
            "--forecast-years",
            help="Personal BMD forecast horizon: 5-10 years under three plans (0: none).",
        ),
    ] = 5,
    fhir: Annotated[
        bool,
        typer.Option(
            "--fhir",
            help="The patient file is a FHIR R4 Bundle (Patient, DXA Observations, "
            "MedicationStatements), e.g. from bonecast export.",
        ),
    ] = False,
) -> None:
    """Assess one patient: scores, real change, fracture risk and the guideline recommendation."""
    from bonecast.clinical import (
        DEFAULT_RULE_SET,
        PatientError,
        PrecisionError,
        assess,
        load_patient,
        load_precision_study,
        lsc_table,
        render_text,
        rule_set_names,
    )

    if guideline is None:
        guideline = DEFAULT_RULE_SET
    if guideline not in rule_set_names():
        accepted = ", ".join(rule_set_names())
        raise _fail(f"--guideline: unknown rule set {guideline!r}; accepted: {accepted}")
    notes: list[str] = []
    try:
        if fhir:
            record, notes = _fhir_patient(patient)
        else:
            record = load_patient(patient)
        study = None if precision is None else load_precision_study(precision)
    except (PatientError, PrecisionError) as error:
        raise _fail(str(error)) from None
    for note in notes:
        errors.print(f"FHIR input: {note}", highlight=False)
    if forecast_years and not 5 <= forecast_years <= 10:
        raise _fail(f"--forecast-years: {forecast_years} is outside 5-10 (or 0 for none)")
    result = assess(record, guideline, lsc_table(study), forecast_years=forecast_years)
    if output is OutputFormat.JSON:
        typer.echo(result.model_dump_json(indent=2))
    else:
        console.print(render_text(result))


# --- server and registry --------------------------------------------------------------------

db_app = typer.Typer(help="The registry database.", no_args_is_help=True)
users_app = typer.Typer(help="Users of the web application and API.", no_args_is_help=True)
token_app = typer.Typer(help="API bearer tokens.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(users_app, name="users")
app.add_typer(token_app, name="token")
audit_app = typer.Typer(help="The registry's audit log.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")

DEFAULT_DATABASE = "sqlite:///bonecast.db"
CLI_ACTOR = "system:cli"
Database = Annotated[
    str,
    typer.Option("--database", help="Registry URL: sqlite:///file.db or postgresql+psycopg://..."),
]


def _database_errors() -> tuple[type[Exception], ...]:
    """A bad URL, a missing driver, a database that does not answer."""
    from sqlalchemy.exc import SQLAlchemyError

    return (SQLAlchemyError, ValueError)


Actor = Annotated[str, typer.Option("--actor", help="Who the writes are attributed to (audit).")]


def _registry(database: str) -> Registry:
    """The registry at ``database``, which must already be migrated (``bonecast db upgrade``)."""
    from bonecast.registry import Registry

    try:
        registry = Registry(database)
        revision = registry.schema_revision()
    except _database_errors() as error:
        raise _fail(f"--database: cannot open {database}: {error}") from None
    if revision is None:
        raise _fail(f"--database: {database} has no registry; run bonecast db upgrade first")
    return registry


def _invalid(error: RegistryError) -> typer.Exit:
    from bonecast.registry import InvalidInputError

    problems = error.problems if isinstance(error, InvalidInputError) else [error.problem()]
    return _fail("; ".join(str(problem) for problem in problems))


@app.command("serve")
def serve(
    database: Database = DEFAULT_DATABASE,
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 8000,
    workers: Annotated[
        int, typer.Option("--workers", min=1, help="Server processes (each with its own cache).")
    ] = 1,
    scheduler: Annotated[
        str | None,
        typer.Option("--scheduler", help="Run the trial page's jobs on the Dask scheduler here."),
    ] = None,
    forecast_processes: Annotated[
        int | None,
        typer.Option(
            "--forecast-processes",
            min=0,
            help="Forecast worker processes per server process (default: one per core; 0: "
            "forecasts one at a time in each server process).",
        ),
    ] = None,
) -> None:
    """Run the web service: REST API (/api/v1), CDS Hooks (/cds-services), /health.

    Requests are not logged (their URLs may carry patient names or MRNs). With ``--workers N``
    the registry is migrated first, then N processes listen on the port (the kernel spreads
    connections over them). Each server process starts its forecast worker processes, so that
    concurrent first requests for forecasts run side by side.
    """
    import uvicorn

    from bonecast.api.app import create_app
    from bonecast.api.workers import run_workers
    from bonecast.registry import upgrade
    from bonecast.services.forecast_pool import default_processes
    from bonecast.web.security import SecretKeyMissingError, secret_key

    forecasters = default_processes() if forecast_processes is None else forecast_processes
    if workers == 1:
        application = create_app(
            database, trial_scheduler=scheduler, forecast_processes=forecasters
        )
        uvicorn.run(application, host=host, port=port, access_log=False)
        return
    try:
        upgrade(database)  # once, before the workers (each would migrate at start-up)
        secret_key(_registry(database))  # every worker must sign sessions with the same key
    except _database_errors() as error:
        raise _fail(f"--database: cannot migrate {database}: {error}") from None
    except SecretKeyMissingError as error:
        raise _fail(f"refusing to start {workers} workers: {error}") from None
    code = run_workers(database, host, port, workers, scheduler, forecasters)
    if code:
        raise _fail(f"a server process stopped with exit code {code} (is port {port} free?)")


@app.command("demo")
def demo(database: Database = DEFAULT_DATABASE) -> None:
    """Migrate the registry and, if it is empty, seed synthetic demo patients and a demo user."""
    from bonecast.registry import upgrade
    from bonecast.services.demo import DEMO_PASSWORD, DEMO_USERNAME, seed_demo

    try:
        upgrade(database)
    except _database_errors() as error:
        raise _fail(f"--database: cannot migrate {database}: {error}") from None
    added = seed_demo(_registry(database))
    console.print(
        f"{database}: {added} synthetic demo patients added"
        if added
        else f"{database}: already has data; nothing seeded"
    )
    console.print(f"Demo sign-in: {DEMO_USERNAME} / {DEMO_PASSWORD}")
    _warm_compiled_engine()


def _warm_compiled_engine() -> None:
    """Compile the simulator's kernel now (once per install: Numba caches it on disk), so that
    the first trial or forecast does not wait for it."""
    from bonecast.clinical.forecast import prepare_engine

    started = time.perf_counter()
    with console.status("Preparing the compiled simulator (once per install)..."):
        prepare_engine()
    console.print(f"Compiled simulator ready ({time.perf_counter() - started:.1f} s)")


@db_app.command("upgrade")
def db_upgrade(database: Database = DEFAULT_DATABASE) -> None:
    """Create the registry or migrate it to the latest schema."""
    from bonecast.registry import upgrade

    try:
        upgrade(database)
    except _database_errors() as error:
        raise _fail(f"--database: cannot migrate {database}: {error}") from None
    console.print(f"{database}: schema at revision {_registry(database).schema_revision()}")


@db_app.command("rotate-key")
def db_rotate_key(database: Database = DEFAULT_DATABASE, actor: Actor = CLI_ACTOR) -> None:
    """Replace the registry's session-signing key (audited); restart the servers to use it.

    Everyone signed in must sign in again. Has no effect while BONECAST_SECRET_KEY is set.
    """
    from bonecast.registry.models import SECRET_KEY_SETTING
    from bonecast.web.security import SECRET_KEY_ENV, new_secret_key

    with _registry(database).session(actor=actor) as session:
        session.set_setting(SECRET_KEY_SETTING, new_secret_key())
    console.print(f"{database}: new session key stored; restart the servers to use it")
    if os.environ.get(SECRET_KEY_ENV):
        errors.print(f"Note: {SECRET_KEY_ENV} is set here and overrides the stored key.")


@db_app.command("backup")
def db_backup(
    path: Annotated[Path, typer.Argument(help="The new backup file.")],
    database: Database = DEFAULT_DATABASE,
) -> None:
    """Copy the registry to PATH while servers keep running (SQLite's online backup).

    For PostgreSQL, prints the pg_dump command to use instead.
    """
    from bonecast.registry.backup import BackupError, backup

    try:
        backup(database, path)
    except BackupError as error:
        raise _fail(str(error)) from None
    console.print(f"{database}: backed up to {path}")


@db_app.command("restore")
def db_restore(
    path: Annotated[Path, typer.Argument(help="A backup made by bonecast db backup.")],
    database: Database = DEFAULT_DATABASE,
) -> None:
    """Restore a backup into a new, empty registry and migrate it to the current schema.

    For PostgreSQL, prints the pg_restore command to use instead.
    """
    from bonecast.registry.backup import BackupError, restore

    try:
        restore(path, database)
    except BackupError as error:
        raise _fail(str(error)) from None
    console.print(f"{database}: restored from {path}")


@audit_app.command("verify")
def audit_verify(database: Database = DEFAULT_DATABASE) -> None:
    """Check the audit log's hash chain; report the first entry that breaks it (exit code 1)."""
    from bonecast.registry.audit import verify_chain

    registry = _registry(database)
    with registry.engine.connect() as connection:
        report = verify_chain(connection)
    if not report.intact:
        raise _fail(
            f"audit log broken at entry {report.broken_id} ({report.entries} checked): "
            f"{report.problem}"
        )
    console.print(f"{database}: audit log intact ({report.entries} entries)")


@users_app.command("unlock")
def users_unlock(
    username: Annotated[
        str | None, typer.Argument(help="The user locked out after failed sign-ins.")
    ] = None,
    address: Annotated[
        str | None, typer.Option("--address", help="A client address locked out instead.")
    ] = None,
    database: Database = DEFAULT_DATABASE,
    actor: Actor = CLI_ACTOR,
) -> None:
    """Lift a sign-in lockout of a username or a client address (audited)."""
    if (username is None) == (address is None):
        raise _fail("give a USERNAME or --address, not both")
    scope: ThrottleScope = "username" if username else "address"
    key = username.lower() if username else str(address)
    with _registry(database).session(actor=actor) as session:
        lifted = session.lift_lockout(scope, key)
    console.print(f"{scope} {key}: {lifted} active lockout(s) lifted; failures forgotten")


@users_app.command("create")
def users_create(
    username: Annotated[str, typer.Argument(help="Lower-case login name.")],
    role: Annotated[str, typer.Option("--role", help="admin, clinician or viewer.")],
    database: Database = DEFAULT_DATABASE,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
    display_name: Annotated[str | None, typer.Option("--display-name")] = None,
    actor: Actor = CLI_ACTOR,
) -> None:
    """Add a user; the password (12+ characters) is prompted for unless --password-stdin."""
    from bonecast.registry import RegistryError, UserIn, parse
    from bonecast.registry.models import ROLES

    if role not in ROLES:  # before the password prompt
        raise _fail(f"--role: {role!r} is not one of {', '.join(ROLES)}")
    registry = _registry(database)
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    data = {"username": username, "password": password, "role": role}
    try:
        user = parse(UserIn, data | {"display_name": display_name})
        with registry.session(actor=actor) as session:
            created = session.create_user(user)
    except RegistryError as error:
        raise _invalid(error) from None
    console.print(f"Created {created.role} {created.username}")


@token_app.command("create")
def token_create(
    username: Annotated[str, typer.Argument(help="The user the token acts as.")],
    database: Database = DEFAULT_DATABASE,
    name: Annotated[str, typer.Option("--name", help="A name to recognise it by.")] = "cli",
    actor: Actor = CLI_ACTOR,
) -> None:
    """Issue an API token and print it once (it is not stored and cannot be shown again)."""
    from bonecast.registry import NotFoundError, RegistryError, TokenIn, parse

    registry = _registry(database)
    try:
        with registry.session(actor=actor) as session:
            user = session.find_user(username)
            if user is None:
                raise NotFoundError("user", username, "username")
            _, plain = session.create_token(user.id, parse(TokenIn, {"name": name}))
    except RegistryError as error:
        raise _invalid(error) from None
    errors.print(f"Token for {username} (shown once; keep it secret):")
    typer.echo(plain)


ImportKind = Literal["scans", "labs", "treatments", "fhir"]


@app.command("import")
def import_command(
    kind: Annotated[ImportKind, typer.Argument(help="scans, labs, treatments (CSV) or fhir.")],
    file: Annotated[Path, typer.Argument(help="CSV file, or FHIR R4 Bundle (JSON).")],
    database: Database = DEFAULT_DATABASE,
    actor: Actor = "system:import",
) -> None:
    """Import a CSV file or a FHIR Bundle into the registry: all of it, or nothing."""
    from bonecast.registry import ImportReport, import_bundle, import_csv_file

    registry = _registry(database)
    try:
        if kind == "fhir":
            text = file.read_text(encoding="utf-8")
            report: ImportReport = import_bundle(registry, text, actor=actor, source=file.name)
        else:
            report = import_csv_file(registry, kind, file, actor=actor)
    except (OSError, UnicodeDecodeError) as error:
        raise _fail(f"FILE: cannot read {file}: {error}") from None
    if not report.accepted:
        raise _fail(f"{file}: nothing imported:\n  " + "\n  ".join(report.error_lines()))
    console.print(f"Imported {len(report.created())} records from {file}")
    for ignored in report.ignored:
        console.print(f"  ignored {ignored}")


SpecOption = Annotated[
    Path | None, typer.Option("--spec", help="Trial specification (YAML or JSON); sbml only.")
]
ArmOption = Annotated[
    str | None, typer.Option("--arm", help="Name of the arm to export; sbml only.")
]
SbmlOutOption = Annotated[
    Path | None, typer.Option("--out", help="SBML file (.xml) to write; sbml only.")
]
SbmlParametersOption = Annotated[
    Path | None,
    typer.Option("--parameters", help="Parameter set (YAML); default: bonecast's. sbml only."),
]


@app.command("export")
def export_command(
    what: Annotated[
        str,
        typer.Argument(
            metavar="PATIENT_ID|sbml",
            help="A patient's registry id, or `sbml` for the model of a trial arm.",
        ),
    ],
    database: Database = DEFAULT_DATABASE,
    spec: SpecOption = None,
    arm: ArmOption = None,
    out: SbmlOutOption = None,
    parameters: SbmlParametersOption = None,
) -> None:
    """Export a patient's chart or the model.

    `bonecast export PATIENT_ID` writes the chart as a FHIR R4 Bundle (JSON) to standard output;
    `bonecast export sbml --spec F --arm NAME --out F.xml` writes an arm's model as SBML.
    """
    from bonecast.registry import NotFoundError, export_patient

    sbml_options = {"--spec": spec, "--arm": arm, "--out": out}
    if what == "sbml":
        if spec is None or arm is None or out is None:
            missing = [name for name, value in sbml_options.items() if value is None]
            raise _fail(f"export sbml: missing {', '.join(missing)}")
        _export_sbml(spec, arm, out, parameters)
        return
    given = [name for name, value in sbml_options.items() if value is not None]
    if given or parameters is not None:
        raise _fail(f"{', '.join(given or ['--parameters'])}: only with `bonecast export sbml`")
    if not what.isdigit():
        raise _fail(f"PATIENT_ID: {what!r} is neither a patient id (a whole number) nor 'sbml'")
    registry = _registry(database)
    try:
        with registry.session() as session:
            bundle = export_patient(session, int(what))
    except NotFoundError as error:
        raise _fail(f"PATIENT_ID: {error}") from None
    typer.echo(json.dumps(bundle, indent=2))


class ReportAudience(StrEnum):
    """Who ``bonecast report`` writes for."""

    CLINICIAN = "clinician"
    PATIENT = "patient"


@app.command("report")
def report_command(
    patient: Annotated[str, typer.Argument(metavar="PATIENT", help="Registry id or MRN.")],
    database: Database = DEFAULT_DATABASE,
    audience: Annotated[
        ReportAudience,
        typer.Option(
            "--audience",
            help="clinician: the full report; patient: a one-page plain-language summary.",
        ),
    ] = ReportAudience.CLINICIAN,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Write HTML (.html) or PDF (.pdf); default: text here."),
    ] = None,
    forecast_years: Annotated[
        int, typer.Option("--forecast-years", help="Forecast horizon: 5-10 years (0: none).")
    ] = 5,
) -> None:
    """A registered patient's report (clinician) or plain-language summary (patient).

    Without ``--out`` the summary or report is printed as text wrapped to the terminal.
    """
    from bonecast.clinical import PatientError
    from bonecast.registry import NotFoundError
    from bonecast.reports.patient_report import render_report_html, render_report_pdf
    from bonecast.reports.plain_text import html_text
    from bonecast.services.assessments import current_assessment

    if forecast_years and not 5 <= forecast_years <= 10:
        raise _fail(f"--forecast-years: {forecast_years} is outside 5-10 (or 0 for none)")
    if out is not None and out.suffix.lower() not in (".html", ".pdf"):
        raise _fail(f"--out: {out.name} must end in .html or .pdf")
    registry = _registry(database)
    with registry.session() as session:
        record = session.find_patient(patient)
    if record is None and not patient.isdigit():
        raise _fail(f"PATIENT: no patient with MRN {patient!r}")
    try:
        chart, result = current_assessment(
            registry, record.id if record else int(patient), forecast_years=forecast_years
        )
    except NotFoundError as error:
        raise _fail(f"PATIENT: {error}") from None
    except PatientError as error:
        raise _fail(f"PATIENT: cannot be assessed: {error}") from None
    html = render_report_html(chart, result, audience.value)
    if out is None:
        console.print(html_text(html))
        return
    _writable(out, "--out")
    if out.suffix.lower() == ".pdf":
        out.write_bytes(render_report_pdf(html))
    else:
        out.write_text(html, encoding="utf-8")
    console.print(f"Wrote [bold]{out}[/]")


@app.command("export-sbml")
def export_sbml_command(
    spec: Annotated[Path, typer.Option("--spec", help="Trial specification (YAML or JSON).")],
    arm: Annotated[str, typer.Option("--arm", help="Name of the arm to export.")],
    out: Annotated[Path, typer.Option("--out", help="SBML file (.xml) to write.")],
    parameters: SbmlParametersOption = None,
) -> None:
    """Same as `bonecast export sbml` (kept for scripts written against it)."""
    _export_sbml(spec, arm, out, parameters)


def _export_sbml(spec: Path, arm: str, out: Path, parameters: Path | None) -> None:
    """Write the model of an arm's typical patient, doses as events, as SBML L3V2 (time: day).

    The file loads in libRoadRunner/Tellurium and COPASI; it covers the spec's horizon.
    """
    from bonecast.simulation import TrialSpecError, load_trial_spec
    from bonecast.simulation.population import sample_population
    from bonecast.simulation.sbml import SbmlExportError, to_sbml

    try:
        trial = load_trial_spec(spec)
    except TrialSpecError as error:
        raise _fail(str(error)) from None
    arms = {a.name: a for a in trial.arms}
    if arm not in arms:
        raise _fail(f"--arm: no arm {arm!r} in {spec}; arms: {', '.join(arms)}")
    _writable(out, "--out")
    typical = trial.population.model_copy(update={"n": 1, "variability": False})
    patient = sample_population(typical, _parameters(parameters), trial.seed)
    try:
        text = to_sbml(
            patient,
            arms[arm].treatments,
            trial.horizon_days,
            seed=trial.seed,
            name=f"{trial.name}: {arm} (typical patient)",
        )
    except SbmlExportError as error:
        raise _fail(f"--arm: {error}") from None
    out.write_text(text, encoding="utf-8")
    console.print(f"Wrote {out} (SBML L3V2, {trial.horizon_days} days)")


@app.command("sensitivity")
def sensitivity_command(
    spec: Annotated[Path, typer.Argument(help="Trial specification (YAML or JSON).")],
    arm: Annotated[str, typer.Option("--arm", help="Name of the arm.")],
    output: Annotated[str, typer.Option("--output", help="QUANTITY@MONTH, e.g. lumbar_spine@60.")],
    samples: Annotated[
        int, typer.Option("--samples", min=2, help="Saltelli base sample size N (power of 2).")
    ] = 256,
    out: Annotated[
        Path, typer.Option("--out", help="Folder for sobol_indices.csv and sobol_indices.png.")
    ] = Path("sensitivity"),
    parameters: Annotated[
        Path | None, typer.Option("--parameters", help="Parameter set (YAML); default: bonecast's.")
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers", min=1, help="Simulate the samples on a local Dask cluster of N processes."
        ),
    ] = None,
    scheduler: Annotated[
        str | None,
        typer.Option("--scheduler", help="Simulate the samples on the Dask scheduler at ADDRESS."),
    ] = None,
) -> None:
    """Sobol first- and total-order indices of an arm's typical-patient output.

    Varies the calibrated parameters (prior, else +-50 % on the log scale) and simulates the
    Saltelli samples in vectorised blocks: one here, or one per Dask worker with --workers or
    --scheduler (the indices are the same).
    """
    from bonecast.progress import progress_bar
    from bonecast.simulation import TrialSpecError, load_trial_spec
    from bonecast.simulation.sensitivity import (
        parse_output,
        plot_indices,
        sobol_indices,
        sobol_patient_days,
        write_indices_csv,
    )

    try:
        trial = load_trial_spec(spec)
    except TrialSpecError as error:
        raise _fail(str(error)) from None
    try:
        quantity, month = parse_output(output)
    except ValueError as error:
        raise _fail(f"--output: {error}") from None
    if arm not in {a.name for a in trial.arms}:
        raise _fail(
            f"--arm: no arm {arm!r} in {spec}; arms: {', '.join(a.name for a in trial.arms)}"
        )
    if samples & (samples - 1):
        raise _fail(f"--samples: {samples} is not a power of 2")
    params = _parameters(parameters)
    with _executor(workers, scheduler) as executor, progress_bar(errors) as progress:
        out.mkdir(parents=True, exist_ok=True)
        task = progress.add_task(
            f"{trial.name}: Sobol samples of {arm}, patient-days",
            total=sobol_patient_days(params, samples, month),
        )
        indices = sobol_indices(
            trial,
            arm,
            quantity,
            month,
            params,
            samples,
            seed=trial.seed,
            executor=executor,
            progress=lambda k: progress.advance(task, k),
        )
    write_indices_csv(indices, out / "sobol_indices.csv")
    title = f"{trial.name}: {arm}, {quantity} % change at month {month:g} (typical patient)"
    plot_indices(indices, out / "sobol_indices.png", title)
    console.print(
        f"Simulated {indices.samples} parameter samples; wrote [bold]{out}/sobol_indices.csv[/] "
        f"and [bold]{out}/sobol_indices.png[/]"
    )
    console.print(f"[dim]Parameters: {params.name} ({params.digest()}). {DISCLAIMER}[/]")


if __name__ == "__main__":  # pragma: no cover
    app()

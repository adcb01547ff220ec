"""`segstream evaluate`: which clustering model for my data?"""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.table import Table

from stream.cli.common import (
    Ctx,
    classes_text,
    console,
)
from stream.errors import SegstreamError


@click.command("evaluate")
@click.argument("log_file", type=click.Path(path_type=Path))
@click.option("--truth", type=click.Path(path_type=Path), help="customer_id,persona CSV (for ARI).")
@click.option(
    "--models",
    help="Comma-separated model names from the catalog (default: its models marked for evaluation; "
    "slow ones such as clustream and denstream only when named).",
)
@click.option(
    "--window-days", type=click.FloatRange(min=0, min_open=True), help="Score recent customers only."
)
@click.option("--limit", type=click.IntRange(1), help="Only the first N records of the log.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def evaluate_cmd(
    obj: Ctx,
    log_file: Path,
    truth: Path | None,
    models: str | None,
    window_days: float | None,
    limit: int | None,
    as_json: bool,
) -> None:
    """Replay a log through each model and compare: quality, stability, flapping, speed."""
    import dataclasses
    import itertools

    from models.segments.catalog import CATALOG, model_names
    from stream.io.logfiles import read_lines
    from stream.ops.evaluate import evaluate_log, log_records, params_for
    from stream.runtime.engines import engine_params

    if models is None:
        chosen = [name for name, spec in CATALOG.items() if spec.in_evaluate]
    else:
        chosen = [m.strip() for m in models.split(",") if m.strip()]
    unknown = sorted(set(chosen) - set(model_names()))
    if unknown:
        raise click.UsageError(
            f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(model_names())}"
        )
    lines = itertools.islice(read_lines(log_file), limit)
    records = log_records(log_file.name, lines)
    labels = None
    if truth is not None:
        if not truth.exists():
            raise SegstreamError(f"truth file not found: {truth}")
        rows = [line.split(",") for line in truth.read_text().splitlines()[1:] if line]
        labels = {r[0]: r[1] for r in rows}
    reports = evaluate_log(
        records, obj.settings, params_for(engine_params(obj.settings), chosen), labels, window_days
    )
    if as_json:
        click.echo(json.dumps([dataclasses.asdict(r) for r in reports], indent=2))
        return
    title = f"{log_file.name}: {len(records):,} records"
    if window_days:
        title += f", last {window_days:g} days"
    quality = Table(title=f"{title}: what downstream sees")
    for col in (
        "model",
        "SSQ / k-means",
        "(nearest)",
        "ARI (nearest, ref)",
        "published != nearest",
        "segments",
        "dead letters",
        "events/s",
    ):
        quality.add_column(col, justify="left" if col == "model" else "right")
    stability = Table(title=f"{title}: stability")
    for col in (
        "model",
        "id agreement min (median)",
        "births",
        "deaths",
        "renames",
        "model moves / version",
        "segment flaps / cust-month",
        "stage flaps / cust-month",
        "flapped",
    ):
        stability.add_column(col, justify="left" if col == "model" else "right")
    for r in reports:
        quality.add_row(
            r.model,
            f"{r.ssq_ratio:.3f}",
            f"{r.nearest_ssq_ratio:.3f}",
            f"{r.ari:.3f} ({r.nearest_ari:.3f}, {r.ari_reference:.3f})"
            if r.ari is not None and r.nearest_ari is not None and r.ari_reference is not None
            else "-",
            f"{r.published_differs:.1%}",
            str(r.segments),
            f"{r.dead_letters:,}",
            f"{r.events_per_s:,.0f}",
        )
        stability.add_row(
            r.model,
            f"{r.id_agreement:.3f} ({r.id_agreement_median:.3f})",
            str(r.births),
            str(r.deaths),
            str(r.renames),
            f"{r.model_changes_median:.2%}",
            f"{r.segment_flaps_per_month:.3%}",
            f"{r.stage_flaps_per_month:.3%}",
            f"{r.flapping:.1%}",
        )
    console.print(quality)
    console.print(stability)
    for r in reports:
        stages = ", ".join(f"{name} {n:,}" for name, n in r.stages.items())
        console.print(f"{r.model}: lifecycle stages at the end: {stages}")
    classes = reports[0].dead_letter_classes if reports else {}
    if classes:  # decided before the model: the same for every model
        console.print(f"dead letters by class: {classes_text(classes)}")
    console.print(LEGEND, style="dim")


LEGEND = """\
SSQ / k-means: within-segment sum of squares of the published segments over offline k-means on
  the same final vectors (1 = as tight; lower is better); (nearest): each customer in the segment
  nearest to it now. ARI: agreement with --truth personas (published; nearest; k-means).
published != nearest: customers whose published segment (after hysteresis) is not their nearest.
id agreement: share of customers given the same id by consecutive versions after the log's first
  30 days of event time (minimum, median).
renames: segment ids whose name changed between versions. model moves / version: median share
  of customers a version moved (reason model_update).
flaps: returns to a segment (or lifecycle stage) left less than 30 days before, per
  customer-month observed; flapped: share of customers with any segment return."""

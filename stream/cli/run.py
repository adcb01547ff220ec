"""`segstream run`: the service (one process, or --workers N)."""

from __future__ import annotations

import click

from stream.cli.common import (
    Ctx,
    console,
    dead_letter_text,
    log,
    open_store,
)
from stream.config import Settings

# ---------------------------------------------------------------- the service


@click.command()
@click.option(
    "--until-idle",
    type=click.FloatRange(0.1),
    help="Stop once every owned partition is read to its end and nothing arrived for this many seconds.",
)
@click.option("--max-records", type=click.IntRange(1), help="Stop after about this many records.")
@click.option("--metrics-port", type=click.IntRange(0, 65535), help="Port of /metrics, /healthz, /readyz.")
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    help="Processes to run (service.workers): each takes a share of the partitions and serves its "
    "metrics on metrics-port + its index; worker 0 learns the model, the others use its versions.",
)
@click.pass_obj
def run(
    obj: Ctx, until_idle: float | None, max_records: int | None, metrics_port: int | None, workers: int | None
) -> None:
    """Consume interactions, update features, assign segments, publish changes."""
    from stream.runtime.service import Service

    if metrics_port is not None:
        obj.overrides.setdefault("service", {})["metrics_port"] = metrics_port
    if workers is not None:
        obj.overrides.setdefault("service", {})["workers"] = workers
    if obj.settings.service.workers > 1:
        _run_workers(obj.settings, until_idle, max_records)
        return
    service = Service(obj.settings)
    service.install_signal_handlers()
    service.start()
    log.info(
        "consuming %s (group %s), metrics on port %s",
        obj.settings.topics.interactions,
        obj.settings.kafka.group_id,
        service.http_port,
    )
    try:
        summary = service.run(until_idle=until_idle, max_records=max_records)
    finally:
        service.close()
    rate = summary.records / summary.seconds if summary.seconds else 0.0
    dead = dead_letter_text(summary.dead_letters, service.metrics.dead_letter_counts(), "dead-lettered")
    console.print(
        f"processed {summary.records} records in {summary.batches} batches ({rate:,.0f}/s): "
        f"{summary.applied} applied, {dead}, {summary.changes} segment changes"
    )


def _run_workers(settings: Settings, until_idle: float | None, max_records: int | None) -> None:
    from stream.io.kafka import make_admin
    from stream.runtime.workers import run_workers

    # Both servers once, before any worker starts: an unreachable one is one line, not a line from
    # every worker and the supervisor's.
    open_store(settings).close()
    make_admin(settings).close()
    n = settings.service.workers
    port = settings.service.metrics_port
    log.info(
        "consuming %s (group %s) with %d workers, metrics on ports %s",
        settings.topics.interactions,
        settings.kafka.group_id,
        n,
        f"{port}-{port + n - 1}" if port else "chosen by the system",
    )
    summaries = run_workers(settings, until_idle, max_records)
    keys = ("records", "applied", "dead_letters", "changes")
    totals = {k: sum(s.get(k, 0) for s in summaries) for k in keys}
    classes: dict[str, int] = {}
    for s in summaries:
        for name, count in s.get("dead_letter_classes", {}).items():
            classes[name] = classes.get(name, 0) + count
    seconds = max((s.get("seconds", 0.0) for s in summaries), default=0.0)
    rate = totals["records"] / seconds if seconds else 0.0
    dead = dead_letter_text(totals["dead_letters"], classes, "dead-lettered")
    console.print(
        f"processed {totals['records']} records with {n} workers ({rate:,.0f}/s): {totals['applied']} "
        f"applied, {dead}, {totals['changes']} segment changes"
    )

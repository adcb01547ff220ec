"""Commands about settings, topics, schemas and logs: config, topics, schema, generate, produce, cdnow."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from stream.cli.common import (
    Ctx,
    console,
)
from stream.config import Settings
from stream.errors import SegstreamError

# ---------------------------------------------------------------- settings and topics


@click.command("config")
@click.pass_obj
@click.option("--sources", is_flag=True, help="One line per setting: its value and where it came from.")
def config_cmd(obj: Ctx, sources: bool) -> None:
    """Print the effective settings (secrets masked): the code's defaults, then the profile file
    (--config or $SEGSTREAM_CONFIG), then SEGSTREAM_* environment, then flags."""
    from stream.config import sources as where_from

    masked = obj.settings.masked()
    if not sources:
        console.print_json(json.dumps(masked))
        return
    origin = where_from(obj.config, obj.overrides)
    rows = [
        (key, json.dumps(masked[key.split(".")[0]][key.split(".")[1]]), origin[key]) for key in sorted(origin)
    ]
    width = max(len(k) for k, _, _ in rows)
    value_width = min(max(len(v) for _, v, _ in rows), 60)
    for key, value, source in rows:
        click.echo(f"{key:<{width}}  {value:<{value_width}}  {source}")


@click.group()
def topics() -> None:
    """Manage the Kafka topics."""


@topics.command("create")
@click.pass_obj
def topics_create(obj: Ctx) -> None:
    """Create every topic segstream uses (idempotent)."""
    from stream.io.kafka import ensure_topics

    created = ensure_topics(obj.settings)
    console.print(f"created {len(created)} topic(s): {', '.join(created) or '-'} (the others existed)")


@click.command()
@click.option("--out", type=click.Path(path_type=Path), help="Directory to write one .json file per schema.")
def schema(out: Path | None) -> None:
    """Print (or write) the JSON Schemas of the input and output events."""
    from models.contracts import json_schemas

    schemas = json_schemas()
    if out is None:
        console.print_json(json.dumps(schemas))
        return
    out.mkdir(parents=True, exist_ok=True)
    for name, s in schemas.items():
        (out / f"{name}.schema.json").write_text(json.dumps(s, indent=2, sort_keys=True) + "\n")
    console.print(f"wrote {len(schemas)} schemas to {out}")


# ---------------------------------------------------------------- data


@click.command()
@click.option("--customers", type=click.IntRange(1, 10_000_000), default=2000, show_default=True)
@click.option("--days", type=click.IntRange(1, 3650), default=120, show_default=True)
@click.option("--seed", type=int, default=7, show_default=True)
@click.option(
    "--scenario",
    # models.sim.SCENARIOS (tests/unit/test_cli.py keeps them equal; the CLI imports models lazily)
    type=click.Choice(
        ["stationary", "gradual_drift", "sudden_shift", "new_persona", "persona_disappears", "rhythm"]
    ),
    default="stationary",
    show_default=True,
)
@click.option("--malformed", type=click.FloatRange(0, 1), default=0.0, help="Fraction of malformed records.")
@click.option("--out", type=click.Path(path_type=Path), help="Write JSONL (.gz to compress).")
@click.option("--truth", type=click.Path(path_type=Path), help="Write customer,persona CSV here.")
@click.option("--to-kafka", is_flag=True, help="Produce to the interactions topic.")
@click.pass_obj
def generate(
    obj: Ctx,
    customers: int,
    days: int,
    seed: int,
    scenario: str,
    malformed: float,
    out: Path | None,
    truth: Path | None,
    to_kafka: bool,
) -> None:
    """Generate seeded omnichannel demo events from planted personas."""
    from models.sim import generate as gen
    from models.sim import write_truth_csv

    if out is None and not to_kafka:
        raise click.UsageError("give --out FILE and/or --to-kafka")
    log_ = gen(customers, days, seed, scenario=scenario, malformed_fraction=malformed)
    values = [r.value for r in log_.records]
    if out is not None:
        from stream.io.logfiles import write_lines

        write_lines(out, values)
        console.print(f"wrote {len(values)} events ({len(log_.malformed_kinds)} malformed) to {out}")
    if truth is not None:
        truth.parent.mkdir(parents=True, exist_ok=True)
        with truth.open("w") as f:
            write_truth_csv(log_.truth, f)
    if to_kafka:
        n = _produce(obj.settings, ((r.key, r.value) for r in log_.records))
        console.print(f"produced {n} events to {obj.settings.topics.interactions}")


@click.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.pass_obj
def produce(obj: Ctx, path: Path) -> None:
    """Produce a JSONL(.gz) event log to the interactions topic (key = customer_id)."""
    from stream.io.logfiles import read_lines

    n = _produce(obj.settings, read_lines(path))
    console.print(f"produced {n} events from {path} to {obj.settings.topics.interactions}")


@click.command("cdnow")
@click.option(
    "--source",
    type=click.Path(path_type=Path),
    default=Path("tests/data/cdnow/CDNOW_master.txt"),
    show_default=True,
    help="The CDNOW_master.txt purchase log.",
)
@click.option("--out", type=click.Path(path_type=Path), required=True, help="JSONL(.gz) to write.")
def cdnow_cmd(source: Path, out: Path) -> None:
    """Turn the real CDNOW purchase log into interaction events (sorted by time)."""
    from models.sim.cdnow import cdnow_events
    from stream.io.logfiles import write_lines

    if not source.exists():
        raise SegstreamError(f"CDNOW file not found: {source}")
    with source.open() as f:
        records = cdnow_events(f)
    n = write_lines(out, (r.value for r in records))
    console.print(f"wrote {n} CDNOW purchase events to {out}")


def _produce(settings: Settings, records: Any) -> int:
    from stream.io.kafka import ensure_topics, make_producer

    ensure_topics(settings, only=[settings.topics.interactions])
    producer = make_producer(settings, linger_ms=20)
    n = 0
    try:
        for key, value in records:
            producer.send(settings.topics.interactions, key=key, value=value)
            n += 1
        producer.flush(timeout=120)
    finally:
        producer.close(timeout=10)
    return n

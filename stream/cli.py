"""The ``segstream`` command line. Errors are one line and a non-zero exit, never a traceback."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import click
import redis
from rich.console import Console
from rich.table import Table

from stream.errors import SegstreamError
from stream.settings import Settings, load

# Wide tables even when piped (CI logs, `| less`): a terminal narrower than this still wraps.
console = Console(width=None if sys.stdout.isatty() else 140)
err_console = Console(stderr=True)
log = logging.getLogger("segstream")


class Ctx:
    def __init__(self, config: Path | None, overrides: dict[str, Any]) -> None:
        self.config = config
        self.overrides = overrides
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load(self.config, self.overrides)
        return self._settings


def _overrides(
    bootstrap: str | None,
    redis_url: str | None,
    namespace: str | None,
    group: str | None,
    suffix: str | None = None,
) -> dict[str, Any]:
    o: dict[str, Any] = {}
    if suffix is not None:
        o.setdefault("topics", {})["suffix"] = suffix
    if bootstrap:
        o.setdefault("kafka", {})["bootstrap_servers"] = bootstrap
    if group:
        o.setdefault("kafka", {})["group_id"] = group
    if redis_url:
        o.setdefault("redis", {})["url"] = redis_url
    if namespace:
        o.setdefault("redis", {})["namespace"] = namespace
    return o


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--config", "-c", type=click.Path(path_type=Path), help="YAML settings file.")
@click.option("--bootstrap", help="Kafka bootstrap servers (overrides settings).")
@click.option("--redis-url", help="Redis URL (overrides settings).")
@click.option("--namespace", "-n", help="Redis namespace (overrides settings).")
@click.option("--group", help="Kafka consumer group id (overrides settings).")
@click.option("--suffix", help="Output topic suffix, e.g. '.shadow' to read a replay's changes.")
@click.option(
    "-v", "--verbose", is_flag=True, help="Log at DEBUG level, kafka-python's and redis-py's messages too."
)
@click.pass_context
def cli(
    ctx: click.Context,
    config: Path | None,
    bootstrap: str | None,
    redis_url: str | None,
    namespace: str | None,
    group: str | None,
    suffix: str | None,
    verbose: bool,
) -> None:
    """segstream: streaming customer segmentation on Kafka and Redis."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # kafka-python logs every failed connection attempt as an error (a dozen lines for one
    # unreachable broker) and transient coordinator moves as warnings: the command names what
    # failed in one line, and the service logs what it does about it. Theirs only with -v.
    for library in ("kafka", "redis"):
        logging.getLogger(library).setLevel(logging.INFO if verbose else logging.CRITICAL + 1)
    ctx.obj = Ctx(config, _overrides(bootstrap, redis_url, namespace, group, suffix))


# ---------------------------------------------------------------- settings and topics


@cli.command("config")
@click.pass_obj
def config_cmd(obj: Ctx) -> None:
    """Print the effective settings (secrets masked)."""
    console.print_json(json.dumps(obj.settings.masked()))


@cli.group()
def topics() -> None:
    """Manage the Kafka topics."""


@topics.command("create")
@click.pass_obj
def topics_create(obj: Ctx) -> None:
    """Create every topic segstream uses (idempotent)."""
    from stream.kafka_io import ensure_topics

    created = ensure_topics(obj.settings)
    console.print(f"created {len(created)} topic(s): {', '.join(created) or '-'} (the others existed)")


@cli.command()
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


@cli.command()
@click.option("--customers", type=click.IntRange(1, 10_000_000), default=2000, show_default=True)
@click.option("--days", type=click.IntRange(1, 3650), default=120, show_default=True)
@click.option("--seed", type=int, default=7, show_default=True)
@click.option(
    "--scenario",
    type=click.Choice(["stationary", "gradual_drift", "sudden_shift", "new_persona", "persona_disappears"]),
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
        from stream.logfiles import write_lines

        write_lines(out, values)
        console.print(f"wrote {len(values)} events ({len(log_.malformed_kinds)} malformed) to {out}")
    if truth is not None:
        truth.parent.mkdir(parents=True, exist_ok=True)
        with truth.open("w") as f:
            write_truth_csv(log_.truth, f)
    if to_kafka:
        n = _produce(obj.settings, ((r.key, r.value) for r in log_.records))
        console.print(f"produced {n} events to {obj.settings.topics.interactions}")


@cli.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.pass_obj
def produce(obj: Ctx, path: Path) -> None:
    """Produce a JSONL(.gz) event log to the interactions topic (key = customer_id)."""
    from stream.logfiles import read_lines

    n = _produce(obj.settings, read_lines(path))
    console.print(f"produced {n} events from {path} to {obj.settings.topics.interactions}")


@cli.command("cdnow")
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
    from stream.logfiles import write_lines

    if not source.exists():
        raise SegstreamError(f"CDNOW file not found: {source}")
    with source.open() as f:
        records = cdnow_events(f)
    n = write_lines(out, (r.value for r in records))
    console.print(f"wrote {n} CDNOW purchase events to {out}")


def _produce(settings: Settings, records: Any) -> int:
    from stream.kafka_io import ensure_topics, make_producer

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


# ---------------------------------------------------------------- the service


@cli.command()
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
    from stream.service import Service

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


def dead_letter_text(total: int, classes: dict[str, int], noun: str = "dead letters") -> str:
    """``12 dead letters (InvalidJSON 7, LateEvent 5)``: the total and its error classes."""
    text = f"{total:,} {noun}"
    return f"{text} ({classes_text(classes)})" if classes else text


def classes_text(classes: dict[str, int]) -> str:
    """``InvalidJSON 7, LateEvent 5``: the most frequent first."""
    ordered = sorted(classes.items(), key=lambda kv: (-kv[1], kv[0]))
    return ", ".join(f"{name} {n:,}" for name, n in ordered)


def _run_workers(settings: Settings, until_idle: float | None, max_records: int | None) -> None:
    from stream.kafka_io import make_admin
    from stream.workers import run_workers

    # Both servers once, before any worker starts: an unreachable one is one line, not a line from
    # every worker and the supervisor's.
    _store(settings).close()
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


# ---------------------------------------------------------------- look-ups


def _store(settings: Settings) -> Any:
    from stream.feature_store import FeatureStore

    r = settings.redis
    return FeatureStore(r.url.get_secret_value(), r.namespace).start(r.connect_timeout_seconds)


def _partitions(settings: Settings, store: Any) -> int:
    meta = store.meta()
    return int(meta.get("partitions", settings.topics.partitions))


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--tree", is_flag=True, help="Also print the segment hierarchy.")
@click.pass_obj
def segments(obj: Ctx, as_json: bool, tree: bool) -> None:
    """The current segments: ids, names, customers, profiles."""
    from models.segments.engine import SegmentEngine

    store = _store(obj.settings)
    saved = store.load_model()
    if saved is None:
        raise SegstreamError(
            f"no model in namespace {obj.settings.redis.namespace!r} yet: run `segstream run` first"
        )
    engine = SegmentEngine.restore(saved[1])
    counts = store.segment_counts(_partitions(obj.settings, store))
    profiles = engine.segments()
    # Customers whose segment a model update retired keep it until their next row moves them.
    live_ids = {s.id for s in profiles}
    retired = {sid: n for sid, n in sorted(counts.items()) if sid not in live_ids}
    if as_json:
        click.echo(
            json.dumps(
                {
                    "model_version": engine.version,
                    "segments": [
                        {
                            "id": s.id,
                            "name": s.name,
                            "customers": counts.get(s.id, 0),
                            "weight": s.size,
                            "profile": s.centroid,
                        }
                        for s in profiles
                    ],
                    "retired": {str(sid): n for sid, n in retired.items()},
                },
                indent=2,
            )
        )
        return
    table = Table(
        title=f"segments (model version {engine.version}, namespace {obj.settings.redis.namespace})"
    )
    for col in (
        "id",
        "name",
        "customers",
        "recency d",
        "orders",
        "spend",
        "aov",
        "promo",
        "top channel",
        "trend",
    ):
        table.add_column(col, justify="left" if col in ("name", "top channel") else "right")
    for s in sorted(profiles, key=lambda s: -counts.get(s.id, 0)):
        c = s.centroid  # max(..., 0) below: these are non-negative; inverse transforms can dip below
        shares = {k[6:]: v for k, v in c.items() if k.startswith("share_")}
        top = max(shares, key=lambda k: shares[k]) if shares else "-"
        table.add_row(
            str(s.id),
            s.name,
            f"{counts.get(s.id, 0):,}",
            f"{max(c.get('recency_days', 0.0), 0.0):.0f}",
            f"{max(c.get('purchases', 0.0), 0.0):.1f}",
            f"{max(c.get('spend', 0.0), 0.0):,.0f}",
            f"{max(c.get('aov', 0.0), 0.0):,.0f}",
            f"{max(c.get('promo_share', 0.0), 0.0):.0%}",
            f"{top} {shares.get(top, 0):.0%}" if shares else "-",
            f"{max(c.get('engagement_trend', 0.0), 0.0):.2f}",
        )
    console.print(table)
    if retired:
        console.print(
            f"{sum(retired.values()):,} customer(s) still in retired segment(s) "
            f"{', '.join(map(str, retired))}: they move with their next event or re-evaluation"
        )
    if tree:
        console.print(engine.hierarchy().render())


def _customer_view(settings: Settings, store: Any, customer_id: str) -> dict[str, Any] | None:
    from models.segments.engine import SegmentEngine
    from stream.erase import partition_of
    from stream.export import customer_view

    p = partition_of(customer_id, _partitions(settings, store))
    blob = store.get_state(p, customer_id)
    if blob is None:
        return None
    saved = store.load_model()
    engine = SegmentEngine.restore(saved[1]) if saved is not None else None
    return customer_view(p, customer_id, blob, settings.features.params(), engine, store.watermark(p))


@cli.command()
@click.argument("customer_id")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def customer(obj: Ctx, customer_id: str, as_json: bool) -> None:
    """A customer's features (in their units), segment, membership and scores."""
    from models.features import FEATURE_UNITS

    store = _store(obj.settings)
    view = _customer_view(obj.settings, store, customer_id)
    if view is None:
        raise SegstreamError(
            f"unknown customer {customer_id!r} in namespace {obj.settings.redis.namespace!r}"
        )
    if as_json:
        click.echo(json.dumps(view, indent=2))
        return
    seg = view.get("segment")
    console.print(
        f"[bold]{customer_id}[/bold]  segment: {seg['name'] + ' (' + str(seg['id']) + ')' if seg else '-'}"
        f"  as of {view['as_of']}  events: {view['events']}"
    )
    if seg:
        console.print(f"in it since {seg['since']}")
    near = view.get("nearest")
    if near and (seg is None or near["id"] != seg["id"]):
        console.print(
            f"nearest now: {near['name']} ({near['id']}); the customer moves at its next event or "
            "inactivity re-scoring if that segment still wins by the hysteresis margin"
        )
    r = view.get("rfm")
    rfm_text = f"RFM {r['r']}{r['f']}{r['m']} ({r['group']})" if r else "RFM - (never purchased)"
    console.print(f"{rfm_text}  membership now: {view.get('membership')}")
    table = Table()
    table.add_column("feature")
    table.add_column("value", justify="right")
    table.add_column("unit / meaning")
    for name, value in view["features"].items():
        table.add_row(name, f"{value:,.4g}", FEATURE_UNITS[name])
    console.print(table)


@cli.command()
@click.option("--limit", "-n", type=click.IntRange(1), default=10, show_default=True)
@click.option("--customer", help="Only this customer's changes.")
@click.option("--json", "as_json", is_flag=True, help="One JSON change per line.")
@click.pass_obj
def changes(obj: Ctx, limit: int, customer: str | None, as_json: bool) -> None:
    """The latest segment changes from the changes topic."""
    from stream.kafka_io import read_latest

    topic = obj.settings.topics.out("changes")
    values = read_latest(obj.settings, topic, limit, key=customer.encode() if customer else None)
    if as_json:
        for v in values:
            click.echo(v.decode())
        return
    table = Table(title=f"latest {len(values)} change(s) on {topic}")
    for col in ("event time", "customer", "from", "to", "conf", "reason", "rfm", "why"):
        table.add_column(col, overflow="fold")
    for v in values:
        c = json.loads(v)
        rfm = c.get("rfm") or {}
        table.add_row(
            c["event_time"][:19],
            c["customer_id"],
            (c["previous"] or {}).get("name", "-"),
            (c["current"] or {}).get("name", "(erased)"),
            f"{c['confidence']:.2f}",
            c["reason"],
            rfm.get("group", "-"),
            c["explanation"],
        )
    console.print(table)


MODELS = ("microclusters", "kmeans", "streamkmeans", "clustream", "denstream", "dbstream")


@cli.command("evaluate")
@click.argument("log_file", type=click.Path(path_type=Path))
@click.option("--truth", type=click.Path(path_type=Path), help="customer_id,persona CSV (for ARI).")
@click.option(
    "--models",
    default="microclusters,kmeans,streamkmeans,dbstream",
    show_default=True,
    help=f"Comma-separated, from: {', '.join(MODELS)} (clustream and denstream take ~2 ms per event).",
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
    models: str,
    window_days: float | None,
    limit: int | None,
    as_json: bool,
) -> None:
    """Replay a log through each model and compare: quality, stability, flapping, speed."""
    import dataclasses
    import itertools

    from stream.evaluation import evaluate_log, log_records, params_for
    from stream.logfiles import read_lines
    from stream.service import engine_params

    chosen = [m.strip() for m in models.split(",") if m.strip()]
    unknown = sorted(set(chosen) - set(MODELS))
    if unknown:
        raise click.UsageError(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}")
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
    table = Table(
        title=f"{log_file.name}: {len(records):,} records"
        + (f", last {window_days:g} days" if window_days else "")
    )
    for col in (
        "model",
        "SSQ / k-means",
        "ARI (ref)",
        "id agreement min (median)",
        "births",
        "deaths",
        "flapping",
        "dead letters",
        "events/s",
    ):
        table.add_column(col, justify="left" if col == "model" else "right")
    for r in reports:
        table.add_row(
            r.model,
            f"{r.ssq_ratio:.3f}",
            f"{r.ari:.3f} ({r.ari_reference:.3f})" if r.ari is not None else "-",
            f"{r.id_agreement:.3f} ({r.id_agreement_median:.3f})",
            str(r.births),
            str(r.deaths),
            f"{r.flapping:.2%}",
            f"{r.dead_letters:,}",
            f"{r.events_per_s:,.0f}",
        )
    console.print(table)
    classes = reports[0].dead_letter_classes if reports else {}
    if classes:  # decided before the model: the same for every model
        console.print(f"dead letters by class: {classes_text(classes)}")


# ---------------------------------------------------------------- entry point

# Operational commands (replay, diff, export, status, forget, evaluate) live in their own modules
# and register themselves on ``cli`` when imported.
from stream import cli_ops, erase  # noqa: E402,F401


def main(argv: list[str] | None = None) -> int:
    try:
        cli.main(args=argv, prog_name="segstream", standalone_mode=False)
    except click.exceptions.Exit as e:
        return int(e.exit_code)
    except click.Abort:
        err_console.print("segstream: aborted")
        return 130
    except click.UsageError as e:
        cmd = e.ctx.command_path if e.ctx else "segstream"
        print(f"{cmd}: error: {e.format_message()} (see {cmd} --help)", file=sys.stderr)
        return 2
    except click.ClickException as e:
        print(f"segstream: error: {e.format_message()}", file=sys.stderr)
        return e.exit_code
    except SegstreamError as e:
        print(f"segstream: error: {e}", file=sys.stderr)
        return 1
    except redis.RedisError as e:
        # Redis refused a command (a full memory, a script error); `run` rides out dropped
        # connections itself. One line naming the problem; the traceback at debug level.
        log.debug("Redis error", exc_info=True)
        print(f"segstream: error: Redis: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0

"""Operational commands, registered on the ``segstream`` group: see stream/cli.py.

replay (stream/replay.py), diff (stream/diff.py), export (stream/export.py), status
(stream/status.py). The modules hold the logic; this file only parses flags and prints.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from stream.cli.common import Ctx, console, dead_letter_text, err_console, open_store, partitions_of
from stream.errors import SegstreamError

# ---------------------------------------------------------------- replay


@click.command()
@click.argument("files", nargs=-1, type=click.Path(path_type=Path))
@click.option("--namespace", "ns", required=True, help="Redis namespace to replay into (a shadow).")
@click.option(
    "--suffix",
    help="Appended to every output topic (default '.<namespace>'; '' writes to the production topics).",
)
@click.option("--topic", help="Replay this Kafka topic (default: the interactions topic) instead of files.")
@click.option("--from-offset", type=click.IntRange(0), help="Kafka: start at this offset in every partition.")
@click.option("--from-time", help="Kafka: start at the first record at or after this ISO 8601 time.")
@click.option(
    "--partitions",
    type=click.IntRange(1, 1024),
    default=1,
    show_default=True,
    help="Files: spread records over this many partitions by key hash, like the producer does.",
)
@click.option(
    "--model-config", type=click.Path(path_type=Path), help="YAML with a 'model:' section (what-if)."
)
@click.option(
    "--batch-size",
    type=click.IntRange(1, 100_000),
    default=2000,
    show_default=True,
    help="Records per batch.",
)
@click.option("--fresh", is_flag=True, help="Delete the namespace's state first (else it must be empty).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_obj
def replay(
    obj: Ctx,
    files: tuple[Path, ...],
    ns: str,
    suffix: str | None,
    topic: str | None,
    from_offset: int | None,
    from_time: str | None,
    partitions: int,
    model_config: Path | None,
    batch_size: int,
    fresh: bool,
    as_json: bool,
) -> None:
    """Replay JSONL(.gz) FILES, or a Kafka topic, into a namespace of its own.

    \b
    segstream replay events.jsonl.gz --namespace shadow --model-config what-if.yaml
    segstream replay --namespace rebuild --from-time 2026-01-01T00:00:00Z --fresh
    """
    from stream.ops import replay as rp

    kafka_mode = topic is not None or from_offset is not None or from_time is not None
    if files and kafka_mode:
        raise click.UsageError("give FILES or a Kafka position (--topic/--from-offset/--from-time), not both")
    if not files and not kafka_mode:
        raise click.UsageError(
            "give FILES to replay, or --from-offset N / --from-time ISO for the Kafka topic"
        )
    what_if = rp.what_if_overrides(model_config) if model_config is not None else None
    settings = rp.with_overrides(obj.settings, rp.replay_overrides(ns, suffix, what_if))
    if files:
        source = rp.file_source(list(files), partitions)
    else:
        start = rp.parse_time(from_time) if from_time is not None else None
        source = rp.kafka_source(
            settings,
            topic or settings.topics.interactions,
            from_offset=from_offset if from_offset is not None or start is not None else 0,
            from_time=start,
        )
    with Progress(
        TextColumn("[bold]replay[/bold]"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        disable=not err_console.is_terminal,
        transient=True,
    ) as bar:
        task = bar.add_task("replay", total=source.total)
        summary = rp.replay(
            settings, source, batch_size=batch_size, fresh=fresh, progress=lambda n: bar.advance(task, n)
        )
    if as_json:
        click.echo(json.dumps(summary.as_dict(), indent=2))
        return
    console.print(
        f"replayed {summary.records:,} records from {summary.source} into namespace {summary.namespace} "
        f"in {summary.seconds:.1f} s ({summary.rate:,.0f}/s): {summary.applied:,} applied, "
        f"{dead_letter_text(summary.dead_letters, summary.dead_letter_classes)}, "
        f"{summary.changes:,} segment changes, "
        f"model version {summary.model_version}; changes on {summary.output_topics['changes']}"
    )


# ---------------------------------------------------------------- diff


def _ns_settings(obj: Ctx, namespace: str) -> Any:
    from stream.ops.replay import with_overrides

    return with_overrides(obj.settings, {"redis": {"namespace": namespace}})


@click.command()
@click.argument("ns_a")
@click.argument("ns_b")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option(
    "--features", type=click.IntRange(1, 22), default=5, show_default=True, help="Profile deltas shown."
)
@click.pass_obj
def diff(obj: Ctx, ns_a: str, ns_b: str, as_json: bool, features: int) -> None:
    """Compare the segmentations of namespaces NS_A and NS_B (exit 0 either way)."""
    from stream.ops import diff as df

    snaps = []
    for ns in (ns_a, ns_b):
        settings = _ns_settings(obj, ns)
        store = open_store(settings)
        try:
            snap = df.snapshot(store, partitions_of(settings, store))
        finally:
            store.close()
        if not snap.customers and snap.model_version is None:
            raise SegstreamError(f"namespace {ns!r} is empty (no customers, no model)")
        snaps.append(snap)
    report = df.compare(snaps[0], snaps[1])
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
        return
    _print_diff(report, features)


def _print_diff(r: Any, n_features: int) -> None:
    from rich.table import Table

    console.print(
        f"[bold]{r.a}[/bold] (model v{r.a_version}) vs [bold]{r.b}[/bold] (model v{r.b_version}): "
        f"{r.in_both:,} customers in both, {r.only_a:,} only in {r.a}, {r.only_b:,} only in {r.b}; "
        f"{r.changed_segment:,} in another segment, {r.changed_state:,} with different features"
    )
    m = r.matching
    if m.total:
        renumbered = [f"{a}->{b}" for a, b in m.pairs.items() if a != b]
        console.print(
            f"segments matched by members: {m.agreement:.1%} of the customers in both stay together "
            f"({m.agreed:,} of {m.total:,}); {r.changed_segment_id:,} have another raw segment id"
            + (f"; renumbered {', '.join(renumbered)}" if renumbered else "")
        )
    if r.identical:
        console.print("no differences")
        return
    if r.confusion:
        a_ids = sorted({a for a, _ in r.confusion})
        b_ids = sorted({b for _, b in r.confusion})
        t = Table(title=f"customers by segment: rows {r.a}, columns {r.b}")
        t.add_column(f"{r.a} \\ {r.b}")
        for b in b_ids:
            t.add_column(f"{b} {r.names_b.get(b, '')}", justify="right")
        for a in a_ids:
            t.add_row(f"{a} {r.names_a.get(a, '')}", *(f"{r.confusion.get((a, b), 0):,}" for b in b_ids))
        console.print(t)
    t = Table(
        title=f"segments of {r.a} and their match in {r.b} by members, else where most of their "
        "customers went (* ; centroid B - A)"
    )
    for col in ("A segment", "A size", "B segment", "B size", "overlap", "largest profile differences"):
        t.add_column(col, justify="right" if col in ("A size", "B size", "overlap") else "left")
    for s in r.segments:
        top = sorted(s.centroid_delta.items(), key=lambda kv: -abs(kv[1]))[:n_features]
        t.add_row(
            f"{s.a_id} {s.a_name}",
            f"{s.a_size:,}",
            f"{s.b_id} {s.b_name}{'' if s.matched else ' *'}" if s.b_id is not None else "-",
            f"{s.b_size:,}",
            f"{s.overlap:,}",
            ", ".join(f"{k} {v:+.3g}" for k, v in top if abs(v) > 1e-9) or "same profile",
        )
    console.print(t)
    for kind, ids in r.samples.items():
        if ids:
            console.print(f"{kind.replace('_', ' ')}: {', '.join(ids)}{' ...' if len(ids) >= 10 else ''}")


# ---------------------------------------------------------------- export


@click.command()
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True)
@click.option("--out", type=click.Path(path_type=Path), help="File to write (default: stdout).")
@click.pass_obj
def export(obj: Ctx, fmt: str, out: Path | None) -> None:
    """Every customer of the namespace: features, segment, membership, outlier, RFM."""
    from stream.ops import export as ex

    settings = obj.settings
    store = open_store(settings)
    try:
        views = ex.iter_views(store, partitions_of(settings, store), settings.features.params())
        write = ex.write_csv if fmt == "csv" else ex.write_jsonl
        if out is None:
            n = write(views, sys.stdout)
            sys.stdout.flush()
        else:
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = out.with_name(out.name + ".part")
            with tmp.open("w", newline="" if fmt == "csv" else None, encoding="utf-8") as f:
                n = write(views, f)
            tmp.replace(out)  # no half-written export under the final name
    finally:
        store.close()
    err_console.print(f"exported {n:,} customers of namespace {settings.redis.namespace} as {fmt}")


# ---------------------------------------------------------------- recover


@click.command()
@click.option(
    "--resume", "mode", flag_value="resume", help="Redis lost state: re-read what it lost from the log."
)
@click.option(
    "--adopt-topic",
    "mode",
    flag_value="adopt-topic",
    help="The input topic was recreated or truncated: keep the features, read it from its beginning.",
)
@click.option(
    "--republish",
    "mode",
    flag_value="republish",
    help="An output topic was deleted or recreated: publish what the namespace can give back.",
)
@click.option("--dry-run", is_flag=True, help="Only show what would be done.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def recover(obj: Ctx, mode: str | None, dry_run: bool, as_json: bool) -> None:
    """Go on after `segstream run` stopped on state it cannot trust (the deployment stopped).

    \b
    --resume       Redis lost state (a flush, a failover, its last writes): each partition
                   resumes from what Redis holds, or the topic's beginning where it holds
                   nothing; the records it lost are read again.
    --adopt-topic  the input topic was deleted and created again, truncated, or trimmed by
                   retention before its records were read: every customer's features are kept
                   and each partition reads the topic from its current beginning.
    --republish    an output topic was deleted or created again: the model is published again
                   from Redis, the current-segments topic rebuilt from the changes topic (each
                   customer's newest change), and the topics recorded as the namespace's.
    """
    from stream.ops import recover as rc

    if mode is None:
        raise click.UsageError("give --resume, --adopt-topic or --republish (see segstream recover --help)")
    if mode == "republish":
        _republish(obj, dry_run, as_json)
        return
    report = rc.recover(obj.settings, mode, dry_run=dry_run)  # type: ignore[arg-type]
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
        return
    from rich.table import Table

    t = Table(
        title=f"recover --{report.mode}{' (dry run: nothing changed)' if dry_run else ''}: namespace "
        f"{report.namespace}, topic {report.topic} (id {report.topic_id or '-'}), group {report.group}"
    )
    for col in ("partition", "applied (Redis)", "topic begin", "topic end", "resumes at", ""):
        t.add_column(col, justify="left" if not col else "right")
    for p in report.partitions:
        t.add_row(
            str(p.partition),
            "-" if p.applied < 0 else f"{p.applied:,}",
            f"{p.begin:,}",
            f"{p.end:,}",
            f"{p.start:,}",
            p.note,
        )
    console.print(t)
    if not dry_run:
        console.print("done: start `segstream run` again")


def _republish(obj: Ctx, dry_run: bool, as_json: bool) -> None:
    from stream.ops.republish import republish

    report = republish(obj.settings, dry_run=dry_run)
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
        return
    head = "recover --republish" + (" (dry run: nothing changed)" if dry_run else "")
    console.print(f"{head}: namespace {report.namespace}")
    for name, tid in report.topics.items():
        console.print(
            f"  {name}: id {tid}" + ("  (not the one recorded: recreated)" if name in report.changed else "")
        )
    version = (
        "no model version yet" if report.model_version is None else f"model version {report.model_version}"
    )
    verb = "would publish" if dry_run else "published"
    console.print(
        f"{verb}: {version}; {report.current_records:,} customers' newest change onto the current topic"
    )
    if report.customers_without_change:
        console.print(
            f"{report.customers_without_change:,} customers' newest change is not on the changes topic any "
            "more: their current record comes with their next change"
        )
    if not dry_run:
        console.print("done: start `segstream run` again")


# ---------------------------------------------------------------- status


@click.command()
@click.option(
    "--metrics-url",
    multiple=True,
    help="A /metrics to read (repeatable; default http://127.0.0.1:<service.metrics_port + i>/metrics "
    "for each of service.workers); '' to skip.",
)
@click.option(
    "--interval", type=click.FloatRange(0.1, 60), default=1.0, show_default=True, help="Rate window."
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def status(obj: Ctx, metrics_url: tuple[str, ...], interval: float, as_json: bool) -> None:
    """One screen: lag per partition, watermarks, model, segment sizes, rates.

    \b
    Exit status:
      0  Kafka and Redis answered (a /metrics that did not answer is a note: is the service running?)
      1  Kafka or Redis did not answer: what could be gathered is printed, then one line on stderr
      2  a usage error
    """
    from stream.ops import status as st

    settings = obj.settings
    svc = settings.service
    urls = (
        [u for u in metrics_url if u]
        if metrics_url
        else [f"http://127.0.0.1:{svc.metrics_port + i}/metrics" for i in range(svc.workers)]
    )
    report = st.gather(settings, urls, interval)
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        _print_status(report)
    if report.unavailable:
        raise SegstreamError("; ".join(report.unavailable.values()))


def _print_status(r: Any) -> None:
    from rich.table import Table

    from stream.ops import status as st

    total = r.total_lag
    console.print(
        f"[bold]segstream status[/bold]  namespace {r.namespace}  topic {r.topic}  group {r.group}  "
        f"at {st.fmt_time(r.now)}  lag {'-' if total is None else f'{total:,}'} messages"
    )
    t = Table(title="partitions")
    for col in ("partition", "committed", "end", "lag msgs", "applied (Redis)", "watermark", "lag"):
        t.add_column(col, justify="left" if col == "watermark" else "right")
    for p in r.partitions:
        lag = p.lag_messages
        t.add_row(
            str(p.partition),
            "-" if p.committed is None else f"{p.committed:,}",
            "-" if p.end is None else f"{p.end:,}",
            "-" if lag is None else f"{lag:,}",
            "-" if p.applied is None or p.applied < 0 else f"{p.applied:,}",
            st.fmt_time(p.watermark),
            st.fmt_age(p.lag_seconds(r.now)),
        )
    console.print(t)
    if r.model_version is not None:
        built = (
            f"built on data up to {st.fmt_time(r.model_event_time)} "
            f"({st.fmt_age(r.now - r.model_event_time)} ago in event time)"
            if r.model_event_time
            else "not built yet (warming up)"
        )
        updated = f", last version {st.fmt_age(r.now - r.model_updated)} ago" if r.model_updated else ""
        console.print(f"model version {r.model_version}: {built}{updated}")
    if r.segments:
        t = Table(title="segments")
        t.add_column("id", justify="right")
        t.add_column("name")
        t.add_column("customers", justify="right")
        for s in r.segments:
            t.add_row(str(s.id), s.name, f"{s.customers:,}")
        console.print(t)
    if r.rates:
        console.print(
            "rates: "
            + ", ".join(f"{k} {v:,.1f}" for k, v in r.rates.items())
            + (f"  (from {r.metrics_url})" if r.metrics_url else "")
        )
    for note in r.notes:
        console.print(f"[yellow]note:[/yellow] {note}")


# ---------------------------------------------------------------- forget


@click.command("forget")
@click.argument("customer_id")
@click.pass_obj
def forget(obj: Ctx, customer_id: str) -> None:
    """Erase a customer: delete its state and publish an erase change and a tombstone."""
    from stream.io.kafka import make_producer
    from stream.io.sinks.kafka import KafkaSink
    from stream.ops.erase import forget_customer, partition_of

    settings = obj.settings
    store = open_store(settings)
    try:
        if store.get_state(partition_of(customer_id, partitions_of(settings, store)), customer_id) is None:
            raise SegstreamError(
                f"unknown customer {customer_id!r} in namespace {settings.redis.namespace!r}"
            )
        sink = KafkaSink(settings, make_producer(settings))
        try:
            result = forget_customer(settings, store, sink, customer_id)
        finally:
            sink.close()
    finally:
        store.close()
    prev = result.change.previous
    console.print(
        f"erased {customer_id} (partition {result.partition}, segment "
        f"{f'{prev.name} ({prev.id})' if prev else '-'}): state deleted, erase change "
        f"{result.change.change_id} on {settings.topics.out('changes')}, "
        f"tombstone on {settings.topics.out('current')}",
        soft_wrap=True,
    )

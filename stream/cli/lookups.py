"""Look-ups: segments, customer, changes."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.table import Table

from models.features import FEATURES, format_value
from stream.cli.common import (
    Ctx,
    console,
    open_store,
    partitions_of,
)
from stream.config import Settings
from stream.errors import SegstreamError, ServiceUnavailable


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--tree", is_flag=True, help="Also print the segment hierarchy.")
@click.pass_obj
def segments(obj: Ctx, as_json: bool, tree: bool) -> None:
    """The current segments: ids, names, customers, profiles."""
    from models.segments.engine import SegmentEngine

    store = open_store(obj.settings)
    saved = store.load_model()
    if saved is None:
        raise SegstreamError(
            f"no model in namespace {obj.settings.redis.namespace!r} yet: run `segstream run` first"
        )
    engine = SegmentEngine.restore(saved[1])
    counts = store.segment_counts(partitions_of(obj.settings, store))
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
    # The profile columns are the feature table's (a feature with a `column` heading shows here).
    shown = [f for f in FEATURES if f.column]
    for col in ("id", "name", "customers", *(f.column or f.name for f in shown), "top channel"):
        table.add_column(col, justify="left" if col in ("name", "top channel") else "right")
    for s in sorted(profiles, key=lambda s: -counts.get(s.id, 0)):
        c = s.centroid  # max(..., 0) below: these are non-negative; inverse transforms can dip below
        shares = {k[6:]: v for k, v in c.items() if k.startswith("share_")}
        top = max(shares, key=lambda k: shares[k]) if shares else "-"
        table.add_row(
            str(s.id),
            s.name,
            f"{counts.get(s.id, 0):,}",
            *(format_value(f.name, max(c.get(f.name, 0.0), 0.0), unit=False) for f in shown),
            f"{top} {shares.get(top, 0):.0%}" if shares else "-",
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
    from stream.ops.erase import partition_of
    from stream.ops.export import customer_view

    p = partition_of(customer_id, partitions_of(settings, store))
    blob = store.get_state(p, customer_id)
    if blob is None:
        return None
    saved = store.load_model()
    engine = SegmentEngine.restore(saved[1]) if saved is not None else None
    return customer_view(p, customer_id, blob, settings.features.params(), engine, store.watermark(p))


@click.command()
@click.argument("customer_id")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def customer(obj: Ctx, customer_id: str, as_json: bool) -> None:
    """A customer's features (in their units), segment, membership and scores."""
    from models.features import FEATURE_UNITS

    store = open_store(obj.settings)
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
    stage = view.get("stage")
    value = view.get("value")
    console.print(
        f"stage: {stage['name'] + ' since ' + stage['since'] if stage else '-'}"
        + (
            f"  churn risk {value['churn_risk']:.0%}, expected {value['purchases_90d']:.1f} purchases "
            f"in 90 days, {value['value_365d']:,.2f} in a year"
            if value
            else ""
        )
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


@click.command()
@click.option("--limit", "-n", type=click.IntRange(1), default=10, show_default=True)
@click.option("--customer", help="Only this customer's changes.")
@click.option("--json", "as_json", is_flag=True, help="One JSON change per line.")
@click.pass_obj
def changes(obj: Ctx, limit: int, customer: str | None, as_json: bool) -> None:
    """The latest segment changes from the changes topic.

    The table names segments as the model does now, as `customer` and `export` do (a segment
    renamed since a change shows "new name (was old name)"); ``--json`` prints the records as
    published, with the names of their model version (a consumer applies the ``renamed`` model
    events after it).
    """
    from models.segments.engine import SegmentEngine
    from stream.io.kafka import read_latest
    from stream.ops.export import names_now

    topic = obj.settings.topics.out("changes")
    values = read_latest(obj.settings, topic, limit, key=customer.encode() if customer else None)
    if as_json:
        for v in values:
            click.echo(v.decode())
        return
    engine = None
    title = f"latest {len(values)} change(s) on {topic}"
    if values:
        try:
            saved = open_store(obj.settings).load_model()
        except ServiceUnavailable as e:  # the changes are still worth showing, as published
            saved = None
            title += f"; names as published (no model to name them now: {e})"
        engine = SegmentEngine.restore(saved[1]) if saved is not None else None

    def shown(ref: dict[str, Any] | None, missing: str) -> str:
        if ref is None:
            return missing
        was = ref.get("published_name")
        return ref["name"] if was is None else f"{ref['name']} (was {was})"

    def moved(c: dict[str, Any]) -> tuple[str, str]:
        """The change's from and to: stages for a stage change (in the segment it holds, if
        any), segments otherwise; only an erase empties the customer."""
        if c.get("kind") == "stage":
            where = f" (in {shown(c['current'], '')})" if c.get("current") else ""
            return f"stage {c.get('previous_stage') or '-'}", f"stage {c.get('stage')}{where}"
        return shown(c["previous"], "-"), shown(c["current"], "(erased)" if c["reason"] == "erase" else "-")

    table = Table(title=title)
    for col in ("event time", "customer", "from", "to", "conf", "reason", "rfm", "why"):
        table.add_column(col, overflow="fold")
    for v in values:
        c = json.loads(v)
        if engine is not None:
            c = names_now(c, engine.name_of)
        rfm = c.get("rfm") or {}
        before, after = moved(c)
        table.add_row(
            c["event_time"][:19],
            c["customer_id"],
            before,
            after,
            f"{c['confidence']:.2f}",
            c["reason"],
            rfm.get("group", "-"),
            c["explanation"],
        )
    console.print(table)

"""The report command: a namespace's segments as one self-contained HTML file (stream/ops/report)."""

from __future__ import annotations

from pathlib import Path

import click

from stream.cli.common import Ctx, console, open_store, partitions_of
from stream.errors import SegstreamError


@click.command()
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("report.html"),
    show_default=True,
    help="File to write.",
)
@click.option(
    "--since",
    help="Start of the window the flows and volatility cover: an ISO 8601 date/time, or Nd (N days "
    "before the newest change). Default: 28d.",
)
@click.option("--compare", "compare_ns", metavar="NS_B", help="Also compare with namespace NS_B (what-if).")
@click.option(
    "--sample",
    type=click.IntRange(10, 50_000),
    default=3000,
    show_default=True,
    help="Customers on the map (a fixed sample by customer key).",
)
@click.option(
    "--currency", help="Currency of amounts (default: read from the newest purchases on the input topic)."
)
@click.pass_obj
def report(
    obj: Ctx, out: Path, since: str | None, compare_ns: str | None, sample: int, currency: str | None
) -> None:
    """A self-contained HTML report of the namespace's segments: cards, a map, the hierarchy,
    sizes and flows over time (from the changes and model-events topics), and with --compare a
    what-if against another namespace, segments matched by their members. Opens offline.

    \b
    segstream report --out report.html
    segstream -n prod report --compare what-if --since 2026-03-01
    segstream -n shadow --suffix .shadow report --since 14d     (a replay's namespace and topics)
    """
    try:
        from stream.ops.report import build as rb
    except ImportError as e:  # plotly is an optional extra
        raise SegstreamError(f"the report needs plotly: pip install 'segstream[report]' ({e})") from e
    from stream.ops.replay import with_overrides

    settings = obj.settings
    store = open_store(settings)
    b_store = None
    try:
        compare_with = None
        if compare_ns is not None:
            b_settings = with_overrides(settings, {"redis": {"namespace": compare_ns}})
            b_store = open_store(b_settings)
            compare_with = (b_store, partitions_of(b_settings, b_store), compare_ns)
        r = rb.build(
            settings,
            store,
            partitions_of(settings, store),
            out,
            since=since,
            sample=sample,
            currency=currency,
            compare_with=compare_with,
        )
    finally:
        store.close()
        if b_store is not None:
            b_store.close()
    console.print(
        f"wrote {out} ({r.bytes / 1e6:.1f} MB) in {r.seconds:.1f} s: {r.segments} segments, "
        f"{r.customers:,} customers ({r.map_points:,} on the map), {r.changes:,} changes, "
        f"{len(r.charts)} charts",
        soft_wrap=True,
    )

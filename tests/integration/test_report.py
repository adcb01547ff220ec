"""`segstream report` end to end: a generated log replayed into the test's namespace and topics, the
report written by the command, then opened in headless Chromium: every chart drawn, no console
error, no request beyond the file itself. With --compare, a what-if namespace's pictures too.

Chromium is Debian's package (scripts/bootstrap.sh installs it), driven by playwright; nothing is
downloaded at run time. The test skips only where there is no Chromium binary.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from kafka import KafkaAdminClient

from models.sim import generate
from stream.cli import main
from stream.io.logfiles import write_lines

from .harness import delete_namespace, delete_topics, unique

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
MODEL_ENV = {"SEGSTREAM_MODEL__WARMUP_VECTORS": "400", "SEGSTREAM_MODEL__UPDATE_EVERY": "400"}
# What each chart type leaves in the DOM once drawn: bars and scatters their traces, the icicle
# its slices, the Sankey its nodes, the heatmap an image.
DRAWN = "g.trace, g.slice, g.sankey-node, g.hm image, g.heatmaplayer image"
Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def run_cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], settings_env: dict[str, str]
) -> Run:
    for k, v in {**settings_env, **MODEL_ENV}.items():
        monkeypatch.setenv(k, v)

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        rc = main(list(args))
        out, err = capsys.readouterr()
        return rc, out, err

    return run


@pytest.fixture
def what_if_ns(
    redis_client: redis.Redis, kafka_admin: KafkaAdminClient, topic_names: dict[str, str]
) -> Iterator[str]:
    ns = unique("w")
    yield ns
    delete_namespace(redis_client, ns)
    delete_topics(kafka_admin, [f"{t}.{ns}" for k, t in topic_names.items() if k != "interactions"])


def open_in_chromium(path: Path, screenshot: Path) -> dict[str, Any]:
    """Open the file in headless Chromium; what was drawn per chart, the console errors and every
    request made, then a full-page screenshot."""
    from playwright.sync_api import sync_playwright

    requests: list[str] = []
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.on("request", lambda r: requests.append(r.url))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(path.resolve().as_uri(), wait_until="load")
            page.wait_for_function(
                "() => [...document.querySelectorAll('.chart')].every(c => c.querySelector('svg.main-svg'))",
                timeout=30_000,
            )
            page.wait_for_timeout(500)  # transitions (the Sankey's) settle
            charts = page.evaluate(
                """(drawn) => [...document.querySelectorAll('.chart')].map(c => {
                    const svg = c.querySelector('svg.main-svg');
                    const box = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
                    return {name: c.dataset.chart, width: box.width, height: box.height,
                            marks: c.querySelectorAll(drawn).length};
                })""",
                DRAWN,
            )
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    return {"charts": charts, "errors": errors, "requests": requests}


def test_the_report_renders_in_a_browser_offline(
    tmp_path: Path, run_cli: Run, namespace: str, what_if_ns: str, settings_env: dict[str, str]
) -> None:
    if CHROMIUM is None:
        pytest.skip("no Chromium binary: scripts/bootstrap.sh installs Debian's chromium package (apt)")
    log = generate(customers=400, days=75, seed=11, malformed_fraction=0.005)
    events = tmp_path / "events.jsonl"
    write_lines(events, (r.value for r in log.records))
    # Outputs on the test's own topics (suffix ''), as the service would publish them.
    rc, out, err = run_cli(
        "replay", str(events), "--namespace", namespace, "--partitions", "4", "--suffix", "", "--json"
    )
    assert rc == 0, err
    summary = json.loads(out)
    assert summary["changes"] > 0 and summary["model_version"] > 1
    # A what-if in a namespace of its own, with half the segments.
    what_if = tmp_path / "what-if.yaml"
    what_if.write_text("model:\n  n_segments: 4\n")
    rc, _, err = run_cli(
        "replay", str(events), "--namespace", what_if_ns, "--partitions", "4", "--model-config", str(what_if)
    )
    assert rc == 0, err

    report = tmp_path / "report.html"
    rc, out, err = run_cli(
        "report", "--out", str(report), "--compare", what_if_ns, "--since", "21d", "--currency", "EUR"
    )
    assert rc == 0, err
    assert "wrote" in out and report.exists()
    size = report.stat().st_size
    assert size < 10 * 1024 * 1024, size

    shot = tmp_path / "report.png"
    seen = open_in_chromium(report, shot)
    names = [c["name"] for c in seen["charts"]]
    for want in (
        "rfm",
        "map",
        "hierarchy",
        "sizes",
        "flows",
        "volatility",
        "compare-overlap",
        "compare-sizes",
    ):
        assert want in names, names
    assert sum(n.startswith("profile-") for n in names) >= 2
    not_drawn = [c for c in seen["charts"] if not (c["width"] > 0 and c["height"] > 0 and c["marks"] > 0)]
    assert not_drawn == [], not_drawn
    assert seen["errors"] == []
    assert [u for u in seen["requests"] if u != report.resolve().as_uri()] == []
    assert shot.stat().st_size > 20_000  # a page of charts, not a blank one
    print(f"report: {size / 1e6:.1f} MB, {len(names)} charts drawn, screenshot {shot.stat().st_size:,} B")

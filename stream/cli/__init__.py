"""The ``segstream`` command line. Errors are one line and a non-zero exit, never a traceback.

Commands are plain click commands in this package's modules, registered here explicitly; they
call operations (``stream.ops``) and the runtime, and print.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click
import redis
from redis.exceptions import RedisClusterException

from models.segments.checkpoint import CheckpointError
from stream.cli import data, evaluate, lookups, ops, report, run
from stream.cli.common import Ctx, err_console, flag_overrides, log
from stream.errors import SegstreamError


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
    ctx.obj = Ctx(config, flag_overrides(bootstrap, redis_url, namespace, group, suffix))


for command in (
    data.config_cmd,
    data.topics,
    data.schema,
    data.generate,
    data.produce,
    data.cdnow_cmd,
    run.run,
    lookups.segments,
    lookups.customer,
    lookups.changes,
    evaluate.evaluate_cmd,
    ops.replay,
    ops.diff,
    ops.export,
    report.report,
    ops.recover,
    ops.status,
    ops.forget,
):
    cli.add_command(command)


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
    except (SegstreamError, CheckpointError) as e:
        print(f"segstream: error: {e}", file=sys.stderr)
        return 1
    except (redis.RedisError, RedisClusterException) as e:
        # Redis refused a command (a full memory, a script error); `run` rides out dropped
        # connections itself. One line naming the problem; the traceback at debug level.
        log.debug("Redis error", exc_info=True)
        print(f"segstream: error: Redis: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0

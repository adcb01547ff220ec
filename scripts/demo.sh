#!/usr/bin/env bash
# The demo, from nothing: install what is missing, start Kafka and Redis, generate seeded events
# from planted personas (1% malformed), produce them, run the service until the log is consumed,
# then print the segment table and sample changes, and write the HTML report.
#   scripts/demo.sh [--customers N] [--days D] [--seed S]
# Each run uses its own topics, consumer group and Redis namespace (demo<unix time>), so runs never
# mix; the last lines print the environment to keep exploring that run with the CLI.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

customers=2000 days=120 seed=7
while (($#)); do
    case "$1" in
        --customers) customers="$2"; shift 2 ;;
        --days) days="$2"; shift 2 ;;
        --seed) seed="$2"; shift 2 ;;
        *) echo "demo.sh: unknown argument $1 (use --customers N --days D --seed S)" >&2; exit 2 ;;
    esac
done

scripts/bootstrap.sh
scripts/stack.sh start

run="demo$(date +%s)"
export SEGSTREAM_REDIS__NAMESPACE="$run" SEGSTREAM_KAFKA__GROUP_ID="$run" \
    SEGSTREAM_TOPICS__INTERACTIONS="$run.interactions" SEGSTREAM_TOPICS__SUFFIX=".$run"
seg=(.venv/bin/segstream)

echo "== 1/4 topics for run $run"
"${seg[@]}" topics create
echo "== 2/4 generating $customers customers x $days days (seed $seed, 1% malformed) into Kafka"
mkdir -p out
"${seg[@]}" generate --customers "$customers" --days "$days" --seed "$seed" --malformed 0.01 \
    --truth "out/$run.truth.csv" --to-kafka
# One instance reading the four partitions: its segments are a function of the log (two demo runs
# print the same tables; docs/decisions/0028). `run --workers N` splits the partitions across
# processes and publishes the same changes (docs/decisions/0032).
echo "== 3/4 running the service (one instance, four partitions) until the log is consumed"
"${seg[@]}" run --until-idle 5 --metrics-port 0
echo "== 4/4 results"
"${seg[@]}" segments
"${seg[@]}" changes --limit 8
"${seg[@]}" report --out "out/$run.report.html"
cat <<EOM

Explore this run (ground truth of the planted personas: out/$run.truth.csv; the report, to open
in a browser: out/$run.report.html):
  export SEGSTREAM_REDIS__NAMESPACE=$run SEGSTREAM_KAFKA__GROUP_ID=$run SEGSTREAM_TOPICS__INTERACTIONS=$run.interactions SEGSTREAM_TOPICS__SUFFIX=.$run
  .venv/bin/segstream segments --tree
  .venv/bin/segstream customer c000042
  .venv/bin/segstream changes --customer c000042
Stop Kafka and Redis with: scripts/stack.sh stop
EOM

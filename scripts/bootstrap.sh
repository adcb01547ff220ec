#!/usr/bin/env bash
# Idempotent setup from nothing, for a developer box and for CI's fresh clone:
#   1. system packages (redis-server, openssl, prometheus's promtool, Java 17, Maven, Chromium) if
#      missing,
#   2. .venv with the package installed editable with dev extras,
#   3. the Apache Kafka jars in .cache/kafka/libs (used by scripts/stack.sh).
# Every step is skipped quickly when already done, so scripts/test.sh runs it every time.
# Quiet: tool output goes to .cache/bootstrap/*.log and a failure prints one line naming it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
LOGDIR="$ROOT/.cache/bootstrap"
mkdir -p "$LOGDIR"

die() {
    echo "bootstrap: error: $*" >&2
    exit 1
}
# Run a step with its output in a log; on failure, print the step, the log and its last line.
run_logged() {
    local name="$1"
    shift
    if ! "$@" >"$LOGDIR/$name.log" 2>&1; then
        die "$name failed: $(grep -v '^\s*$' "$LOGDIR/$name.log" | tail -n 1) (full log: $LOGDIR/$name.log)"
    fi
}

SUDO=""
if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || die "not root and no sudo: cannot install system packages"
    SUDO="sudo"
fi

# --- 1. System packages --------------------------------------------------------------------
python_ok() { "$1" -c 'import sys, venv; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; }

pkgs=()
command -v redis-server >/dev/null || pkgs+=(redis-server)
command -v redis-cli >/dev/null || pkgs+=(redis-tools)
# The secure stack's and tests' throwaway CA and certificates (scripts/tls.sh).
command -v openssl >/dev/null || pkgs+=(openssl)
# promtool (shipped in Debian's prometheus package) validates config/prometheus.yml.
command -v promtool >/dev/null || pkgs+=(prometheus)
# A JDK, not only a JRE: benchmarks/bench_e2e.py runs its load generator from Java source.
command -v javac >/dev/null || pkgs+=(openjdk-17-jdk-headless)
command -v mvn >/dev/null || pkgs+=(maven)
command -v python3 >/dev/null && python_ok python3 || pkgs+=(python3 python3-venv)
# The report's browser test renders `segstream report` in headless Chromium (driven by playwright).
command -v chromium >/dev/null || pkgs+=(chromium)

if ((${#pkgs[@]})); then
    echo "bootstrap: installing ${pkgs[*]} (apt)"
    # Packages must not start their own redis/prometheus: stack.sh starts ours on other ports.
    # policy-rc.d exit 101 tells invoke-rc.d "not allowed"; only add one if none exists.
    policy_added=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
        $SUDO chmod 755 /usr/sbin/policy-rc.d
        policy_added=1
    fi
    restore_policy() { if ((policy_added)); then $SUDO rm -f /usr/sbin/policy-rc.d; fi; }
    trap restore_policy EXIT
    export DEBIAN_FRONTEND=noninteractive
    run_logged apt-update $SUDO apt-get update -qq
    run_logged apt-install $SUDO env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${pkgs[@]}"
    restore_policy
    trap - EXIT
    # Belt and braces where services did start anyway (systemd hosts, no policy-rc.d honoured):
    # stop them and keep them from starting at boot.
    for svc in redis-server prometheus; do
        if command -v systemctl >/dev/null && [[ -d /run/systemd/system ]]; then
            $SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || true
        else
            $SUDO service "$svc" stop >/dev/null 2>&1 || true
            $SUDO update-rc.d "$svc" disable >/dev/null 2>&1 || true
        fi
    done
    command -v redis-server >/dev/null || die "redis-server still missing after apt install"
    command -v promtool >/dev/null || die "promtool still missing after apt install"
fi
java_major="$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')"
[[ "${java_major:-0}" -ge 17 ]] 2>/dev/null || die "Kafka 4.x needs Java 17+, found '${java_major:-none}'"

# --- 2. Python venv ------------------------------------------------------------------------
if [[ ! -x .venv/bin/python ]] || ! python_ok .venv/bin/python; then
    py=""
    for cand in python3.13 python3.12 python3.11 python3; do
        if command -v "$cand" >/dev/null && python_ok "$cand"; then
            py="$cand"
            break
        fi
    done
    [[ -n "$py" ]] || die "no python3 >= 3.11 with the venv module found"
    rm -rf .venv
    run_logged venv "$py" -m venv .venv
fi
# The stamp holds pyproject.toml's hash: reinstall only when the dependencies may have changed.
stamp=.venv/.segstream-pyproject.sha256
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [[ "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
    echo "bootstrap: installing the package and dev tools into .venv (pip)"
    run_logged pip .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'
    echo "$want" >"$stamp"
fi

# --- 3. Kafka jars -------------------------------------------------------------------------
# Same idea: the stamp inside the jar folder holds the pom's hash.
KLIBS=.cache/kafka/libs
kstamp="$KLIBS/.pom.sha256"
kwant="$(sha256sum scripts/kafka/pom.xml | cut -d' ' -f1)"
if [[ "$(cat "$kstamp" 2>/dev/null)" != "$kwant" ]] || ! ls "$KLIBS"/kafka_2.13-*.jar >/dev/null 2>&1; then
    echo "bootstrap: fetching the Kafka jars (maven)"
    rm -rf "$KLIBS"
    mkdir -p "$KLIBS"
    run_logged maven mvn -q -B -f scripts/kafka/pom.xml dependency:copy-dependencies \
        -DoutputDirectory="$ROOT/$KLIBS"
    ls "$KLIBS"/kafka_2.13-*.jar >/dev/null 2>&1 || die "maven finished but no kafka_2.13 jar in $KLIBS"
    echo "$kwant" >"$kstamp"
fi

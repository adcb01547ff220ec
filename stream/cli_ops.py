"""Operational commands, registered on the ``segstream`` group: see stream/cli.py."""

from __future__ import annotations

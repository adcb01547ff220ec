"""Erase a customer: features, segment, a tombstone on segments.current, an erase change."""

from __future__ import annotations

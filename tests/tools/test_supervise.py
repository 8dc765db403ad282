"""The local stack's process supervision (infra/supervise.py): what it hands out to the processes
it starts."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "infra"))

import supervise  # noqa: E402


def test_a_port_is_never_handed_out_twice():
    # The kernel may give a port closed a moment ago to the next bind(0); a stack asks for a dozen
    # before it starts anything, and two of its processes on one port fail its start.
    ports = [supervise.free_port() for _ in range(500)]
    assert len(set(ports)) == len(ports)

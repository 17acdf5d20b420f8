"""Tests of the edge (switchboard.edge)."""

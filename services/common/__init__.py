"""Pieces every Switchboard service shares: errors, validation, telemetry, gRPC serving."""

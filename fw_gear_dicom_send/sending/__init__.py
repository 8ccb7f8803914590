"""Sending: inputs, probing and planning, the engine, verification, the report."""

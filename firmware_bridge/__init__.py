"""Instrument wire formats: one module per instrument family.

Each family module provides a streaming parser (bytes in, columnar NumPy batches out, never raising
on bad bytes), a command builder, and an encoder used by the emulator to speak the same bytes.
``firmware_bridge.families`` is the single registry that names them. This package imports neither
``station`` nor ``collector``.
"""

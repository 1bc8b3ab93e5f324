"""mico-hil measurement core: specs, targets, protocol client, store, sweeps, CLI."""

__version__ = "0.1.0"

"""Subcommands of the ``vitkit`` CLI, one module each (discovered by :mod:`vitkit.cli`)."""

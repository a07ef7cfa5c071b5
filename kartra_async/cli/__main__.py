"""`python -m kartra_async.cli`: the `kartra` command."""

from . import entry_point

entry_point()

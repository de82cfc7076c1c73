"""The ``tracestream`` command (also ``python -m tracestream``)."""

from __future__ import annotations

import sys

SERVER_INSTALL = "pip install 'tracestream[server]'"


def main() -> None:
    # Imported here, not at the top: `pip install tracestream` is the SDK alone, and there the
    # command should say what to install instead of failing with a traceback.
    try:
        from tracestream.cli import main as run_command
    except ModuleNotFoundError as missing:
        sys.exit(
            f"tracestream: the command needs the server install ({missing.name} is not installed): "
            f"{SERVER_INSTALL}"
        )
    run_command()


if __name__ == "__main__":
    main()

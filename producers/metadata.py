"""Trace metadata MLflow sets automatically: source, user, git, schema version."""

from __future__ import annotations

import contextlib
import getpass
import sys
from configparser import ConfigParser
from functools import cache
from pathlib import Path

from tracestream.schemas import TRACE_SCHEMA_VERSION, TraceMetadataKey


def _git_info(start: Path) -> dict[str, str]:
    """Commit, branch and remote URL of the repository containing ``start``, read from .git
    directly (no subprocess, no GitPython); empty when there is none."""
    for directory in (start, *start.parents):
        git_dir = directory / ".git"
        if git_dir.is_dir():
            break
    else:
        return {}
    info: dict[str, str] = {}
    try:
        head = (git_dir / "HEAD").read_text().strip()
        if head.startswith("ref: "):
            ref = head[5:]
            info[TraceMetadataKey.SOURCE_GIT_BRANCH] = ref.removeprefix("refs/heads/")
            ref_file = git_dir / ref
            if ref_file.exists():
                info[TraceMetadataKey.SOURCE_GIT_COMMIT] = ref_file.read_text().strip()
            elif (git_dir / "packed-refs").exists():
                for line in (git_dir / "packed-refs").read_text().splitlines():
                    if line.endswith(" " + ref):
                        info[TraceMetadataKey.SOURCE_GIT_COMMIT] = line.split(" ", 1)[0]
        else:
            info[TraceMetadataKey.SOURCE_GIT_COMMIT] = head
        config = ConfigParser()
        config.read(git_dir / "config")
        if config.has_option('remote "origin"', "url"):
            info[TraceMetadataKey.SOURCE_GIT_REPO_URL] = config.get('remote "origin"', "url")
    except (OSError, UnicodeDecodeError, ValueError):
        return info
    return info


@cache
def automatic_metadata() -> dict[str, str]:
    """Computed once per process; every trace starts with a copy."""
    metadata = {TraceMetadataKey.SCHEMA_VERSION: TRACE_SCHEMA_VERSION}
    source = sys.argv[0] if sys.argv and sys.argv[0] else "<console>"
    metadata[TraceMetadataKey.SOURCE_NAME] = source
    metadata[TraceMetadataKey.SOURCE_TYPE] = "LOCAL"
    with contextlib.suppress(Exception):  # no user name in some containers
        metadata[TraceMetadataKey.USER] = getpass.getuser()
    # As MLflow: git facts of the working directory, "" when there are none.
    metadata.update(
        dict.fromkeys(
            (
                TraceMetadataKey.SOURCE_GIT_BRANCH,
                TraceMetadataKey.SOURCE_GIT_COMMIT,
                TraceMetadataKey.SOURCE_GIT_REPO_URL,
            ),
            "",
        )
    )
    metadata.update(_git_info(Path.cwd()))
    return metadata

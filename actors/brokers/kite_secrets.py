"""The secrets file: Kite's credentials (API key, API secret, the day's access token)
kept apart from the settings, readable by its owner only.

Two forms, chosen by the name: ``*.toml`` holds ``kite_access_token = "..."`` lines;
anything else is dotenv-style ``OMS_KITE_ACCESS_TOKEN=...`` lines. Either form takes
the names with or without the ``OMS_`` prefix, in any case. Writing replaces one
name's line (or adds it) and keeps every other line; the new file is created with
mode 0600 before anything is written to it, then moved into place, so the secret is
never readable by others, not even for a moment, and a crash leaves the old file whole.

Nothing here logs or raises a value: an error names the file and the name, never what
it holds.
"""
from __future__ import annotations

import json
import logging
import os
import re
import stat
import tomllib
from pathlib import Path

from dotenv import dotenv_values

log = logging.getLogger("oms.kite")

NAMES = ("kite_api_key", "kite_api_secret", "kite_access_token")


class SecretsFileError(ValueError):
    """The secrets file cannot be read or written (the message names it, never a value)."""


def _name(key: str) -> str:
    key = key.strip().lower()
    return key[len("oms_"):] if key.startswith("oms_") else key


def is_toml(path: Path) -> bool:
    return path.suffix.lower() == ".toml"


def read_secrets(path: str | os.PathLike[str]) -> dict[str, str]:
    """The Kite credentials the file holds, by their settings names (``NAMES``); empty
    values are left out."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
        if is_toml(path):
            with path.open("rb") as handle:
                raw = tomllib.load(handle)
        else:
            raw = dotenv_values(path)
    except FileNotFoundError:
        raise SecretsFileError(f"secrets file {path} does not exist") from None
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        # The parser's message can quote the line it choked on: only its type is shown.
        raise SecretsFileError(f"secrets file {path} cannot be read ({type(error).__name__})") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("secrets file %s can be read by others than its owner: chmod 600 it", path)
    found = {_name(key): value for key, value in raw.items() if isinstance(value, str)}
    return {name: found[name].strip() for name in NAMES if found.get(name, "").strip()}


def _line_for(path: Path, name: str, value: str) -> str:
    if is_toml(path):
        return f"{name} = {json.dumps(value)}\n"  # a JSON string is a TOML basic string
    return f"OMS_{name.upper()}={value}\n"


def _is_line_of(line: str, name: str) -> bool:
    match = re.match(r"\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=", line)
    return bool(match) and _name(match.group(1)) == name


def write_secret(path: str | os.PathLike[str], name: str, value: str) -> None:
    """Set ``name`` (one of NAMES) to ``value`` in the file, creating it if need be."""
    if name not in NAMES:
        raise ValueError(f"not a secret the OMS keeps: {name}")
    if not value or any(c in value for c in "\r\n\"'\\ ="):
        raise SecretsFileError(f"{name}: not a value that can be written to {path} (empty or with quotes, spaces or newlines)")
    path = Path(path)
    try:
        lines = path.read_text().splitlines(keepends=True) if path.exists() else []
    except (OSError, UnicodeDecodeError) as error:
        raise SecretsFileError(f"secrets file {path} cannot be read ({type(error).__name__})") from None
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    new = _line_for(path, name, value)
    kept = [line for line in lines if not _is_line_of(line, name)]
    at = next((i for i, line in enumerate(lines) if _is_line_of(line, name)), len(kept))
    kept.insert(min(at, len(kept)), new)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        # Created owner-only before a byte is written (O_EXCL: never someone else's file).
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write("".join(kept))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise SecretsFileError(f"secrets file {path} cannot be written ({type(error).__name__}: {error.strerror})") from None

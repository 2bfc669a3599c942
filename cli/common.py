"""What every ``oms`` command shares: the settings, the database read-only, and output
as tables for people or JSON for machines."""
from __future__ import annotations

import argparse
import dataclasses
import enum
import json
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, NoReturn

from pydantic import ValidationError
from rich.console import Console
from rich.table import Table
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from actors.settings import OMSSettings, describe_settings_error
from persistence.database import safe_url
from persistence.migrate import current_revision, head_revision
from persistence.store import Store


class CommandFailed(Exception):
    """A command cannot do what was asked; its message is for the operator, one line,
    and never holds a credential."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, metavar="FILE", help="TOML settings file (else OMS_CONFIG_FILE, the environment, defaults)")
    parser.add_argument("--json", action="store_true", help="print JSON for machines instead of tables")


def settings_from(args: argparse.Namespace) -> OMSSettings:
    overrides: dict[str, Any] = {}
    if getattr(args, "config", None) is not None:
        overrides["config_file"] = args.config
    try:
        return OMSSettings(**overrides)
    except ValidationError as error:
        raise CommandFailed(f"invalid configuration:\n{describe_settings_error(error)}", 2) from None
    except ValueError as error:
        raise CommandFailed(f"invalid configuration: {error}", 2) from None


def open_store(settings: OMSSettings) -> Store:
    """The OMS's database, for reading: never created, never migrated. A missing file,
    an unreachable server or a database the OMS never ran on is a clear error."""
    url = settings.database_url
    where = safe_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise CommandFailed(f"{where} is an in-memory database: nothing outside its process can read it")
        if not Path(parsed.database).is_file():
            raise CommandFailed(f"no database at {parsed.database} (OMS_DATABASE_URL={where}); start the OMS once to create it")
    try:
        store = Store.open(url, migrate=False, account=settings.account)
    except SQLAlchemyError as error:
        raise CommandFailed(f"cannot open the database {where}: {_reason(error)}") from None
    try:
        stamped = current_revision(store.engine)
    except SQLAlchemyError as error:
        store.close()
        raise CommandFailed(f"cannot read the database {where}: {_reason(error)}") from None
    head = head_revision()
    if stamped is None:
        store.close()
        raise CommandFailed(f"{where} holds no OMS tables; start the OMS once to create them")
    if stamped != head:
        store.close()
        raise CommandFailed(f"{where} is at schema revision {stamped}, this OMS reads {head}: start the OMS to migrate it")
    return store


def _reason(error: SQLAlchemyError) -> str:
    # The driver's first line says what went wrong (refused, no such host, auth); the
    # rest repeats the statement. Neither carries the password: URLs are not echoed.
    original = getattr(error, "orig", None) or error
    return str(original).strip().splitlines()[0] if str(original).strip() else type(original).__name__


def plain(value: Any) -> Any:
    """A value as JSON has it: money as exact strings, times in ISO 8601, enums by value."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v) for v in value]
    return value


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, Decimal) and value.as_tuple().exponent < -2:  # type: ignore[operator]
        return f"{value:.2f}"  # charges to the paisa on screen; --json keeps every digit
    return str(value)


Column = tuple[str, Callable[[Any], Any]]


def emit(args: argparse.Namespace, title: str, rows: Sequence[Any], columns: Iterable[Column],
         as_json: Callable[[Any], Any] = plain) -> None:
    """Rows as a table (people) or a JSON array (``--json``)."""
    if args.json:
        json.dump([as_json(row) for row in rows], sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    columns = list(columns)
    table = Table(title=title, title_justify="left")
    for name, _ in columns:
        table.add_column(name, overflow="fold")
    for row in rows:
        table.add_row(*(cell(read(row)) for _, read in columns))
    console().print(table)
    if not rows:
        console().print("(none)")


def console() -> Console:
    # Piped into a file or a pager, rows stay whole rather than folded to 80 columns.
    probe = Console()
    return probe if probe.is_terminal else Console(width=240, soft_wrap=False)


def fail(message: str) -> NoReturn:
    raise CommandFailed(message)

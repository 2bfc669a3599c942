"""``oms keys``: create, list and revoke the API's keys (in the OMS's database, for the
configured account). ``create`` prints the key once, alone on its last line; only its
SHA-256 hash is stored, so a lost key is revoked and replaced, never recovered."""
from __future__ import annotations

import argparse
import sys

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def register(commands: argparse._SubParsersAction) -> None:
    keys = commands.add_parser("keys", help="create, list and revoke API keys", description=__doc__)
    keys.add_argument("--config", metavar="FILE", help="TOML settings file (else OMS_CONFIG_FILE, the environment, defaults)")
    actions = keys.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True

    create = actions.add_parser("create", help="create a key and print it once")
    create.add_argument("name", help="the key's name (1-64 characters of A-Z, a-z, 0-9, '.', '_', '-')")
    create.add_argument("--strategy", type=int, action="append", metavar="N",
                        help="limit the key to this strategy id (repeat for several); default: every strategy")
    create.add_argument("--read-only", action="store_true", help="the key may read, not place, modify or cancel")
    create.set_defaults(run=run_create)

    listing = actions.add_parser("list", help="list the keys (never the keys themselves)")
    listing.add_argument("--json", action="store_true", help="print JSON for machines instead of a table")
    listing.set_defaults(run=run_list)

    revoke = actions.add_parser("revoke", help="revoke a key: every request with it is refused from now on")
    revoke.add_argument("name")
    revoke.set_defaults(run=run_revoke)


def _keys(args: argparse.Namespace):
    from actors.settings import OMSSettings
    from api.keys import ApiKeys
    from persistence.account_lock import lock_holder
    from persistence.api_keys import ApiKeyStore

    settings = OMSSettings(**({"config_file": args.config} if getattr(args, "config", None) else {}))
    # Keys may be made before the OMS ever ran (the schema is created then), but a
    # running OMS's database is never migrated from here, behind its back.
    running = lock_holder(settings.database_url, settings.account) is not None
    store = ApiKeyStore.open(settings.database_url, settings.account, migrate=not running)
    return ApiKeys(store), store, settings


def _settings_error(error: Exception) -> int:
    from pydantic import ValidationError

    from actors.settings import describe_settings_error

    if isinstance(error, ValidationError):
        print(f"oms: invalid configuration:\n{describe_settings_error(error)}", file=sys.stderr)
    else:
        print(f"oms: {error}", file=sys.stderr)
    return EXIT_FAILED


def run_create(args: argparse.Namespace) -> int:
    from persistence.api_keys import KeyNameTaken

    try:
        keys, store, settings = _keys(args)
    except Exception as error:  # noqa: BLE001 - one line for the operator
        return _settings_error(error)
    try:
        stored, secret = keys.create(args.name, args.strategy, args.read_only)
    except (KeyNameTaken, ValueError) as error:
        print(f"oms keys create: {error}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        store.close()
    from persistence.database import safe_url

    scope = "every strategy" if stored.strategies is None else "strategies " + ", ".join(map(str, stored.strategies))
    print(f"API key {stored.name!r} created for account {settings.account!r} in {safe_url(settings.database_url)} "
          f"({scope}, {'read-only' if stored.read_only else 'read and trade'}).")
    print("It is shown this once and stored only as a hash; keep it secret. Send it as 'Authorization: Bearer <key>'.")
    print(secret, flush=True)
    return EXIT_OK


def run_list(args: argparse.Namespace) -> int:
    try:
        keys, store, settings = _keys(args)
    except Exception as error:  # noqa: BLE001
        return _settings_error(error)
    try:
        listed = keys.list()
    finally:
        store.close()
    if args.json:
        import json

        print(json.dumps([{
            "name": key.name, "strategies": None if key.strategies is None else list(key.strategies), "read_only": key.read_only,
            "created_at": key.created_at.isoformat(), "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None,
        } for key in listed], indent=2))
        return EXIT_OK
    print(f"{'NAME':<24} {'STRATEGIES':<16} {'ACCESS':<10} {'CREATED':<20} REVOKED")
    for key in listed:
        strategies = "all" if key.strategies is None else ",".join(map(str, key.strategies))
        revoked = key.revoked_at.strftime("%Y-%m-%d %H:%M:%S") if key.revoked_at else "-"
        print(f"{key.name:<24} {strategies:<16} {'read' if key.read_only else 'trade':<10} "
              f"{key.created_at.strftime('%Y-%m-%d %H:%M:%S'):<20} {revoked}")
    return EXIT_OK


def run_revoke(args: argparse.Namespace) -> int:
    try:
        keys, store, settings = _keys(args)
    except Exception as error:  # noqa: BLE001
        return _settings_error(error)
    try:
        revoked = keys.revoke(args.name)
    finally:
        store.close()
    if not revoked:
        print(f"oms keys revoke: no live key named {args.name!r}", file=sys.stderr)
        return EXIT_FAILED
    print(f"API key {args.name!r} revoked")
    return EXIT_OK

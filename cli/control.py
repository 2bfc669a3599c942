"""``oms reconcile``, ``oms halt``, ``oms resume`` and ``oms kill``: the operator's
controls. They act through a running OMS's API (``OMS_API_HOST``/``OMS_API_PORT``, or
``--url``) with the key in ``OMS_API_KEY`` (one that may write for the whole account:
``oms keys create ops``), so the OMS itself does what is asked, with its own checks.

With no OMS running for the account, ``halt`` and ``resume`` record the new trading state
in the database, under the account's lock so that no OMS starts meanwhile: the next OMS
starts in it. ``reconcile`` and ``kill`` need the broker, so they need a running OMS.
An OMS that runs but whose API does not answer is never written behind: the command
says so and changes nothing.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import httpx

from api.client import APIError, OMSClient
from cli.common import CommandFailed, add_common, console, open_store, plain, settings_from
from persistence.account_lock import AccountInUse, AccountLock, lock_holder
from persistence.database import safe_url

KEY_VARIABLE = "OMS_API_KEY"


def register(commands: Any) -> None:
    reconcile = commands.add_parser("reconcile", help="reconcile positions and orders with the broker now (running OMS)")
    _common(reconcile)
    reconcile.set_defaults(run=run_reconcile)

    halt = commands.add_parser("halt", help="accept no new orders (cancels still work) until oms resume")
    _common(halt)
    halt.add_argument("--reason", help="why (kept with the state); default: halted by the operator")
    halt.set_defaults(run=run_halt)

    resume = commands.add_parser("resume", help="accept new orders again")
    _common(resume)
    resume.add_argument("--reason", help="why (kept with the state); default: resumed by the operator")
    resume.set_defaults(run=run_resume)

    kill = commands.add_parser("kill", help="the kill switch: cancel every order, flatten every position, halt (running OMS)")
    _common(kill)
    kill.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the exits to fill (default 60)")
    kill.add_argument("--yes", action="store_true", help="do not ask for confirmation at a terminal")
    kill.set_defaults(run=run_kill)


def _common(parser: argparse.ArgumentParser) -> None:
    add_common(parser)
    parser.add_argument("--url", help="the running OMS's API, e.g. http://127.0.0.1:8700 (default: from OMS_API_HOST/OMS_API_PORT)")


def _api_url(args: argparse.Namespace, settings: Any) -> str:
    if args.url:
        return str(args.url).rstrip("/")
    host = "127.0.0.1" if settings.api_host in ("0.0.0.0", "::", "") else settings.api_host
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{settings.api_port}"


def _answers(url: str) -> bool:
    """Whether an OMS API listens at ``url`` (its docs answer without a key)."""
    try:
        return httpx.get(f"{url}/openapi.json", timeout=3.0).status_code == 200
    except httpx.HTTPError:
        return False


def _through_api(args: argparse.Namespace, action: Callable[[OMSClient], Any]) -> tuple[bool, Any]:
    """(True, answer) when a running OMS's API did it; (False, None) when no OMS runs
    for the account (the caller decides); a failure otherwise."""
    settings = settings_from(args)
    url = _api_url(args, settings)
    if not _answers(url):
        holder = _holder(settings)
        if holder is not None:
            raise CommandFailed(
                f"an OMS runs for account {settings.account!r} ({holder}) but its API does not answer at {url}; "
                "start it with `oms serve` (or give --url); nothing was changed")
        return False, settings
    key = os.environ.get(KEY_VARIABLE, "").strip()
    if not key:
        raise CommandFailed(f"the OMS at {url} needs an API key: set {KEY_VARIABLE} to one made by `oms keys create NAME` "
                            "(not --read-only, not limited to strategies)")
    try:
        with OMSClient(url, key) as client:
            reached = client.state()
            if reached.get("account") != settings.account:
                raise CommandFailed(f"the OMS at {url} trades account {reached.get('account')!r}, not {settings.account!r} "
                                    "(OMS_ACCOUNT); nothing was changed")
            return True, action(client)
    except APIError as error:
        raise CommandFailed(f"the OMS at {url} refused: {error.reason}") from None
    except httpx.HTTPError as error:
        raise CommandFailed(f"the OMS at {url} did not answer: {type(error).__name__}") from None


def _holder(settings: Any) -> str | None:
    try:
        return lock_holder(settings.database_url, settings.account)
    except Exception as error:  # noqa: BLE001 - said plainly, never with the URL's password
        raise CommandFailed(f"no OMS API answers, and the database {safe_url(settings.database_url)} cannot be read "
                            f"to tell whether an OMS runs ({type(error).__name__})") from None


def _say(args: argparse.Namespace, document: dict[str, Any], line: str) -> None:
    if args.json:
        print(json.dumps(plain(document), indent=2))
    else:
        console().print(line)


def _set_state(args: argparse.Namespace, state: str, reason: str, through: Callable[[OMSClient], Any]) -> int:
    done, answer = _through_api(args, through)
    if done:
        _say(args, {"trading_state": answer.value, "reason": reason, "through": "api"},
             f"trading state {answer.value} ({reason})")
        return 0
    settings = answer
    # No OMS runs: record the state under the account's lock, so none starts meanwhile.
    lock = AccountLock(settings.database_url, settings.account)
    try:
        lock.acquire()
    except AccountInUse:
        raise CommandFailed(f"an OMS started for account {settings.account!r} just now; try again (through its API)") from None
    try:
        store = open_store(settings)
        try:
            store.record_trading_state(state, reason, datetime.now(timezone.utc))
        finally:
            store.close()
    finally:
        lock.release()
    _say(args, {"trading_state": state, "reason": reason, "through": "database"},
         f"no OMS is running: {state} ({reason}) recorded; the next OMS for account {settings.account!r} starts {state}")
    return 0


def run_halt(args: argparse.Namespace) -> int:
    reason = args.reason or "halted by the operator (oms halt)"
    return _set_state(args, "HALTED", reason, lambda client: client.halt(reason))


def run_resume(args: argparse.Namespace) -> int:
    reason = args.reason or "resumed by the operator (oms resume)"
    return _set_state(args, "RUNNING", reason, lambda client: client.resume(reason))


def _needs_running(answer: Any, what: str) -> None:
    raise CommandFailed(f"no OMS is running for account {answer.account!r} on {safe_url(answer.database_url)}; "
                        f"{what} needs one (start it with `oms serve`)")


def run_reconcile(args: argparse.Namespace) -> int:
    done, answer = _through_api(args, lambda client: client.reconcile_positions())
    if not done:
        _needs_running(answer, "reconciling with the broker")
    report = answer
    if args.json:
        print(json.dumps(report, indent=2))
        return 0 if report.get("all_clear") else 3
    out = console()
    verdict = "[green]all clear[/]" if report.get("all_clear") else "[red]differences found[/]"
    out.print(f"reconciliation at {report.get('timestamp')}: {verdict}")
    for name in ("mismatches", "unknown_positions", "deferred", "untagged_orders"):
        for item in report.get(name) or ():
            out.print(f"  {name}: {json.dumps(item, sort_keys=True)}")
    return 0 if report.get("all_clear") else 3


def run_kill(args: argparse.Namespace) -> int:
    if sys.stdin.isatty() and not args.yes:
        answer = input("Cancel every open order, flatten every position and halt trading? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing done", file=sys.stderr)
            return 1
    done, answer = _through_api(args, lambda client: client.close_all_positions(args.timeout))
    if not done:
        _needs_running(answer, "the kill switch")
    result = answer
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        out = console()
        out.print(f"kill switch: cancelled {len(result.get('cancelled') or [])} order(s), "
                  f"{len(result.get('exit_orders') or [])} exit order(s); trading {result.get('state')}")
        if result.get("all_closed"):
            out.print("[green]every position is flat[/]")
        else:
            out.print(f"[red]positions still open:[/] {json.dumps(result.get('remaining'), sort_keys=True)}")
    return 0 if result.get("all_closed") else 3

#!/usr/bin/env python3
"""Launch the Kite OMS: options, settings, start, run, stop.

    python run_oms.py            a finite paper-trading demo on ./oms_demo.db: the demo
                                 strategy (strategies/demo.py, a pykka actor) trades by
                                 message; a summary read back from the database is
                                 cross-checked against the OMS
    python run_oms.py --serve    start the OMS and its HTTP API (api/, on OMS_API_HOST:
                                 OMS_API_PORT, 127.0.0.1:8700 by default) from settings
                                 and run until SIGINT/SIGTERM
"""
from __future__ import annotations

import argparse
import logging
import os
import secrets
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

DEMO_DATABASE_FILE = "oms_demo.db"
DEMO_CAPITAL = Decimal("200000")
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

log = logging.getLogger("oms.run")


# --------------------------------------------------------------------------- modes


def remove_sqlite_file(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        candidate = Path(str(path) + suffix)
        if candidate.exists():
            candidate.unlink()


@contextmanager
def kite_emulator_for(overrides: dict[str, Any]) -> Iterator[Any]:
    """Start the Kite emulator on a free loopback port and point Kite mode at it, with
    credentials made up for this run (never printed)."""
    from emulator import KiteEmulator

    api_key, api_secret, access_token = (secrets.token_hex(8) for _ in range(3))
    with KiteEmulator(api_key, api_secret, access_token) as emulator:
        overrides.update(
            broker="kite", kite_root=emulator.url, kite_ws_root=emulator.ws_url, kite_api_key=api_key, kite_api_secret=api_secret,
            kite_access_token=access_token,
        )
        overrides.setdefault("kite_poll_interval", 0.1)  # a local emulator answers at once
        # The emulator trades at any hour, as the paper exchange does: the clock rules are
        # off unless configured (the emulator's session is not the exchange's).
        if "enforce_market_hours" not in overrides and not os.environ.get("OMS_ENFORCE_MARKET_HOURS"):
            overrides["enforce_market_hours"] = False
        yield emulator


def run_demo(args: argparse.Namespace, overrides: dict[str, Any], configured: set[str]) -> int:
    if args.broker == "kite":
        print("run_oms.py: the demo moves the market, which real Kite does not let it do; "
              "use --broker kite-emulator for the demo, or --serve to trade on Kite", file=sys.stderr)
        return EXIT_USAGE
    if args.broker == "kite-emulator":
        with kite_emulator_for(overrides) as emulator:
            return _run_demo(args, overrides, configured, emulator)
    overrides["broker"] = "paper"
    return _run_demo(args, overrides, configured, None)


def _run_demo(args: argparse.Namespace, overrides: dict[str, Any], configured: set[str], emulator: Any) -> int:
    from actors import start_oms
    from persistence.database import safe_url
    from strategies.demo_display import open_display
    from strategies.demo_driver import DemoFailed, EmulatorMarket, run_session
    from strategies.demo_summary import report, summary_from_oms
    from strategies.figures import money

    recreate = "database_url" not in configured
    if recreate:
        path = Path.cwd() / DEMO_DATABASE_FILE
        overrides["database_url"] = f"sqlite:///{path}"
        remove_sqlite_file(path)
    if "capital" not in configured:
        overrides["capital"] = DEMO_CAPITAL

    oms = start_oms(**overrides)
    settings = oms.settings
    kind = "Paper-trading" if emulator is None else "Kite-emulator"
    # Two short lines rather than one long one: the board below is 80 columns wide.
    print(f"{kind} demo on {safe_url(settings.database_url)}", flush=True)
    print(f"  database {'recreated' if recreate else 'used as it is'}, capital {money(settings.capital)}", flush=True)
    if emulator is not None:
        print(f"  Kite mode: the official client against the emulator at {emulator.url}", flush=True)
    if oms.metrics_url is not None:
        print(f"  metrics at {oms.metrics_url}", flush=True)
    title = f"Kite OMS {kind.lower()} demo | {safe_url(settings.database_url)} | capital {money(settings.capital)}"
    market = None if emulator is None else EmulatorMarket(oms, emulator)
    try:
        with open_display(quiet=args.quiet, pace=args.pace, title=title) as display:
            surprises = run_session(oms, display, market=market)
        live = summary_from_oms(oms)
        monitoring = monitoring_summary(oms)
    except DemoFailed as exc:
        print(f"run_oms.py: demo failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        oms.stop()

    matches = report(settings.database_url, settings.account, live, surprises)
    print(monitoring, flush=True)
    return EXIT_OK if matches else EXIT_FAILED


def monitoring_summary(oms: Any) -> str:
    """The guide's five KPIs as the run leaves them, and the alerts active (a line each)."""
    k = oms.metrics.kpis()

    def percent(value: float | None) -> str:
        return "-" if value is None else f"{value * 100:.1f}%"

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value * 1000:.0f} ms"

    alerts = oms.alerts
    return "\n".join([
        "Monitoring (the guide's KPIs):",
        f"  order success rate {percent(k.order_success_ratio)} of {k.placements} placements; "
        f"fill rate {percent(k.order_fill_ratio)} of {k.orders_ended} ended",
        f"  latency p95 {ms(k.latency_p95_seconds)}, p99 {ms(k.latency_p99_seconds)} ({k.latencies} orders); "
        f"reconciliation mismatches {k.reconciliation_mismatches}; "
        f"position accuracy {percent(k.position_accuracy_ratio)} of {k.reconciliations} passes",
        "  alerts: " + ("; ".join(f"{a.severity.value} {a.name.value}: {a.summary}" for a in alerts) or "none"),
    ])


def run_service(args: argparse.Namespace, overrides: dict[str, Any]) -> int:
    if args.broker == "kite-emulator":
        with kite_emulator_for(overrides) as emulator:
            print(f"Kite emulator at {emulator.url} (set prices through its Python API)", flush=True)
            return _run_service(overrides)
    return _run_service(overrides)


def _run_service(overrides: dict[str, Any]) -> int:
    from actors import start_oms
    from persistence.database import safe_url
    from strategies.figures import money

    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("received %s", signal.Signals(signum).name)
        stop.set()

    from api.app import PREFIX
    from api.service import ApiService

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    oms = start_oms(**overrides)
    api: ApiService | None = None
    try:
        s = oms.settings
        api = ApiService(oms).start()  # after the OMS, before anyone is told it runs
        live = len(oms.get_active_orders())
        print(f"OMS running: broker {s.broker}, database {safe_url(s.database_url)}, capital {money(s.capital)}, "
              f"{live} live order(s) recovered; stop with SIGINT (Ctrl-C) or SIGTERM", flush=True)
        print(f"API on {api.url}{PREFIX} (docs at {api.url}/docs); keys: oms keys create NAME", flush=True)
        if oms.metrics_url is not None:
            print(f"metrics at {oms.metrics_url}", flush=True)
        log.info("OMS running")
        while not stop.wait(0.2):  # wakes now and then so that the signal handlers get to run
            if not oms.supervisor.is_alive():  # never hang on an OMS that is gone
                print("run_oms.py: the OMS supervisor has stopped unexpectedly; see the log", file=sys.stderr, flush=True)
                return EXIT_FAILED
        print("stopping the OMS ...", flush=True)
    finally:
        try:
            if api is not None:
                api.stop()  # no new requests while the OMS stops
        finally:
            oms.stop()
    print("OMS stopped", flush=True)
    return EXIT_OK


# --------------------------------------------------------------------------- command line


def _capital(text: str) -> Decimal:
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of rupees") from None
    if not value.is_finite() or value <= 0:
        raise argparse.ArgumentTypeError(f"capital must be a positive number of rupees, got {text!r}")
    return value


def _pace(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 <= value <= 60:
        raise argparse.ArgumentTypeError(f"pace must be between 0 and 60 seconds, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="run_oms.py",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Order Management System for Zerodha Kite traders.\n\n"
            "Without --serve it runs a finite paper-trading demo: a scripted strategy (a pykka\n"
            "actor, strategies/demo.py) sends market and limit orders on RELIANCE, INFY, TCS\n"
            "and HDFCBANK to the OMS by message. The OMS validates, records and tracks them\n"
            "against a simulated exchange (fills, a partial fill, a modify, cancels, risk and\n"
            "broker rejections, a profit and a loss). The demo then prints a summary read back\n"
            "from the database and cross-checks it against what the OMS reported. Exit status\n"
            "0 when they agree."
        ),
        epilog=(
            "database of the demo:\n"
            f"  With no --database-url and no OMS_DATABASE_URL (or database_url in the config\n"
            f"  file) the demo uses ./{DEMO_DATABASE_FILE} in the current directory and RECREATES\n"
            "  it at the start of each run (the file and its -wal/-shm side files are deleted).\n"
            "  A database given any other way is used as it is; nothing is deleted.\n\n"
            "display of the demo:\n"
            "  On a terminal: a board of the recent steps, this run's orders and the positions,\n"
            "  redrawn in place (80 columns), pausing --pace seconds after each step. When\n"
            "  stdout is not a terminal (a pipe, a CI log): one line per step, outcome and order\n"
            "  event, with no pause whatever --pace says. --quiet: the summary only.\n\n"
            "configuration:\n"
            "  Every setting of actors/settings.py can be given as an OMS_* environment variable\n"
            "  (OMS_CAPITAL, OMS_MAX_ORDER_VALUE, ...) or a key in the TOML file of --config /\n"
            "  OMS_CONFIG_FILE; command-line options win over both. Keep secrets (a database\n"
            "  password) in the environment or the file rather than on the command line; the\n"
            "  password in a database URL is never printed.\n\n"
            "examples:\n"
            "  python run_oms.py\n"
            "  python run_oms.py --pace 2\n"
            "  python run_oms.py --quiet --database-url sqlite:////tmp/demo.db\n"
            "  OMS_DATABASE_URL=postgresql+psycopg://oms@127.0.0.1:5432/oms python run_oms.py --serve"
        ),
    )
    parser.add_argument(
        "--database-url", metavar="URL",
        help="SQLAlchemy URL of the database: sqlite:///file.db or postgresql+psycopg://user@host/db. "
             "Overrides OMS_DATABASE_URL and the config file; the demo then uses that database "
             f"and deletes nothing (default for the demo: sqlite:///./{DEMO_DATABASE_FILE}, recreated; "
             "for --serve: the settings' default sqlite:///oms.db)",
    )
    parser.add_argument(
        "--capital", metavar="RUPEES", type=_capital,
        help="trading capital in rupees, the base of the risk limits (default: OMS_CAPITAL or the "
             f"config file; otherwise {DEMO_CAPITAL} for the demo and 1000000 for --serve)",
    )
    parser.add_argument(
        "--config", metavar="FILE", type=Path,
        help="TOML file with settings (the keys of OMSSettings, e.g. capital = \"500000\"); "
             "same as OMS_CONFIG_FILE",
    )
    parser.add_argument(
        "--serve", action="store_true",
        help="service mode: start the OMS from the settings (environment, --config, options), "
             "recover live orders from the database, serve the HTTP API (OMS_API_HOST, OMS_API_PORT; "
             "keys from 'oms keys create') and wait until SIGINT or SIGTERM, then stop cleanly. "
             "No demo orders are sent",
    )
    parser.add_argument(
        "--broker", choices=("paper", "kite", "kite-emulator"),
        help="paper: the built-in paper exchange (the demo's default). kite: Zerodha Kite with the "
             "OMS_KITE_* settings (--serve only; credentials from the environment or --config, never "
             "the command line). kite-emulator: Kite mode through the official client against a Kite "
             "emulator started on a free 127.0.0.1 port",
    )
    parser.add_argument(
        "--quiet", action="store_true",
        help="no live display of orders and positions while the demo runs (the summary is still printed)",
    )
    parser.add_argument(
        "--pace", metavar="SECONDS", type=_pace,
        help="on a terminal, pause this long after each move of the demo strategy so it can be "
             "followed (default 0.8; 0 for no pause). Never pauses when stdout is not a terminal",
    )
    parser.add_argument(
        "--metrics-port", metavar="PORT", type=int,
        help="serve the Prometheus metrics at http://127.0.0.1:PORT/metrics while the OMS runs "
             "(same as OMS_METRICS_PORT; 0: any free port, printed at start)",
    )
    parser.add_argument(
        "--log-format", choices=("text", "json"),
        help="the log on stderr as text, or one JSON object a line (default: OMS_LOG_FORMAT or text)",
    )
    parser.add_argument(
        "--log-level", metavar="LEVEL", type=str.upper,
        choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
        help="logging level for the OMS's log on stderr: DEBUG, INFO, WARNING, ERROR or CRITICAL "
             "(default: OMS_LOG_LEVEL or WARNING)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    overrides: dict[str, Any] = {}
    if args.config is not None:
        overrides["config_file"] = args.config
    if args.database_url:
        overrides["database_url"] = args.database_url
    if args.capital is not None:
        overrides["capital"] = args.capital
    if args.log_level:
        overrides["log_level"] = args.log_level
    if args.log_format:
        overrides["log_format"] = args.log_format
    if args.metrics_port is not None:
        overrides["metrics_port"] = args.metrics_port
    if args.broker == "kite":
        overrides["broker"] = "kite"

    try:
        from pydantic import ValidationError

        from actors.settings import OMSSettings, describe_settings_error

        settings = OMSSettings(**overrides)
    except ValidationError as exc:
        print(f"run_oms.py: invalid configuration:\n{describe_settings_error(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except ValueError as exc:
        print(f"run_oms.py: invalid configuration: {exc}", file=sys.stderr)
        return EXIT_USAGE
    level = settings.log_level.upper()
    if level not in logging.getLevelNamesMapping():
        print(f"run_oms.py: invalid log level {settings.log_level!r}", file=sys.stderr)
        return EXIT_USAGE
    from observability.logs import configure_logging, secrets_of

    # One handler on stderr, text or one JSON object a line, with every credential of the
    # settings (and anything shaped like one) taken out of each line.
    configure_logging(level, settings.log_format, secrets=secrets_of(settings))
    log.setLevel(level)

    try:
        if args.serve:
            return run_service(args, overrides)
        return run_demo(args, overrides, set(settings.model_fields_set))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (| head): stop writing, quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILED
    except Exception as exc:  # noqa: BLE001 - one readable line, the traceback in the log
        log.debug("run_oms.py failed", exc_info=True)
        print(f"run_oms.py: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())

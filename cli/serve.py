"""``oms serve``: start the OMS and its API from the settings and run until SIGINT or
SIGTERM, exactly as ``run_oms.py --serve`` does (the same options)."""
from __future__ import annotations

import argparse


def register(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser("serve", help="run the OMS and its HTTP API until SIGINT/SIGTERM", description=__doc__)
    serve.add_argument("--database-url", metavar="URL", help="SQLAlchemy URL of the database (else OMS_DATABASE_URL)")
    serve.add_argument("--config", metavar="FILE", help="TOML file with settings (same as OMS_CONFIG_FILE)")
    serve.add_argument("--broker", choices=("paper", "kite", "kite-emulator"), help="as run_oms.py --broker")
    serve.add_argument("--capital", metavar="RUPEES", help="trading capital in rupees")
    serve.add_argument("--log-level", metavar="LEVEL", help="DEBUG, INFO, WARNING, ERROR or CRITICAL")
    serve.add_argument("--log-format", choices=("text", "json"), help="as run_oms.py --log-format (else OMS_LOG_FORMAT)")
    serve.add_argument("--metrics-port", metavar="PORT", help="serve Prometheus metrics on 127.0.0.1:PORT (else OMS_METRICS_PORT)")
    serve.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import run_oms

    argv = ["--serve"]
    for option in ("database_url", "config", "broker", "capital", "log_level", "log_format", "metrics_port"):
        value = getattr(args, option)
        if value is not None:
            argv += [f"--{option.replace('_', '-')}", str(value)]
    return run_oms.main(argv)

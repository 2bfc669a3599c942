"""oms-login: Kite's daily login, from the login page to the access token in the
secrets file (``python -m actors.brokers.kite_login`` runs it too).

1. It prints the login URL (``https://kite.zerodha.com/connect/login?v=3&api_key=...``).
2. You log in there; Kite redirects to your app's redirect URL with ``request_token=...``.
3. Give it that URL, or the request token alone (as an argument, or on stdin).
4. It exchanges the request token for the day's access token
   (``KiteConnect.generate_session(request_token, api_secret)``) and writes it to the
   secrets file (created owner-only, mode 0600). A running OMS watching that file takes
   the new token without a restart.

The API key and secret come from the environment (OMS_KITE_API_KEY, OMS_KITE_API_SECRET)
or the secrets file. No credential is ever printed, logged or put in an error message;
the API key appears only inside the login URL, where Kite's own page shows it too.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import parse_qs, urlsplit

from kiteconnect import KiteConnect

from actors.brokers.kite_secrets import SecretsFileError, read_secrets, write_secret

LOGIN_ROOT = "https://kite.zerodha.com/connect/login"
API_ROOT = "https://api.kite.trade"
_TOKEN = re.compile(r"[A-Za-z0-9]{6,128}")


class LoginFailed(Exception):
    """The login could not be completed; the message says why and holds no credential."""


def login_url(api_key: str, root: str = LOGIN_ROOT) -> str:
    return f"{root}?v=3&api_key={api_key}"


def request_token_from(text: str) -> str:
    """The request token in Kite's redirect URL, or ``text`` itself if it is one."""
    text = text.strip()
    if "request_token=" in text:
        query = parse_qs(urlsplit(text).query or text.partition("?")[2] or text)
        status = query.get("status", ["success"])[-1]
        if status != "success":
            raise LoginFailed(f"Kite's redirect says the login did not succeed (status={status})")
        text = query.get("request_token", [""])[-1]
    if not _TOKEN.fullmatch(text):
        raise LoginFailed("that is neither Kite's redirect URL with a request_token nor a request token")
    return text


def credentials(secrets_file: Path) -> tuple[str, str]:
    """The API key and secret: the environment's, else the secrets file's."""
    stored = read_secrets(secrets_file) if secrets_file.exists() else {}
    key = os.environ.get("OMS_KITE_API_KEY") or stored.get("kite_api_key")
    secret = os.environ.get("OMS_KITE_API_SECRET") or stored.get("kite_api_secret")
    missing = [name for name, value in (("OMS_KITE_API_KEY", key), ("OMS_KITE_API_SECRET", secret)) if not value]
    if missing:
        raise LoginFailed(f"set {' and '.join(missing)} in the environment or in {secrets_file}")
    return key, secret  # type: ignore[return-value]


def _scrub(text: str, *secrets: str) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def exchange(api_key: str, api_secret: str, request_token: str, root: str = API_ROOT, timeout: float = 7.0) -> str:
    """The access token Kite gives for ``request_token``."""
    client = KiteConnect(api_key, root=root, timeout=timeout)
    try:
        session: Any = client.generate_session(request_token, api_secret=api_secret)
    except Exception as error:
        # The client's own words, minus anything secret they might echo.
        why = _scrub(f"{type(error).__name__}: {error}", api_key, api_secret, request_token)
        raise LoginFailed(f"Kite did not exchange the request token ({why}); log in again for a new one") from None
    token = session.get("access_token") if isinstance(session, dict) else None
    if not token:
        raise LoginFailed("Kite's answer held no access token")
    return str(token)


def login(secrets_file: Path, request: str | None, *, api_root: str, login_root: str,
          stdin: TextIO, stdout: TextIO) -> None:
    api_key, api_secret = credentials(secrets_file)
    print(f"Log in to Kite here:\n  {login_url(api_key, login_root)}", file=stdout)
    if request is None:
        print("Then paste the URL Kite redirected to (or its request_token):", file=stdout, flush=True)
        request = stdin.readline()
    request_token = request_token_from(request)
    token = exchange(api_key, api_secret, request_token, api_root)
    try:
        write_secret(secrets_file, "kite_access_token", token)
    except SecretsFileError as error:
        raise LoginFailed(str(error)) from None
    print(f"The day's access token is saved in {secrets_file} (owner-only, mode 0600).", file=stdout)


def main(argv: Sequence[str] | None = None, stdin: TextIO | None = None, stdout: TextIO | None = None) -> int:
    parser = argparse.ArgumentParser(prog="oms-login", description="Kite's daily login: writes the day's access token to the secrets file.")
    parser.add_argument("request", nargs="?", help="Kite's redirect URL, or its request_token (read from stdin if left out)")
    parser.add_argument("--secrets-file", type=Path, default=os.environ.get("OMS_KITE_SECRETS_FILE"),
                        help="where the access token is written (TOML if *.toml, else KEY=VALUE lines); default $OMS_KITE_SECRETS_FILE")
    parser.add_argument("--root", default=os.environ.get("OMS_KITE_ROOT", API_ROOT), help="Kite API root (an emulator's URL to try it)")
    parser.add_argument("--login-root", default=LOGIN_ROOT, help="Kite's login page")
    args = parser.parse_args(argv)
    out = stdout or sys.stdout
    if args.secrets_file is None:
        parser.error("name the secrets file: --secrets-file PATH (or OMS_KITE_SECRETS_FILE)")
    try:
        login(args.secrets_file, args.request, api_root=args.root.rstrip("/"), login_root=args.login_root,
              stdin=stdin or sys.stdin, stdout=out)
    except (LoginFailed, SecretsFileError) as error:
        print(f"oms-login: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

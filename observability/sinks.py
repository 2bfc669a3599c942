"""Where alerts go: the log always, and any of a webhook (a JSON POST) and Telegram.

A sink is anything with ``send(notice)``. Delivery is best effort: a sink that fails
or times out is logged and the alert goes on to the next sink; nothing here ever
raises into the alerter, let alone into trading. Secrets (a webhook URL often holds
one, a Telegram bot token is in the request path) never appear in what is logged.
"""
from __future__ import annotations

import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from pydantic import SecretStr

from domain.monitoring import Alert, Severity

log = logging.getLogger("oms.alerts")

TELEGRAM_API_ROOT = "https://api.telegram.org"


@dataclass(frozen=True, slots=True)
class AlertNotice:
    """One message to the sinks: an alert that fired, or one that was resolved."""

    state: str  # "firing" or "resolved"
    alert: Alert
    account: str
    at: datetime

    def as_dict(self) -> dict[str, Any]:
        """The webhook's JSON body."""
        a = self.alert
        return {
            "state": self.state,
            "alert": a.name.value,
            "severity": a.severity.value,
            "summary": a.summary,
            "value": a.value,
            "threshold": a.threshold,
            "since": a.since.isoformat(),
            "at": self.at.isoformat(),
            "account": self.account,
            "source": "kite-oms",
        }

    def text(self) -> str:
        """One line for people (the log, Telegram)."""
        a = self.alert
        if self.state == "firing":
            return f"[{a.severity.value.upper()}] OMS {self.account}: {a.name.value}: {a.summary}"
        return f"[RESOLVED] OMS {self.account}: {a.name.value} ({a.severity.value}) is over: {a.summary}"


class AlertSink(Protocol):
    name: str

    def send(self, notice: AlertNotice) -> bool:
        """Deliver ``notice``; True if delivered. Never raises."""
        ...


class LogSink:
    """Every alert into the log (logger ``oms.alerts``): a critical one at CRITICAL, a
    warning at WARNING, a resolution at WARNING (seen at the default level)."""

    name = "log"

    def send(self, notice: AlertNotice) -> bool:
        level = logging.CRITICAL if notice.state == "firing" and notice.alert.severity is Severity.CRITICAL else logging.WARNING
        log.log(level, "alert %s: %s", notice.state, notice.text(),
                extra={"alert": notice.alert.name.value, "severity": notice.alert.severity.value, "alert_state": notice.state})
        return True


def _post_json(url: str, body: dict[str, Any], timeout: float) -> None:
    """POST ``body`` as JSON; raises on a status outside 2xx."""
    data = json.dumps(body).encode("utf-8")
    request = urllib.request.Request(url, data=data, method="POST", headers={
        "Content-Type": "application/json", "User-Agent": "kite-oms-alerts",
    })
    with urllib.request.urlopen(request, timeout=timeout) as response:
        response.read()


def _why(error: BaseException) -> str:
    """What went wrong, in words that carry no URL (it may hold a secret)."""
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code}"
    if isinstance(error, urllib.error.URLError):
        reason = error.reason
        return f"could not connect ({type(reason).__name__})" if isinstance(reason, BaseException) else "could not connect"
    if isinstance(error, TimeoutError):
        return "timed out"
    return type(error).__name__


def _where(url: str) -> str:
    """The scheme and host of ``url``, never its path or query (a webhook's secret)."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")


class WebhookSink:
    """POSTs each notice as JSON (``AlertNotice.as_dict``) to a URL, such as a Slack or
    Discord relay, Alertmanager's webhook receiver or your own service."""

    name = "webhook"

    def __init__(self, url: SecretStr | str, timeout: float = 5.0) -> None:
        self._url = url if isinstance(url, SecretStr) else SecretStr(url)
        self._timeout = timeout

    def __repr__(self) -> str:
        return f"WebhookSink({_where(self._url.get_secret_value())})"

    def send(self, notice: AlertNotice) -> bool:
        url = self._url.get_secret_value()
        try:
            _post_json(url, notice.as_dict(), self._timeout)
        except Exception as error:
            log.error("alert webhook %s: %s not delivered: %s", _where(url), notice.alert.name.value, _why(error))
            return False
        return True


class TelegramSink:
    """Sends each notice to a Telegram chat through a bot (Bot API ``sendMessage``).
    The bot token is a secret: it is in the request's path, so it is never logged, and
    neither is the URL."""

    name = "telegram"

    def __init__(self, bot_token: SecretStr, chat_id: str, api_root: str = TELEGRAM_API_ROOT, timeout: float = 5.0) -> None:
        self._token = bot_token
        self._chat_id = chat_id
        self._root = api_root.rstrip("/")
        self._timeout = timeout

    def __repr__(self) -> str:
        return f"TelegramSink(chat {self._chat_id}, {self._root})"

    def send(self, notice: AlertNotice) -> bool:
        url = f"{self._root}/bot{self._token.get_secret_value()}/sendMessage"
        try:
            _post_json(url, {"chat_id": self._chat_id, "text": notice.text(), "disable_web_page_preview": True}, self._timeout)
        except Exception as error:
            log.error("alert to Telegram (%s, chat %s): %s not delivered: %s",
                      self._root, self._chat_id, notice.alert.name.value, _why(error))
            return False
        return True

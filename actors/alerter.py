"""Alerter: the guide's alert thresholds, evaluated continuously against the KPIs."""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime

from actors.base import NextTick, OMSActor, dispatch, handles
from actors.messages import EvaluateAlerts, GetAlerts
from domain.monitoring import Alert, AlertChanges, AlertName, OMSAlertsConfig, Severity, conditions, step
from observability.metrics import OMSMetrics
from observability.sinks import AlertNotice, AlertSink, LogSink

log = logging.getLogger("oms.alerts")


@dispatch
class Alerter(OMSActor):
    """Owns the alerts active now (by alert name and severity), the sinks they are sent
    to, and its schedule (a timer that tells it EvaluateAlerts every
    ``config.evaluate_every`` seconds).

    Takes EvaluateAlerts (told by its timer; asked, it answers that evaluation's
    AlertChanges) and GetAlerts (answers the active alerts, most severe first).

    It reads the KPIs from the OMS's metrics (counters in memory), never from an actor
    that trades, so alerting costs an order nothing. An alert fires once, to every sink,
    when its condition begins to hold, and is resolved once, to every sink, when it stops;
    a sink that fails is logged and the others still hear it. It is not on any order's
    path: a slow webhook delays the next evaluation, never an order.
    """

    asked = (GetAlerts,)

    def __init__(
        self, metrics: OMSMetrics, config: OMSAlertsConfig, sinks: Sequence[AlertSink], *,
        clock: Callable[[], datetime], account: str, schedule: bool = True,
    ) -> None:
        super().__init__()
        self._metrics = metrics
        self._config = config
        self._sinks: tuple[AlertSink, ...] = (LogSink(), *sinks)
        self._clock = clock
        self._account = account
        self._active: dict[tuple[AlertName, Severity], Alert] = {}
        # An asked evaluation starts the wait for the next afresh.
        self._tick = NextTick(config.evaluate_every if schedule else 0, "oms-alerts-timer")

    def on_start(self) -> None:
        self._schedule()

    def on_stop(self) -> None:
        self._tick.stop()

    def _schedule(self) -> None:
        self._tick.after(self.actor_ref, EvaluateAlerts())

    @handles(EvaluateAlerts)
    def _evaluate(self, message: EvaluateAlerts) -> AlertChanges:
        try:
            return self._evaluate_now()
        except Exception:  # an alerter that dies would go quiet: log, and try again next time
            log.exception("evaluating the alerts failed")
            return AlertChanges(dict(self._active))
        finally:
            self._schedule()

    def _evaluate_now(self) -> AlertChanges:
        now = self._clock()
        changes = step(self._active, conditions(self._metrics.kpis(), self._config), now)
        self._active = dict(changes.active)
        self._metrics.firing(self._active.values())
        for alert in changes.resolved:
            self._send(AlertNotice("resolved", alert, self._account, now))
        for alert in changes.fired:
            self._send(AlertNotice("firing", alert, self._account, now))
        return changes

    def _send(self, notice: AlertNotice) -> None:
        for sink in self._sinks:
            try:
                sink.send(notice)
            except Exception:  # a sink must not raise; one that does is a bug, not an outage
                log.exception("alert sink %s failed", getattr(sink, "name", sink))

    @handles(GetAlerts)
    def _get(self, message: GetAlerts) -> list[Alert]:
        order = {Severity.CRITICAL: 0, Severity.WARNING: 1}
        return sorted(self._active.values(), key=lambda a: (order[a.severity], a.name.value))

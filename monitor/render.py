"""One readable line per alert, for terminals (demo, tail)."""

from __future__ import annotations

from monitor.alert import Alert

_BADGE = {"critical": "CRIT", "warning": "WARN", "info": "INFO"}


def format_alert(alert: Alert) -> str:
    """``2026-11-20 08:15 CRIT worsened neutropenia G3<G1 PAGE SIM-0042 oncology-4b <summary>``."""
    grade = f"G{alert.grade}<G{alert.previous_grade}" if alert.event != "new" else f"G{alert.grade}"
    page = "PAGE" if alert.page else "    "
    when = alert.collected_at.strftime("%Y-%m-%d %H:%M")
    return (
        f"{when} {_BADGE[alert.severity]} {alert.event:<8} {alert.condition:<16} {grade:<6} {page} "
        f"{alert.patient_id} {alert.ward or '-'}  {alert.summary}"
    )

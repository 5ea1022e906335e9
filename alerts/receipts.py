"""Delivery reports: what the SMS providers say happened to a message after they took
it (docs/design-alerts.md, "Reach in China"). Aliyun and Tencent Cloud push them to an
address of ours (``POST /api/receipts/{provider}``); each report is matched to the
notification whose receipt holds its message id, and recorded there (delivered or
failed, when, the provider's words)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from alerts.notify import NotificationRow

CHINA = ZoneInfo("Asia/Shanghai")  # the providers write report times in Beijing time


@dataclass(frozen=True)
class Report:
    message_id: str
    to: str
    delivered: bool
    at_ms: int | None
    detail: str


def _beijing_ms(text: object) -> int | None:
    try:
        at = datetime.strptime(str(text), "%Y-%m-%d %H:%M:%S").replace(tzinfo=CHINA)
    except ValueError:
        return None
    return int(at.timestamp() * 1000)


def parse_reports(provider: str, body: Any) -> list[Report]:
    """The reports of a provider's push (a JSON array); ValueError if it is not one."""
    if not isinstance(body, list):
        raise ValueError("a delivery report push is a JSON array")
    found = []
    for item in body[:1000]:
        if not isinstance(item, dict):
            raise ValueError("each delivery report is an object")
        if provider == "aliyun":
            found.append(
                Report(
                    str(item.get("biz_id", ""))[:100],
                    str(item.get("phone_number", ""))[:32],
                    item.get("success") is True,
                    _beijing_ms(item.get("report_time")),
                    f"{item.get('err_code', '')} {item.get('err_msg', '')}".strip()[:200],
                )
            )
        elif provider == "tencent":
            found.append(
                Report(
                    str(item.get("sid", ""))[:100],
                    str(item.get("mobile", ""))[:32],
                    item.get("report_status") == "SUCCESS",
                    _beijing_ms(item.get("user_receive_time")),
                    f"{item.get('errmsg', '')} {item.get('description', '')}".strip()[:200],
                )
            )
        else:
            raise ValueError(f"no provider {provider!r}")
    return found


def record_reports(s: Session, provider: str, reports: Sequence[Report]) -> int:
    """Record each report on its notification (in the caller's transaction); the number
    matched. A report for a message we never sent is ignored."""
    prefix = f"{provider}-sms "
    matched = 0
    for report in reports:
        if not report.message_id:
            continue
        rows = s.execute(  # only the rows whose receipt names this message
            select(NotificationRow).where(
                NotificationRow.receipt.startswith(prefix),
                NotificationRow.receipt.contains(report.message_id, autoescape=True),
            )
        ).scalars()
        for row in rows:
            if report.message_id not in (row.receipt or "").split()[1:]:
                continue
            delivery = json.loads(row.delivery or "[]")
            delivery.append(
                {
                    "to": report.to,
                    "delivered": report.delivered,
                    "at_ms": report.at_ms,
                    "detail": report.detail,
                }
            )
            row.delivery = json.dumps(delivery, ensure_ascii=False)
            matched += 1
            break
    return matched

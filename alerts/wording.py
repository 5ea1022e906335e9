"""What people read about an alarm, in Chinese and English: the names of breach kinds
and levels, times in the site's zone with their date and offset, values rounded to the
sensor's resolution, and the notification text (docs/design-alerts.md, "Messages").

The pages' dictionary (api/i18n.py) takes the kind and level names from here, so a
notification and the board call a breach by the same name.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo

from alerts.models import BreachRow

Lang = Literal["zh", "en"]

DEFAULT_TZ = "Asia/Shanghai"
#: what the county's sensors resolve (EN 12830: better than 0.5 °C); values are rounded to it
RESOLUTION_C = 0.1

KINDS: Mapping[str, Mapping[Lang, str]] = {
    "high": {"zh": "温度过高", "en": "High"},
    "low": {"zh": "温度过低", "en": "Low"},
    "cumulative_high": {"zh": "累计超高", "en": "Cumulative high"},
    "cumulative_low": {"zh": "累计过低", "en": "Cumulative low"},
    "sensor_fault": {"zh": "传感器故障", "en": "Sensor fault"},
    "no_data": {"zh": "无数据", "en": "No data"},
    "door_open": {"zh": "门未关", "en": "Door open"},
    "rh_high": {"zh": "湿度过高", "en": "Humidity high"},
    "rh_low": {"zh": "湿度过低", "en": "Humidity low"},
    "gateway_offline": {"zh": "网关离线", "en": "Gateway offline"},
    "gateway_clock": {"zh": "网关时钟偏差", "en": "Gateway clock off"},
    "device_alarm": {"zh": "设备报警", "en": "Device alarm"},
}
LEVELS: Mapping[str, Mapping[Lang, str]] = {
    "warning": {"zh": "预警", "en": "Warning"},
    "critical": {"zh": "严重", "en": "Critical"},
}
_TEXT: Mapping[str, Mapping[Lang, str]] = {
    "since": {"zh": "开始于", "en": "since"},
    "max": {"zh": "最高", "en": "max"},
    "min": {"zh": "最低", "en": "min"},
    "batches": {"zh": "受影响批次", "en": "batches"},
    "none": {"zh": "无", "en": "none"},
    "sensor": {"zh": "传感器", "en": "sensor"},
    "ack": {
        "zh": "请填写说明并确认，以停止升级通知",
        "en": "Acknowledge with a comment to stop the escalation",
    },
    "link": {"zh": "在手机上确认", "en": "Acknowledge on your phone"},
    "over": {
        "zh": "监控中断期间发生的超限，已于{t}结束。",
        "en": "Excursion while monitoring was down, over since {t}.",
    },
    "gateway": {"zh": "网关", "en": "gateway"},
    "over_subject": {"zh": "（监控中断期间）", "en": " (while monitoring was down)"},
}


def kind_name(kind: str, lang: Lang) -> str:
    return KINDS.get(kind, {}).get(lang, kind)


def level_name(level: str, lang: Lang) -> str:
    return LEVELS.get(level, {}).get(lang, level)


def local_time(ts_ms: int, tz: str = DEFAULT_TZ) -> str:
    """A time as a person reads it: the date and the minute in the site's zone, with the
    offset (``2026-12-07 21:14 (UTC+08:00)``): a backlog may be days old."""
    at = datetime.fromtimestamp(ts_ms / 1000, ZoneInfo(tz))
    offset = at.strftime("%z")
    return f"{at:%Y-%m-%d %H:%M} (UTC{offset[:3]}:{offset[3:]})"


def rounded(value: float | None, resolution: float = RESOLUTION_C) -> str | None:
    """A measured value at the sensor's resolution (never 7.6000000000000005)."""
    if value is None:
        return None
    steps = round(value / resolution)
    decimals = max(0, -int(f"{resolution:e}".split("e")[1]))
    return f"{steps * resolution:.{decimals}f}"


@dataclass(frozen=True)
class AlarmFacts:
    """What a notification says about one alarm."""

    place: str
    kind: str
    level: str
    start_ms: int
    gateway: str
    sensor: str
    min_value: float | None
    max_value: float | None
    batches: tuple[str, ...]
    tz: str = DEFAULT_TZ
    #: the place's name in Chinese, where it has one
    place_zh: str | None = None

    def where(self, lang: Lang) -> str:
        return (self.place_zh if lang == "zh" else None) or self.place

    @classmethod
    def of(cls, place: str, breach: BreachRow, tz: str, place_zh: str | None = None) -> AlarmFacts:
        return cls(
            place,
            breach.kind,
            breach.level,
            breach.start_ms,
            breach.gateway,
            breach.sensor,
            breach.min_value,
            breach.max_value,
            tuple(json.loads(breach.batches or "[]")),
            tz,
            place_zh,
        )

    @property
    def unit(self) -> str:
        return "%" if self.kind.startswith("rh_") else " °C"

    def subject(self, lang: Lang) -> str:
        return f"[{level_name(self.level, lang)}] {kind_name(self.kind, lang)} · {self.where(lang)}"

    def values(self, lang: Lang) -> str:
        """The extreme that matters: the max of a high breach, the min of a low one."""
        high = self.kind in ("high", "cumulative_high", "rh_high")
        value, word = (self.max_value, "max") if high else (self.min_value, "min")
        shown = rounded(value)
        return "" if shown is None else f"{_TEXT[word][lang]} {shown}{self.unit}"

    def body(self, lang: Lang, link: str | None = None) -> str:
        sep = "；" if lang == "zh" else "; "
        kind, level = kind_name(self.kind, lang), level_name(self.level, lang)
        since = f"{_TEXT['since'][lang]} {local_time(self.start_ms, self.tz)}"
        parts = [
            f"{self.where(lang)}：{kind}（{level}），{since}"
            if lang == "zh"
            else f"{self.place}: {kind} ({level}), {since}"
        ]
        if shown := self.values(lang):
            parts.append(shown)
        where = f"{self.gateway}/{self.sensor}" if self.sensor else self.gateway
        parts.append(f"{_TEXT['sensor'][lang]} {where}")
        batches = ", ".join(self.batches) or _TEXT["none"][lang]
        parts.append(f"{_TEXT['batches'][lang]} {batches}")
        text = sep.join(parts) + ("。" if lang == "zh" else ". ") + _TEXT["ack"][lang]
        if link:
            return text + ("：" if lang == "zh" else ": ") + link
        return text + ("。" if lang == "zh" else ".")

    def fields(self, lang: Lang, alarm_id: int, link: str | None) -> dict[str, str]:
        """The facts an approved SMS or voice template is filled with: short, each within
        the providers' limit for one variable (35 characters)."""
        at = datetime.fromtimestamp(self.start_ms / 1000, ZoneInfo(self.tz))
        found = {
            "place": self.where(lang)[:35],
            "event": f"{kind_name(self.kind, lang)}({level_name(self.level, lang)})"[:35],
            "time": f"{at:%m-%d %H:%M}",
            "value": (self.values(lang) or "-")[:35],
            "batches": (", ".join(self.batches) or _TEXT["none"][lang])[:35],
            "alarm": str(alarm_id),
        }
        if link:
            found["link"] = link
        return found

    def over_subject(self, lang: Lang) -> str:
        return self.subject(lang) + _TEXT["over_subject"][lang]

    def over_note(self, end_ms: int, lang: Lang) -> str:
        return _TEXT["over"][lang].format(t=local_time(end_ms, self.tz))


# ---------------------------------------------------------------------- verdicts
DISPOSITIONS: Mapping[str, Mapping[Lang, str]] = {
    "may_return_to_refrigeration": {"zh": "可重新冷藏", "en": "may go back into refrigeration"},
    "use_or_sell_now": {
        "zh": "须立即使用或出售，不得再冷藏",
        "en": "use or sell now, do not refrigerate again",
    },
    "discard": {"zh": "须销毁", "en": "discard"},
}
_REASONS: Mapping[str, Mapping[Lang, str]] = {
    "critical_excursion": {
        "zh": "{time}起严重{kind}超限（最高 {max}，最低 {min}）",
        "en": "critical {kind} excursion from {time} (max {max}, min {min})",
    },
    "breach": {"zh": "{time}起{level}：{kind}", "en": "{level} {kind} breach from {time}"},
    "hole": {"zh": "{time}起{kind}：记录有缺口", "en": "{kind} from {time}: the record has a hole"},
    "discard": {
        "zh": "在 5 至 60 °C 之间超过 4 小时：须销毁",
        "en": "more than 4 h between 5 and 60 °C: discard",
    },
    "use_now": {
        "zh": "在 5 至 60 °C 之间 2 至 4 小时：须立即使用或出售，不得再冷藏",
        "en": "2-4 h between 5 and 60 °C: use or sell now, do not refrigerate again",
    },
    "mkt_above": {
        "zh": "平均动力学温度 {mkt} 高于保存上限 {keep}",
        "en": "MKT {mkt} is above the keep-at limit {keep}",
    },
    "no_temperatures": {"zh": "全程没有温度数据", "en": "no temperature data for the journey"},
    "within": {"zh": "全程在产品规定的范围内", "en": "stayed within the profile's limits"},
}


@dataclass(frozen=True)
class Reason:
    """One reason of a verdict, as facts: written for each reader by :func:`reason_text`."""

    code: str
    kind: str = ""
    level: str = ""
    ts_ms: int | None = None
    max_c: float | None = None
    min_c: float | None = None
    mkt_c: float | None = None
    keep_c: float | None = None


def _deg(value: float | None) -> str:
    shown = rounded(value)
    return "-" if shown is None else f"{shown} °C"


def reason_text(reason: Reason, lang: Lang, tz: str = DEFAULT_TZ) -> str:
    kind, level = kind_name(reason.kind, lang), level_name(reason.level, lang)
    if lang == "en":
        kind, level = kind.lower(), level.lower()
    return _REASONS[reason.code][lang].format(
        kind=kind,
        level=level,
        time="" if reason.ts_ms is None else local_time(reason.ts_ms, tz),
        max=_deg(reason.max_c),
        min=_deg(reason.min_c),
        mkt=_deg(reason.mkt_c),
        keep=_deg(reason.keep_c),
    )


def disposition_text(value: str, lang: Lang) -> str:
    return DISPOSITIONS.get(value, {}).get(lang, value)

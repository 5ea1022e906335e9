"""The pages' words in Simplified Chinese and English. The language comes from ``?lang=``
(remembered in a cookie), else the browser's Accept-Language, else Chinese."""

from __future__ import annotations

from fastapi import Request

LANGUAGES = ("zh", "en")

TEXT: dict[str, dict[str, str]] = {
    "app": {"zh": "冷链监控", "en": "Cold-chain monitor"},
    "board": {"zh": "报警看板", "en": "Alarm board"},
    "wall": {"zh": "监控大屏", "en": "Monitoring wall"},
    "batches": {"zh": "批次", "en": "Batches"},
    "cab": {"zh": "驾驶室", "en": "Cab view"},
    "sign_in": {"zh": "登录", "en": "Sign in"},
    "sign_out": {"zh": "退出", "en": "Sign out"},
    "username": {"zh": "用户名", "en": "User name"},
    "password": {"zh": "密码", "en": "Password"},
    "open_alarms": {"zh": "未结束报警", "en": "Open alarms"},
    "no_alarms": {"zh": "没有报警", "en": "No open alarms"},
    "acknowledge": {"zh": "确认", "en": "Acknowledge"},
    "comment": {"zh": "处理说明（必填）", "en": "What was done (required)"},
    "comment_needed": {"zh": "请填写处理说明", "en": "Write what was done"},
    "acknowledged_by": {"zh": "确认人", "en": "Acknowledged by"},
    "since": {"zh": "开始", "en": "Since"},
    "batches_affected": {"zh": "受影响批次", "en": "Batches"},
    "critical": {"zh": "严重", "en": "Critical"},
    "warning": {"zh": "警告", "en": "Warning"},
    "active": {"zh": "未确认", "en": "Unacknowledged"},
    "acknowledged": {"zh": "已确认", "en": "Acknowledged"},
    "cleared": {"zh": "已恢复，待确认", "en": "Cleared, not acknowledged"},
    "closed": {"zh": "已关闭", "en": "Closed"},
    "new_critical": {"zh": "新的严重报警", "en": "New critical alarm"},
    "rooms": {"zh": "库房与车厢", "en": "Rooms and compartments"},
    "limits": {"zh": "限值", "en": "Limits"},
    "state_ok": {"zh": "正常", "en": "OK"},
    "state_alarm": {"zh": "报警", "en": "Alarm"},
    "state_stale": {"zh": "数据过时", "en": "Stale"},
    "state_no_data": {"zh": "无数据", "en": "No data"},
    "last_reading": {"zh": "最近读数", "en": "Last reading"},
    "ago": {"zh": "前", "en": "ago"},
    "setpoint": {"zh": "设定值", "en": "Setpoint"},
    "door": {"zh": "门", "en": "Door"},
    "door_open": {"zh": "开", "en": "Open"},
    "door_closed": {"zh": "关", "en": "Closed"},
    "route": {"zh": "路线", "en": "Route"},
    "speed": {"zh": "速度", "en": "Speed"},
    "position": {"zh": "位置", "en": "Position"},
    "offline_note": {
        "zh": "无网络时由本车网关提供",
        "en": "served by this truck's gateway when there is no signal",
    },
    "journey": {"zh": "流转记录", "en": "Journey"},
    "verdict": {"zh": "结论", "en": "Verdict"},
    "accept": {"zh": "合格", "en": "Accept"},
    "review": {"zh": "需复核", "en": "Review"},
    "reject": {"zh": "不合格", "en": "Reject"},
    "in_progress": {"zh": "运输中", "en": "In transit"},
    "mkt": {"zh": "平均动力学温度", "en": "Mean kinetic temperature"},
    "out_of_range": {"zh": "超限时间", "en": "Time out of range"},
    "disposition": {"zh": "2小时/4小时处置", "en": "2 h / 4 h disposition"},
    "alarms": {"zh": "报警", "en": "Alarms"},
    "excursions": {"zh": "偏离", "en": "Excursions"},
    "handover": {"zh": "交接", "en": "Handover"},
    "by": {"zh": "经手人", "en": "By"},
    "temp_at_handover": {"zh": "交接温度", "en": "Temperature at handover"},
    "download_csv": {"zh": "下载 CSV", "en": "Download CSV"},
    "download_pdf": {"zh": "下载 PDF 报告", "en": "Download PDF report"},
    "origin": {"zh": "产地", "en": "Origin"},
    "product": {"zh": "产品", "en": "Product"},
    "quantity": {"zh": "数量", "en": "Quantity"},
    "trace_title": {"zh": "产品溯源", "en": "Product trace"},
    "chain_held": {"zh": "冷链全程达标", "en": "The cold chain held"},
    "chain_broken": {"zh": "冷链出现偏离", "en": "The cold chain was broken"},
    "chain_in_progress": {
        "zh": "运输中，目前冷链达标",
        "en": "In transit; the cold chain has held so far",
    },
    "flags": {"zh": "提示", "en": "Flags"},
    "calibration": {"zh": "校准", "en": "Calibration"},
    "overdue": {"zh": "校准过期", "en": "overdue"},
    "generated": {"zh": "生成时间", "en": "Generated"},
    "data_hash": {"zh": "数据哈希", "en": "Data hash"},
    "today": {"zh": "今日", "en": "Today"},
    "readings_today": {"zh": "今日读数", "en": "Readings today"},
    "alarms_today": {"zh": "今日报警", "en": "Alarms today"},
    "gateways_online": {"zh": "在线网关", "en": "Gateways online"},
    "trucks": {"zh": "车辆", "en": "Trucks"},
    "language": {"zh": "English", "en": "中文"},
    "back_filling": {"zh": "补传中", "en": "Back-filling"},
    "unconfirmed": {"zh": "未确认入库", "en": "Not confirmed stored"},
    "offline": {"zh": "离线", "en": "Offline"},
    "online": {"zh": "在线", "en": "Online"},
    "unknown": {"zh": "未知", "en": "No status yet"},
    "kind_high": {"zh": "温度过高", "en": "High"},
    "kind_low": {"zh": "温度过低", "en": "Low"},
    "kind_cumulative_high": {"zh": "累计超高", "en": "Cumulative high"},
    "kind_cumulative_low": {"zh": "累计过低", "en": "Cumulative low"},
    "kind_sensor_fault": {"zh": "传感器故障", "en": "Sensor fault"},
    "kind_no_data": {"zh": "无数据", "en": "No data"},
    "kind_door_open": {"zh": "门未关", "en": "Door open"},
    "kind_rh_high": {"zh": "湿度过高", "en": "Humidity high"},
    "kind_rh_low": {"zh": "湿度过低", "en": "Humidity low"},
    "kind_gateway_offline": {"zh": "网关离线", "en": "Gateway offline"},
    "kind_gateway_clock": {"zh": "网关时钟偏差", "en": "Gateway clock off"},
    "clock_ahead": {"zh": "快 {n} 分钟", "en": "{n} min ahead"},
    "clock_behind": {"zh": "慢 {n} 分钟", "en": "{n} min behind"},
    "kind_cold_room": {"zh": "冷库", "en": "Cold room"},
    "kind_pre_cooling": {"zh": "预冷间", "en": "Pre-cooling room"},
    "kind_constant_temp": {"zh": "恒温库", "en": "Constant-temperature room"},
    "kind_truck_compartment": {"zh": "冷藏车厢", "en": "Truck compartment"},
    "kind_station_store": {"zh": "中转站冷库", "en": "Transfer-station store"},
    "forbidden": {"zh": "您的角色无权查看此页面", "en": "Your role may not see this page"},
    "to_board": {"zh": "返回报警看板", "en": "Back to the alarm board"},
    "calibrated_note": {
        "zh": "温度为校准值（已加上有效的校准修正），与报告一致",
        "en": "Temperatures are calibrated (the correction in force applied), as in the reports",
    },
    "raw": {"zh": "原始值", "en": "raw"},
    "correction": {"zh": "修正", "en": "correction"},
}


def language(request: Request) -> str:
    asked = request.query_params.get("lang") or request.cookies.get("lang")
    if asked in LANGUAGES:
        return asked
    accept = request.headers.get("accept-language", "")
    return "en" if accept.lower().startswith("en") else "zh"


def words(lang: str) -> dict[str, str]:
    return {key: texts[lang] for key, texts in TEXT.items()}

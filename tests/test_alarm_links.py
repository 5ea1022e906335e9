"""Acknowledge from the phone that was notified (issue 16): a notification carries a
signed link to its alarm; the recipient opens it in Chromium, signs in, acknowledges
with a comment, and the board shows who did and what they said."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select
from sqlalchemy.orm import Session

from alerts.escalation import Route, escalate
from alerts.lifecycle import Policy, Step
from alerts.links import Links
from alerts.notify import NotificationRow
from alerts.repo.users import Role
from tests.api_server import PASSWORD, Api, an_alarm, serve, user_of
from tests.harness import Broker

SECRET = "a link secret of at least 32 characters"
POLICY = Policy(steps=(Step(0, ("duty-operator",)),), repeat_min=None)


@pytest.fixture
def linked(tmp_path: Path, running_broker: Broker) -> Iterator[Api]:
    """The API and pages on SQLite, holding the alert service's link secret."""
    url = f"sqlite:///{tmp_path / 'alerts.sqlite'}"
    with serve(url, tmp_path, running_broker, link_secret=SECRET) as served:
        yield served


def notified_link(api: Api, alarm_id: int, lang: str = "en") -> str:
    """Escalate as the alert service does; the link in the operator's message."""
    routes = {"duty-operator": (Route("sms", "+86-139-0000-0001", lang),)}  # type: ignore[arg-type]
    links = Links(api.url, SECRET)
    assert escalate(api.engine, POLICY, routes, api.t0_ms + 3 * 3_600_000, links=links) == 1
    with Session(api.engine) as s:
        row = s.execute(
            select(NotificationRow).where(NotificationRow.alarm_id == str(alarm_id))
        ).scalar_one()
    assert json.loads(row.recipients) == ["+86-139-0000-0001"]
    return row.body.rsplit(" ", 1)[1]


def test_the_link_in_a_notification_opens_its_alarm_where_the_recipient_acknowledges_it(
    linked: Api, page: Page
) -> None:
    alarm_id = an_alarm(linked)
    link = notified_link(linked, alarm_id)
    assert link.startswith(f"{linked.url}/a/")
    page.goto(link)  # not signed in on this phone yet: the sign-in page, then the alarm
    page.wait_for_url(lambda url: urlparse(url).path == "/login")
    page.fill("input[name=username]", user_of(Role.OPERATOR))
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: urlparse(url).path == f"/alarms/{alarm_id}")
    item = page.locator(f'#alarms li.alarm[data-alarm="{alarm_id}"]')
    expect(item).to_contain_text("High")
    item.locator("input[name=comment]").fill("compressor reset from the phone")
    item.locator("button[type=submit]").click()
    expect(item).to_contain_text("compressor reset from the phone")
    expect(item.locator("form.ack")).to_have_count(0)
    page.goto(f"{linked.url}/board")  # the board shows it, with who and what they said
    on_board = page.locator(f'#alarms li.alarm[data-alarm="{alarm_id}"]')
    expect(on_board).to_contain_text(user_of(Role.OPERATOR))
    expect(on_board).to_contain_text("compressor reset from the phone")


def test_a_link_that_is_forged_altered_or_expired_opens_nothing(linked: Api, page: Page) -> None:
    alarm_id = an_alarm(linked)
    link = notified_link(linked, alarm_id)
    with httpx.Client(timeout=20, follow_redirects=False) as client:
        assert client.get(link).status_code == 303
        altered = link[:-3] + ("AAA" if not link.endswith("AAA") else "BBB")
        assert client.get(altered).status_code == 410
        expired = Links(linked.url, SECRET, valid_ms=-1).for_alarm(alarm_id, "x", 0)
        answer = client.get(expired)
        assert answer.status_code == 410 and "expired" in answer.text
        forged = Links(linked.url, "another secret, also 32 characters").for_alarm(
            alarm_id, "x", linked.t0_ms
        )
        assert client.get(forged).status_code == 410


def test_an_operator_of_another_site_who_holds_the_link_sees_no_alarm(linked: Api) -> None:
    alarm_id = an_alarm(linked)
    link = notified_link(linked, alarm_id, lang="zh")
    with httpx.Client(base_url=linked.url, timeout=20) as client:
        client.headers["Authorization"] = f"Bearer {linked.token(Role.OPERATOR, other=True)}"
        assert client.get(link.removeprefix(linked.url), follow_redirects=True).status_code == 404

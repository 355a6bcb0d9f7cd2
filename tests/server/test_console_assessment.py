"""The console's assessment page takes its days as the city counts them: the range the server used, the last day
shown as the last day, the annual evaluation; in a real browser against a running server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from server.db import Database
from server.models import CaseRecord

CST = timezone(timedelta(hours=8))


def opened_case(server_settings, opened: datetime) -> None:
    """A sanitation case opened at `opened`, written to the server's database."""
    with Database(server_settings.database_url).session() as session:
        session.add(CaseRecord(violation_id=f"v-{opened.isoformat()}", category="litter", code="0102",
                               status="dispatched", node_id="node-a", camera_id="kerb", zone_id="kerb",
                               label="garbage", score=0.9, opened_at=opened, updated_at=opened, started_at=opened,
                               last_seen_at=opened, dwell_seconds=60, occurrences=1, open_violations=1,
                               unit_id="sanitation", unit_name="环卫 Sanitation"))
        session.commit()


def assessment_page(browser, server_url: str, token: str, where: str, *, timezone_id: str = "Asia/Shanghai",
                    now: datetime | None = None):  # noqa: ANN201 - a Playwright page
    """The page in a browser of that time zone, its clock at `now` if given, logged in with `token`."""
    page = browser.new_page(viewport={"width": 1366, "height": 768}, locale="en-US", timezone_id=timezone_id)
    if now is not None:
        page.clock.set_fixed_time(now)
    page.goto(f"{server_url}/console/{where}")
    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_selector("#assessment, .empty, #assessment-error")
    return page


def periods_shown(page) -> list[str]:
    return page.locator("#assessment tbody tr td:nth-child(2)").all_inner_texts()


def test_the_default_range_is_the_citys_last_months_whatever_the_browsers_clock_and_zone(
        server_url, server_settings, browser, api_tokens, monkeypatch):
    """Found by review: the page built its range from the browser's clock and time zone. A supervisor in London at
    16:30 on 30 November asked for June to November, and the city's 1 December, 00:30 in Hangzhou, with its case,
    was left out."""
    import server.api.routes.assessment as route

    city_now = datetime(2026, 12, 1, 0, 30, tzinfo=CST)
    monkeypatch.setattr(route, "utcnow", lambda: city_now.astimezone(UTC))
    opened_case(server_settings, datetime(2026, 12, 1, 0, 10, tzinfo=CST))
    page = assessment_page(browser, server_url, api_tokens["supervisor"], "#/assessment?by=unit&period=month",
                           timezone_id="Europe/London", now=city_now)
    assert periods_shown(page) == ["2026-12"]
    assert (page.input_value("input[name=from]"), page.input_value("input[name=to]")) == ("2026-07-01", "2026-12-31"), \
        "the six months the server took, to the last day of the city's month"

    page.select_option("select[name=period]", "year")  # the annual evaluation (年度考评)
    page.wait_for_selector("#assessment td:text-is('2026')")
    assert (page.input_value("input[name=from]"), page.input_value("input[name=to]")) == ("2024-01-01", "2026-12-31")


def test_the_last_day_picked_is_in_the_range(server_url, server_settings, browser, api_tokens):
    """Found by review: the `to` picked was sent as the API's `to`, the day after the last: a supervisor picking
    1 to 30 November got rows to the 29th."""
    opened_case(server_settings, datetime(2026, 11, 30, 12, 0, tzinfo=CST))
    page = assessment_page(browser, server_url, api_tokens["supervisor"],
                           "#/assessment?by=unit&period=day&from=2026-11-01&to=2026-11-30")
    assert periods_shown(page) == ["2026-11-30"]
    assert page.input_value("input[name=to]") == "2026-11-30"
    row = dict(zip(page.locator("#assessment th").all_inner_texts(),
                   page.locator("#assessment tbody tr").first.locator("td").all_inner_texts(), strict=True))
    assert (row["cases"], row["returned"]) == ("1", "0"), "its one case; the cases the unit gave back, a column"
    assert row["rank"] == "—", "nothing due yet: not ranked"

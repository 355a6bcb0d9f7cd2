"""The console keeps what an operator types or opens, and its keys work wherever text is not typed: found by review,
each in a real browser against a running server."""

from __future__ import annotations

from datetime import timedelta

import httpx

from server.db import Database
from server.models import CaseRecord, utcnow
from tests.conftest import as_role
from tests.factories import wait_until
from tests.server.test_console import case_page, detection


def login(browser, server_url: str, token: str, where: str):  # noqa: ANN201 - a Playwright page
    page = browser.new_page(viewport={"width": 1366, "height": 768}, locale="en-US")
    page.goto(f"{server_url}/console/{where}")
    page.fill("#token", token)
    page.click("button[type=submit]")
    return page


def zone_editor(browser, server_url: str, token: str, config: dict) -> tuple:
    """The zone editor of node-a's camera `kerb`, logged in with `token`, the node and its `config` stood in for;
    with the list that each config the page sends is added to (answered as the next version, not yet applied)."""
    import json

    sent: list[dict] = []

    def zones(route) -> None:
        sent.append(json.loads(route.request.post_data))
        route.fulfill(status=202, json={**config, "config_version": f"v{len(sent) + 1}", "status": None})

    page = browser.new_page(viewport={"width": 1366, "height": 768}, locale="en-US")
    page.route("**/api/v1/cameras", lambda route: route.fulfill(json=[{"node_id": "node-a", "camera_id": "kerb"}]))
    page.route("**/api/v1/nodes/node-a/config", lambda route: route.fulfill(json=config))
    page.route("**/api/v1/nodes/node-a/cameras/kerb/snapshot", lambda route: route.fulfill(status=404, json={}))
    page.route("**/api/v1/nodes/node-a/commands", lambda route: route.fulfill(status=202, json={}))
    page.route("**/api/v1/nodes/node-a/cameras/kerb/zones", zones)
    page.goto(f"{server_url}/console/#/zones?node=node-a&camera=kerb")
    page.fill("#token", token)
    page.click("button[type=submit]")
    return page, sent


def test_review_keys_work_after_a_row_is_ticked_and_with_caps_lock(server_url, browser, api_tokens, mqtt_client):
    """A ticked checkbox kept the focus, and every key did nothing until the operator clicked elsewhere; capitals
    (Caps Lock, Shift), as the README writes the keys, did nothing at all."""
    node = mqtt_client("node-a")
    for place in range(3):
        detection(node, place=place)
    page = login(browser, server_url, api_tokens["operator"], "#/review")
    page.wait_for_selector("#queue li[data-case-id='3']")
    page.locator("#queue li[data-case-id='2'] input[type=checkbox]").click()
    current = page.locator("#queue li.current").get_attribute("data-case-id")
    page.keyboard.press("Shift+J")
    page.wait_for_function(f"document.querySelector('#queue li.current').dataset.caseId !== '{current}'")
    moved_to = page.locator("#queue li.current").get_attribute("data-case-id")
    page.keyboard.press("C")
    page.wait_for_selector(f"text=Case {moved_to} confirmed and dispatched")


def test_the_case_page_sends_the_reason_typed_and_keeps_it_through_a_live_change(server_url, browser, api_tokens,
                                                                                 mqtt_client):
    """The reason box is always there, but only some actions sent it; and every live change of the case (a step
    someone else took, an escalation) rebuilt the form, wiping what the operator was typing."""
    detection(mqtt_client("node-a"), place=0)  # doubtful: waits for an operator
    operator = as_role(api_tokens, "operator")
    wait_until(lambda: httpx.get(f"{server_url}/api/v1/cases/1", headers=operator).status_code == 200)
    page = case_page(browser, server_url, api_tokens["operator"])
    page.wait_for_selector("#case-actions button[data-action='file']")
    page.fill("#case-actions input[name=reason]", "seen on the camera: three bags by the bin")
    page.click("#case-actions button[data-action='file']")
    page.wait_for_selector("#timeline >> text=seen on the camera: three bags by the bin")

    page.fill("#case-actions input[name=reason]", "called the shop owner")
    accepted = httpx.post(f"{server_url}/api/v1/cases/1/actions", json={"action": "accept"},
                          headers=as_role(api_tokens, "sanitation"))
    assert accepted.status_code == 200
    page.wait_for_selector("#timeline >> text=accept")
    assert page.input_value("#case-actions input[name=reason]") == "called the shop owner"


def test_the_city_plan_keeps_the_camera_picked_when_a_case_changes_elsewhere(server_url, browser, api_tokens,
                                                                             mqtt_client):
    node = mqtt_client("node-a")
    for place in range(2):
        detection(node, place=place, score=0.9)
    operator = as_role(api_tokens, "operator")
    wait_until(lambda: httpx.get(f"{server_url}/api/v1/cases", headers=operator).json()["total"] == 2)
    page = login(browser, server_url, api_tokens["supervisor"], "#/city")
    page.wait_for_selector(".live.on")
    page.locator("circle[data-camera='node-a/kerb-0']").dispatch_event("click")
    page.wait_for_selector("#camera-detail >> text=node-a / kerb-0")
    assert httpx.post(f"{server_url}/api/v1/cases/2/actions", json={"action": "accept"},
                      headers=as_role(api_tokens, "sanitation")).status_code == 200
    page.wait_for_timeout(2500)  # the plan redraws a second after a change
    assert page.locator("#camera-detail h2").inner_text() == "node-a / kerb-0"


def test_assessment_shows_trends_over_the_last_months_of_real_cases(server_url, server_settings, browser,
                                                                    api_tokens):
    """The page asked for the current period only: on a real server its trend charts never appeared (the test of
    the charts replaced the API's answer)."""
    now = utcnow()
    with Database(server_settings.database_url).session() as session:
        for months_ago in (2, 1, 0):
            opened = now - timedelta(days=31 * months_ago)
            session.add(CaseRecord(violation_id=f"v-{months_ago}", category="litter", code="0102",
                                   status="dispatched", node_id="node-a", camera_id="kerb", zone_id="kerb",
                                   label="garbage", score=0.9, opened_at=opened, updated_at=opened,
                                   started_at=opened, last_seen_at=opened, dwell_seconds=60, occurrences=1,
                                   open_violations=1, unit_id="sanitation", unit_name="环卫 Sanitation"))
        session.commit()
    page = login(browser, server_url, api_tokens["supervisor"], "#/assessment?by=unit&period=month")
    page.wait_for_selector("#trends svg.trend")
    chart = page.locator("#trends svg.trend[aria-label='closure_rate']")
    assert chart.locator("circle").count() == 3, "one point a month for the last three months"


def test_the_zone_editor_takes_hours_as_people_write_them_and_refuses_what_it_cannot_read(server_url, browser,
                                                                                          api_tokens):
    """Hours not written exactly as 07:00-19:00 (7:00-19:00, spaces round the dash) emptied the schedule: a rule
    meant for the day applied all night, with nothing said. And any edit dropped the window's days (Mon-Fri became
    every day). The zone editor as a unit: the node and its config are stood in for."""
    weekdays = ["mon", "tue", "wed", "thu", "fri"]
    config = {"node_id": "node-a", "config_version": "v1", "status": {"state": "applied", "reason": None},
              "cameras": {"kerb": {"zones": [{"zone_id": "kerb", "rule": "no_parking", "dwell_seconds": 180,
                                              "polygon": [[0, 0], [1, 0], [1, 1]],
                                              "schedule": [{"days": weekdays, "start": "07:00", "end": "19:00"}]}]}}}
    page, sent = zone_editor(browser, server_url, api_tokens["operator"], config)
    page.wait_for_selector("#zone-hours")
    assert page.input_value("#zone-hours") == "07:00-19:00"

    page.fill("#zone-hours", "7:30 - 18:00")
    page.dispatch_event("#zone-hours", "change")
    page.click("#zone-save")
    page.wait_for_selector("#zone-state:text-matches('v2')")  # (Playwright answers the request while it waits)
    assert sent[0]["zones"][0]["schedule"] == [{"days": weekdays, "start": "07:30", "end": "18:00"}]

    page.fill("#zone-hours", "from seven")
    page.dispatch_event("#zone-hours", "change")
    page.click("#zone-save")
    page.wait_for_selector("text=write them as 07:00-19:00")
    assert len(sent) == 1, "nothing sent: a mistyped field is not taken as all day"


def test_the_zone_editor_saves_a_zone_renamed_or_given_a_dwell_with_one_click(server_url, browser, api_tokens):
    """Found by review: the mouse going down on Save took the focus from the dwell field, its `change` redrew the
    form, and the click landed on a Save button that was gone: nothing sent, nothing said. An emptied dwell was
    stored as 0 and refused with the message about hours."""
    config = {"node_id": "node-a", "config_version": "v1", "status": {"state": "applied", "reason": None},
              "cameras": {"kerb": {"zones": [{"zone_id": "kerb", "rule": "no_parking", "dwell_seconds": 180,
                                              "polygon": [[0, 0], [1, 0], [1, 1]]}]}}}
    page, sent = zone_editor(browser, server_url, api_tokens["operator"], config)
    page.wait_for_selector("#zone-dwell")
    page.fill("#zone-dwell", "")
    page.click("#zone-save")
    page.wait_for_selector("#toast:text-matches('^dwell_seconds: ')")
    page.fill("#zone-dwell", "60")
    page.fill("#zone-id", "bus-stop")
    assert page.inner_text("#zone-form .zone-tab.primary") == "bus-stop"
    page.click("#zone-save")
    page.wait_for_selector("#zone-state:text-matches('v2')")  # (Playwright answers the request while it waits)
    assert len(sent) == 1 and sent[0]["zones"][0]["zone_id"] == "bus-stop"
    assert sent[0]["zones"][0]["dwell_seconds"] == 60


def test_the_chinese_console_names_statuses_actions_and_figures_in_chinese(server_url, browser, api_tokens,
                                                                           mqtt_client):
    """Status badges, action buttons, the steps of the timeline and the assessment's columns were English words on
    the Chinese console."""
    detection(mqtt_client("node-a"), place=0)  # doubtful: waits for an operator
    operator = as_role(api_tokens, "operator")
    wait_until(lambda: httpx.get(f"{server_url}/api/v1/cases/1", headers=operator).status_code == 200)
    page = case_page(browser, server_url, api_tokens["operator"])
    page.wait_for_selector("#case-actions button[data-action='file']")
    page.click("#language")
    page.wait_for_selector("#case-status:text('已采集')")
    assert page.inner_text("#case-actions button[data-action='file']") == "立案"
    assert page.inner_text("#timeline strong") == "采集"
    page.goto(f"{server_url}/console/#/assessment?by=unit&period=month")
    page.wait_for_selector("#assessment thead")
    assert page.locator("#assessment th").all_inner_texts()[:4] == ["分组", "周期", "排名", "案件"]
    page.goto(f"{server_url}/console/#/review")  # found by review: the queue named the category in English
    page.wait_for_selector("#review-detail dd")
    assert "暴露垃圾" in page.inner_text("#queue li") and "litter" not in page.inner_text("#review-detail")


def test_the_review_page_shows_a_detections_frame_that_came_just_after_its_case(server_url, browser, api_tokens,
                                                                               mqtt_client):
    """Seen on a fresh clone: a case is announced once its event is stored and its images a moment later; the page
    read the case in between, found no evidence, and showed none for good."""
    import hashlib
    import json

    import cv2

    from gridwatch.contract import event_topic, evidence_topic
    from gridwatch.demo_media import ultralytics_asset
    from tests.factories import event_payload

    frame = cv2.imencode(".jpg", cv2.imread(str(ultralytics_asset("bus.jpg"))))[1].tobytes()
    payload = event_payload(category="litter", code="0102", label="garbage", score=0.4,
                            evidence={"sha256": hashlib.sha256(frame).hexdigest(), "bytes": len(frame)})
    page = login(browser, server_url, api_tokens["operator"], "#/review")
    page.wait_for_selector(".live.on")
    node = mqtt_client("node-a")
    node.publish(event_topic("node-a", "litter"), json.dumps(payload))
    page.wait_for_selector("#queue li[data-case-id='1']")
    page.wait_for_timeout(500)  # the page has read the case: no evidence yet
    node.publish(evidence_topic("node-a", payload["event_id"]), frame)
    page.wait_for_selector("#review-detail img.frame[src^='blob:']", timeout=10_000)


def test_an_action_whose_answer_was_lost_is_taken_once_when_clicked_again(server_url, browser, api_tokens,
                                                                          mqtt_client):
    """The network dropped the answer to an extension the server had taken; the operator, told nothing happened,
    clicked again and extended the deadline twice. The same action sent again now carries the same
    Idempotency-Key."""
    detection(mqtt_client("node-a"), place=0, score=0.9)  # files and dispatches itself
    operator = as_role(api_tokens, "operator")
    wait_until(lambda: httpx.get(f"{server_url}/api/v1/cases/1", headers=operator).json().get("status")
               == "dispatched")
    page = case_page(browser, server_url, api_tokens["operator"])
    page.wait_for_selector("#case-actions button[data-action='extend']")
    keys: list[str] = []

    def lose_the_first_answer(route) -> None:
        keys.append(route.request.headers.get("idempotency-key"))
        if len(keys) == 1:
            route.fetch()  # the server takes it ...
            route.abort("connectionreset")  # ... and its answer never reaches the browser
        else:
            route.continue_()

    page.route("**/api/v1/cases/1/actions", lose_the_first_answer)
    page.fill("#case-actions input[name=reason]", "waiting for the sweeper truck")
    page.fill("#case-actions input[name=extend_minutes]", "120")
    page.click("#case-actions button[data-action='extend']")
    page.wait_for_selector("text=it will not be taken twice")
    page.click("#case-actions button[data-action='extend']")
    page.wait_for_selector("#timeline >> text=waiting for the sweeper truck")
    case = httpx.get(f"{server_url}/api/v1/cases/1", headers=operator).json()
    assert case["extension_count"] == 1, "extended once"
    assert len(keys) == 2 and keys[0] and keys[0] == keys[1]


def test_an_operator_places_a_report_that_gave_only_an_address_as_they_confirm_it(server_url, browser, api_tokens):
    """A hotline report naming a street and no position waits in the review queue with its address and two boxes
    for the position: confirmed with them, the grid there takes the case, not the fallback unit; one coordinate
    alone is not sent."""
    hotline = {"Authorization": f"Bearer {api_tokens['integrator']}"}
    answer = httpx.post(f"{server_url}/open311/v2/requests.json", headers=hotline, data={
        "service_code": "litter", "description": "bags by the bus stop", "address_string": "Wulin Road 12"})
    case_id = answer.json()[0]["service_request_id"]
    page = login(browser, server_url, api_tokens["operator"], "#/review")
    page.wait_for_selector("#place-lat")
    assert "Wulin Road 12" in page.inner_text("#review-detail .facts")
    page.fill("#place-lat", "30.2742")
    page.click("#confirm")
    page.wait_for_selector("#toast:text('Give both lat and lon')")
    assert "Wulin Road 12" in page.inner_text("#review-detail"), "still waiting, not filed without its position"
    page.fill("#place-lon", "120.1652")
    # found by review: a report arriving meanwhile redrew the item, its boxes empty, and Confirm filed it unplaced
    httpx.post(f"{server_url}/open311/v2/requests.json", headers=hotline, data={
        "service_code": "litter", "description": "more bags", "address_string": "Yan'an Road 3"})
    page.wait_for_selector("#queue li >> nth=1")
    assert page.input_value("#place-lon") == "120.1652"
    page.click("#confirm")
    operator = as_role(api_tokens, "operator")
    page.wait_for_selector(f"#toast:text('Case {case_id} confirmed')")
    case = httpx.get(f"{server_url}/api/v1/cases/{case_id}", headers=operator).json()
    assert (case["lat"], case["lon"]) == (30.2742, 120.1652)
    assert case["assignment"]["grid_id"] == "WL-02" and not case["assignment"]["fallback"]


def test_a_case_page_left_open_counts_its_deadline_down_and_shows_it_late(server_url, browser, api_tokens,
                                                                         mqtt_client):
    """Found by review: the time left was worked out once, as the page was drawn: a page left open said "12 min
    left" for ever and never turned red."""
    import json
    from datetime import datetime

    from gridwatch.contract import event_topic
    from tests.factories import event_payload

    mqtt_client("node-a").publish(event_topic("node-a", "illegal_parking"), json.dumps(event_payload()))
    operator = as_role(api_tokens, "operator")
    case = wait_until(lambda: httpx.get(f"{server_url}/api/v1/cases/1", headers=operator).json()
                      if httpx.get(f"{server_url}/api/v1/cases/1", headers=operator).status_code == 200 else None)
    assert case["status"] == "dispatched"
    page = browser.new_page(viewport={"width": 1366, "height": 768}, locale="en-US")
    page.clock.install()
    page.goto(f"{server_url}/console/#/case/1")
    page.fill("#token", api_tokens["operator"])
    page.click("button[type=submit]")
    page.goto(f"{server_url}/console/#/case/1")
    page.wait_for_selector("#case-deadline:text-matches('left')")
    assert "overdue" not in page.get_attribute("#case-deadline", "class")
    left = datetime.fromisoformat(case["deadline_at"]).timestamp() - page.evaluate("Date.now()") / 1000
    page.clock.fast_forward(int((left + 60) * 1000))
    page.wait_for_selector("#case-deadline.overdue:text-matches('overdue')")


def test_a_double_click_on_confirm_decides_one_detection_not_the_next_one_unseen(server_url, browser, api_tokens,
                                                                               mqtt_client):
    """Found by review: the next item is drawn at once where the decided one was, so the second click of a double
    click confirmed a detection the operator never saw."""
    node = mqtt_client("node-a")
    for place in range(3):
        detection(node, place=place)
    operator = as_role(api_tokens, "operator")
    wait_until(lambda: httpx.get(f"{server_url}/api/v1/cases", headers=operator,
                                 params={"status": "collected"}).json()["total"] == 3)
    page = login(browser, server_url, api_tokens["operator"], "#/review")
    page.wait_for_selector("#queue li >> nth=2")
    page.dblclick("#confirm")
    page.wait_for_selector("#toast:text-matches('confirmed')")
    page.wait_for_timeout(500)
    assert httpx.get(f"{server_url}/api/v1/cases", headers=operator,
                     params={"status": "collected"}).json()["total"] == 2

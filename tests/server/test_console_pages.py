"""What each console page does when the live stream breaks, a request fails or a key lands on a button, and which
roles are offered what: found by the review of 2026-12-07, each in a real browser against a
running server."""

from __future__ import annotations

import httpx

from tests.conftest import as_role
from tests.factories import jpeg, wait_until
from tests.server.test_console import detection, with_live_stream_down
from tests.server.test_console_forms import login, zone_editor


def status_of(server_url: str, api_tokens: dict, case_id: int) -> str:
    return httpx.get(f"{server_url}/api/v1/cases/{case_id}", headers=as_role(api_tokens, "operator")).json()["status"]


def test_a_case_page_keeps_the_reason_and_the_photo_being_added_when_the_live_stream_returns(
        server_url, browser, api_tokens, mqtt_client):
    """A page without its own way to read afresh was rebuilt whole when the stream came back (the reason typed lost),
    and every live change rebuilt the photo form (the photo picked and its caption lost)."""
    detection(mqtt_client("node-a"), place=0)  # doubtful: waits for an operator
    wait_until(lambda: httpx.get(f"{server_url}/api/v1/cases/1", headers=as_role(api_tokens, "operator"))
               .status_code == 200)
    page, down = with_live_stream_down(browser, server_url, api_tokens["operator"], "#/case/1")
    page.wait_for_selector("#case-actions button[data-action='file']")
    page.fill("#case-actions input[name=reason]", "called the shop owner")
    page.set_input_files("#photo-form input[name=photo]", files=[
        {"name": "kerb.jpg", "mimeType": "image/jpeg", "buffer": jpeg(320, 240)}])
    page.fill("#photo-form input[name=caption]", "the kerb as found")
    filed = httpx.post(f"{server_url}/api/v1/cases/1/actions", json={"action": "file"},
                       headers=as_role(api_tokens, "operator"))  # while the stream is down
    assert filed.status_code == 200
    down[0] = False
    page.wait_for_selector("#timeline >> text=File", timeout=60_000)
    assert page.input_value("#case-actions input[name=reason]") == "called the shop owner"
    assert page.input_value("#photo-form input[name=caption]") == "the kerb as found"
    assert page.eval_on_selector("#photo-form input[name=photo]", "input => input.files.length") == 1


def test_enter_on_a_reject_button_reached_by_tab_rejects_the_detection(server_url, browser, api_tokens,
                                                                       mqtt_client):
    """Enter on any button (reached by Tab) confirmed the detection shown, and the button itself never acted."""
    detection(mqtt_client("node-a"), place=0)
    page = login(browser, server_url, api_tokens["operator"], "#/review")
    page.wait_for_selector("#reject-false_positive")
    page.focus("#reject-false_positive")
    page.keyboard.press("Enter")
    page.wait_for_selector("text=Case 1 rejected")
    assert status_of(server_url, api_tokens, 1) == "void"


def test_a_decision_that_fails_comes_back_and_the_operator_stays_on_the_detection_shown(
        server_url, browser, api_tokens, mqtt_client):
    """A decision put back after a failure took the place of the item on screen, and the next key decided another
    detection than the one the operator was looking at."""
    node = mqtt_client("node-a")
    for place in range(3):
        detection(node, place=place)
    page = login(browser, server_url, api_tokens["operator"], "#/review")
    page.wait_for_selector("#queue li[data-case-id='1']")
    page.route("**/api/v1/cases/3/actions", lambda route: route.fulfill(
        status=503, json={"detail": "the database is busy; try again"}))
    assert page.locator("#queue li.current").get_attribute("data-case-id") == "3", "newest first"
    page.keyboard.press("c")
    page.wait_for_selector("text=3: the database is busy")
    page.wait_for_selector("#queue li[data-case-id='3']")  # back in the queue
    assert page.locator("#queue li.current").get_attribute("data-case-id") == "2"
    assert page.get_attribute("#review-detail", "data-case-id") == "2"
    assert status_of(server_url, api_tokens, 3) == "collected"


def test_the_zone_editor_names_a_new_zone_afresh_and_keeps_mistyped_hours_until_they_are_put_right(
        server_url, browser, api_tokens):
    """A zone added after a delete took a name still in use (the node refuses the whole config for it), and hours
    that could not be read vanished at the next redraw (a rule changed), so Save sent the old hours. The zone editor
    as a unit: the node and its config are stood in for."""
    config = {"node_id": "node-a", "config_version": "v1", "status": {"state": "applied", "reason": None},
              "cameras": {"kerb": {"zones": [
                  {"zone_id": f"zone-{n}", "rule": "no_parking", "dwell_seconds": 180,
                   "polygon": [[0, 0], [1, 0], [1, 1]]} for n in (1, 2)]}}}
    page, sent = zone_editor(browser, server_url, api_tokens["operator"], config)
    page.wait_for_selector("#zone-id")
    assert page.input_value("#zone-id") == "zone-1"
    page.click("#zone-form button.danger")  # delete zone-1
    page.click("#zone-new")
    names = page.locator("#zone-form .toolbar button:not(#zone-new)").all_inner_texts()
    assert sorted(names) == ["zone-1", "zone-2"], names

    page.fill("#zone-hours", "7-19")
    page.dispatch_event("#zone-hours", "change")
    page.select_option("#zone-rule", "no_litter")  # redraws the form
    assert page.input_value("#zone-hours") == "7-19"
    page.click("#zone-save")
    page.wait_for_selector("text=write them as 07:00-19:00")
    assert sent == [], "nothing sent while the hours cannot be read"
    page.fill("#zone-hours", "07:00-19:00")
    page.dispatch_event("#zone-hours", "change")
    page.click("#zone-save")
    # the route's handler runs only while Playwright is called: waiting in plain Python, the request the click sent
    # a moment later stayed unanswered (a flake of a loaded CI run)
    wait_until(lambda: page.wait_for_timeout(50) or sent)
    assert [zone["zone_id"] for zone in sent[0]["zones"]] == ["zone-2", "zone-1"]
    assert sent[0]["zones"][1]["schedule"] == [{"start": "07:00", "end": "19:00"}]


def test_a_supervisor_is_offered_no_operators_tools_and_a_wrong_range_keeps_the_assessment_form(
        server_url, browser, api_tokens):
    """Supervisors saw the zone editor, the training-data download and the snapshot button, each refused by the
    server with a 403; a date range the server refuses replaced the whole assessment page, form and all."""
    page = login(browser, server_url, api_tokens["supervisor"],
                 "#/assessment?by=unit&period=month&from=2026-05-01&to=2026-04-01")
    page.wait_for_selector("#assessment-error")
    assert page.locator("select[name=by]").count() == 1, "the form stays, to put the range right"
    assert page.locator("#training-data").count() == 0
    assert page.locator("header nav a[href='#/zones']").is_hidden()
    page.fill("input[name=from]", "2026-03-01")
    page.dispatch_event("input[name=from]", "change")
    page.wait_for_selector("#assessment-error", state="detached")

    operator = login(browser, server_url, api_tokens["operator"], "#/assessment?by=unit&period=month")
    operator.wait_for_selector("#training-data")
    assert operator.locator("header nav a[href='#/zones']").is_visible()

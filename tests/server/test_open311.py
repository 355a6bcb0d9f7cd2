"""Open311 GeoReport v2: citizen reports enter the case pipeline; camera cases read as service requests."""

from __future__ import annotations

import json
from datetime import UTC, timedelta, timezone

import pytest

from gridwatch.contract import event_topic
from server.api.routes.open311 import status_notes
from server.models import CaseRecord, CaseTransition
from tests.conftest import as_role
from tests.factories import event_payload, wait_until

WL02 = {"lat": "30.2742", "long": "120.1652"}


def report(api, key: str, **fields):
    form = {"api_key": key, "service_code": "litter", "description": "bags of rubbish left by the bus stop",
            **WL02, **fields}
    return api.post("/open311/v2/requests.json", data=form, headers={"Authorization": ""})


def test_services_list_the_categories_with_their_codes(api):
    services = {s["service_code"]: s for s in api.get("/open311/v2/services.json").json()}
    assert services["litter"]["keywords"] == "0102" and services["litter"]["metadata"] is False
    assert set(services) >= {"illegal_parking", "street_vending", "litter", "streetlight_fault"}


def test_a_hotline_report_becomes_a_case_an_operator_files(api, api_tokens, mqtt_client):
    integrator = mqtt_client("integrator")
    integrator.subscribe("gw/v1/cases/litter/#")
    answer = report(api, api_tokens["integrator"], first_name="Wang", phone="138-0000-0000")
    assert answer.status_code == 200
    [receipt] = answer.json()
    case_id = int(receipt["service_request_id"])
    assert "operator will confirm" in receipt["service_notice"]

    case = api.get(f"/api/v1/cases/{case_id}").json()
    assert case["source"] == "open311" and case["status"] == "collected" and case["node_id"] is None
    assert case["description"] == "bags of rubbish left by the bus stop"
    filed = api.post(f"/api/v1/cases/{case_id}/actions", json={"action": "file"},
                     headers=as_role(api_tokens, "operator")).json()
    assert filed["status"] == "dispatched" and filed["assignment"]["unit_id"] == "sanitation"
    assert filed["assignment"]["grid_id"] == "WL-02"

    messages = [json.loads(m.payload) for m in integrator.collect(1.0)]
    assert [m["action"] for m in messages] == ["collect", "file", "dispatch"]
    assert messages[0]["source"] == "open311" and messages[0]["camera_id"] is None
    assert "138-0000-0000" not in json.dumps(messages), "a citizen's phone is never published"

    [request] = api.get(f"/open311/v2/requests/{case_id}.json").json()
    assert request["status"] == "open" and request["agency_responsible"] == "环卫 Sanitation"
    assert "138-0000-0000" not in json.dumps(request)


def test_a_second_report_at_the_same_place_joins_the_first(api, api_tokens):
    [first] = report(api, api_tokens["integrator"]).json()
    [second] = report(api, api_tokens["operator"], lat="30.27422", description="still there").json()
    assert second["service_request_id"] == first["service_request_id"]
    assert second["service_notice"].startswith("joined case")
    [elsewhere] = report(api, api_tokens["integrator"], lat="30.2760").json()
    assert elsewhere["service_request_id"] != first["service_request_id"]


def test_a_report_giving_only_an_address_waits_to_be_placed_and_goes_by_the_grid_there(api, api_tokens):
    """A hotline's caller names a street, not a position: the report is taken (GeoReport asks for lat/long or an
    address), a second call about the same address joins it, and the operator places it as they file it, so the
    grid there chooses the unit. Before, such a report was refused and the citizen's call lost."""
    operator = as_role(api_tokens, "operator")
    hotline = api_tokens["integrator"]
    [first] = report(api, hotline, lat=None, long=None, address_string="Wulin  Road 12",
                     phone="139-3333-3333").json()
    [again] = report(api, hotline, lat=None, long=None, address_string="wulin road 12",
                     description="still there at noon").json()
    [other] = report(api, hotline, lat=None, long=None, address_id="HZ-0031-0012").json()
    case_id = first["service_request_id"]
    assert again["service_request_id"] == case_id and other["service_request_id"] != case_id
    case = api.get(f"/api/v1/cases/{case_id}", headers=operator).json()
    assert (case["status"], case["lat"], case["address"]) == ("collected", None, "Wulin Road 12")
    assert [r["description"] for r in case["reports"]] == ["bags of rubbish left by the bus stop",
                                                          "still there at noon"]
    assert "to place it" in case["transitions"][0]["reason"]
    assert api.get(f"/api/v1/cases/{other['service_request_id']}", headers=operator).json()["address"] == \
        "address id HZ-0031-0012"

    wl02 = {"lat": float(WL02["lat"]), "lon": float(WL02["long"])}
    wrong = api.post(f"/api/v1/cases/{case_id}/actions", json={"action": "accept", "location": wl02}, headers=operator)
    assert wrong.status_code == 422 and "location: not taken by accept" in wrong.text
    filed = api.post(f"/api/v1/cases/{case_id}/actions", json={"action": "file", "location": wl02},
                     headers=operator).json()
    assert (filed["lat"], filed["lon"]) == (wl02["lat"], wl02["lon"])
    assert filed["assignment"]["grid_id"] == "WL-02" and not filed["assignment"]["fallback"]
    [filing] = [step for step in filed["transitions"] if step["action"] == "file"]
    assert filing["reason"] == "confirmed by an operator: file; placed at 30.274200, 120.165200"
    [request] = api.get(f"/open311/v2/requests/{case_id}.json").json()
    assert (request["address"], request["lat"]) == ("Wulin Road 12", wl02["lat"])

    unplaced = api.post(f"/api/v1/cases/{other['service_request_id']}/actions", json={"action": "file"},
                        headers=operator).json()
    assert unplaced["assignment"]["fallback"], "filed without a position, the fallback unit takes it"
    placed_twice = api.post(f"/api/v1/cases/{case_id}/actions", json={"action": "dispatch", "location": wl02},
                            headers=operator)
    assert placed_twice.status_code in (409, 422)
    [at_position] = report(api, hotline).json()
    assert at_position["service_request_id"] == case_id, "placed, it is found by position like any other"


def test_calls_about_one_address_in_any_script_and_letter_case_join_one_case(api, api_tokens):
    """Hotlines type what they hear: the same street in capitals or not, German ß spelt out, Greek capitals.
    SQLite's lower() changes only ASCII letters, so such calls each opened a case of their own."""
    hotline = api_tokens["integrator"]
    ids = {report(api, hotline, lat=None, long=None, address_string=address).json()[0]["service_request_id"]
           for address in ("Königstraße 3, Ärztehaus", "KÖNIGSTRASSE 3,  ÄRZTEHAUS", "königstrasse 3, ärztehaus")}
    greek = {report(api, hotline, lat=None, long=None, address_string=address).json()[0]["service_request_id"]
             for address in ("ΟΔΟΣ ΕΡΜΟΥ 5", "οδος ερμου 5")}
    assert len(ids) == 1 and len(greek) == 1 and ids != greek


def test_a_report_naming_an_address_of_the_citys_register_is_placed_there(api, api_tokens):
    """The dispatch configuration's `addresses` (config/demo/dispatch.yaml) place what a hotline's caller names:
    the case is located at once, dispatched by the grid there when confirmed, with no operator placing it."""
    [receipt] = report(api, api_tokens["integrator"], lat=None, long=None, address_string="  HUBIN   market ").json()
    operator = as_role(api_tokens, "operator")
    case = api.get(f"/api/v1/cases/{receipt['service_request_id']}", headers=operator).json()
    assert (case["lat"], case["lon"]) == (30.2761, 120.1668)
    assert "placed at HUBIN market by the city's address register" in case["transitions"][0]["reason"]
    filed = api.post(f"/api/v1/cases/{case['id']}/actions", json={"action": "file"}, headers=operator).json()
    assert filed["assignment"]["grid_id"] == "WL-02" and not filed["assignment"]["fallback"]
    [unknown] = report(api, api_tokens["integrator"], lat=None, long=None, address_string="Hubin market 2").json()
    assert api.get(f"/api/v1/cases/{unknown['service_request_id']}", headers=operator).json()["lat"] is None
    # found by review: as a Chinese input method types it (full-width digits, spaces), the register missed it
    for typed in ("武林路１２号", "武林路 12 号"):
        [placed] = report(api, api_tokens["integrator"], lat=None, long=None, address_string=typed,
                          service_code="street_vending").json()
        assert api.get(f"/api/v1/cases/{placed['service_request_id']}", headers=operator).json()["lat"] == 30.2745


def test_camera_cases_are_service_requests_too(api, mqtt_client):
    node = mqtt_client("node-a")
    node.publish(event_topic("node-a", "illegal_parking"), json.dumps(event_payload()))
    wait_until(lambda: api.get("/open311/v2/requests.json").json())
    [request] = api.get("/open311/v2/requests.json", params={"service_code": "illegal_parking",
                                                             "status": "open"}).json()
    assert request["agency_responsible"] == "交警 Traffic police" and request["lat"] == pytest.approx(30.27415)
    assert "car seen by camera cam-1" in request["description"]
    assert request["status_notes"] == "dispatched: sent to 交警 Traffic police"
    assert api.get("/open311/v2/requests.json", params={"status": "closed"}).json() == []


def test_the_public_reads_what_became_of_a_case_not_its_staff_notes(api, api_tokens):
    """Found by review: the notes were the last step's own words, and anyone who asked read the name of the person
    on duty, and what operators and field workers wrote on the case."""
    [receipt] = report(api, api_tokens["integrator"]).json()
    case_id = int(receipt["service_request_id"])
    operator, field = as_role(api_tokens, "operator"), as_role(api_tokens, "sanitation")
    assert api.post(f"/api/v1/cases/{case_id}/actions", json={"action": "file"}, headers=operator).status_code == 200
    on_duty = api.get(f"/api/v1/cases/{case_id}").json()["assignment"]["on_duty"]["name"]
    for action, note in (("accept", None), ("feedback", "swept up; the owner at no. 12 (tel 139-0000-1111) warned")):
        body = {"action": action} | ({"reason": note} if note else {})
        assert api.post(f"/api/v1/cases/{case_id}/actions", json=body, headers=field).status_code == 200
    public = api.get(f"/open311/v2/requests/{case_id}.json", headers={"Authorization": ""}).json()[0]
    assert public["status_notes"] == "feedback: 环卫 Sanitation reports it handled; to be checked"
    assert on_duty not in str(public) and "139-0000-1111" not in str(public)


@pytest.mark.parametrize(("level", "note"), [(1, "dispatched: overdue: raised to the street office"),
                                             (2, "dispatched: overdue: raised to the district")])
def test_the_public_reads_to_whom_an_overdue_case_was_raised(level, note):
    """Found by review: a case raised to the district read "raised to the street office" to the citizen who asked."""
    case = CaseRecord(status="dispatched", unit_name="交警 Traffic police", escalation_level=level)
    escalated = CaseTransition(action="escalate", from_status="dispatched", to_status="dispatched", actor="system",
                               reason="overdue by 121 working min; escalated to district: 下城区 0571-8700-0001")
    assert status_notes(case, escalated) == note


@pytest.mark.parametrize(("fields", "status", "text"), [
    ({"api_key": ""}, 401, "api_key"),
    ({"api_key": "gw_not_a_token"}, 403, "unknown API token"),
    ({"service_code": "potholes"}, 400, "service_code"),
    ({"lat": None, "long": None}, 400, "a location is required: lat and long, or address_string"),
    ({"lat": None, "address_string": "Wulin Road 12"}, 400, "lat/long"),
    ({"lat": None, "long": None, "address_string": "  "}, 400, "a location is required"),
    ({"lat": "north"}, 400, "lat/long"),
    ({"lat": "95"}, 400, "lat/long"),
    ({"description": ""}, 400, "description"),
    ({"media_url": "file:///etc/passwd"}, 400, "media_url: an http(s) URL"),
])
def test_bad_reports_get_a_georeport_error(api, api_tokens, fields, status, text):
    form = {"api_key": api_tokens["integrator"], "service_code": "litter", "description": "x", **WL02, **fields}
    response = api.post("/open311/v2/requests.json", data={k: v for k, v in form.items() if v is not None},
                        headers={"Authorization": ""})
    assert response.status_code == status
    [problem] = response.json()
    assert problem["code"] == status and text in problem["description"]


def test_field_staff_keys_cannot_file_and_broken_bodies_are_refused(api, api_tokens):
    assert report(api, api_tokens["field_staff"]).status_code == 403
    broken = api.post("/open311/v2/requests.json", content=b"\xff\xfe", headers={
        "Authorization": f"Bearer {api_tokens['integrator']}", "Content-Type": "application/x-www-form-urlencoded"})
    assert broken.status_code == 400 and "UTF-8" in broken.json()[0]["description"]
    not_json = api.post("/open311/v2/requests.json", content=b"{", headers={
        "Authorization": f"Bearer {api_tokens['integrator']}", "Content-Type": "application/json"})
    assert not_json.status_code == 400 and "JSON" in not_json.json()[0]["description"]
    assert api.get("/open311/v2/requests/999.json").status_code == 404
    assert api.get("/open311/v2/requests.json", params={"service_request_id": "a,b"}).status_code == 400
    # found by review: an id past Python's 4,300 digits answered a 500, to anyone
    beyond = api.get(f"/open311/v2/requests/{'9' * 4301}.json", headers={"Authorization": ""})
    assert beyond.status_code == 404 and beyond.json()[0]["code"] == 404
    # found by review: text the database refuses came back in the API's form, not GeoReport's
    surrogate = api.post("/open311/v2/requests.json", content=json.dumps({
        "service_code": "litter", "description": "bags \ud800", **WL02}),
        headers={"Authorization": f"Bearer {api_tokens['integrator']}", "Content-Type": "application/json"})
    assert surrogate.status_code == 400 and "surrogate" in surrogate.json()[0]["description"]


@pytest.mark.parametrize("field", ["first_name", "phone", "media_url", "address_string", "api_key"])
def test_a_report_whose_field_is_no_text_is_refused_and_leaves_the_case_readable(api, api_tokens, field):
    """Found by review: a lone surrogate in the reporter's fields, the photo link, or the address of a report that
    joins a case went into the reports' JSON (no text column checked it): from then on the case answered 500 to
    every role, and an action on it 500 after it was saved. A NUL is refused as well."""
    operator = as_role(api_tokens, "operator")
    [first] = report(api, api_tokens["integrator"]).json()
    for bad in (r"http://x/\ud800", r"http://x/\u0000"):  # as JSON spells them; a link for media_url
        refused = api.post("/open311/v2/requests.json", content='{"service_code": "litter", "description": "again", '
                           f'"lat": "{WL02["lat"]}", "long": "{WL02["long"]}", "{field}": "{bad}"}}',
                           headers={"Authorization": f"Bearer {api_tokens['integrator']}",
                                    "Content-Type": "application/json"})
        assert refused.status_code == 400 and field in refused.json()[0]["description"]
    case = api.get(f"/api/v1/cases/{first['service_request_id']}", headers=operator)
    assert case.status_code == 200 and len(case.json()["reports"]) == 1


def test_a_report_from_a_token_with_a_long_name_is_filed(server_settings, api_tokens, tmp_path):
    """Found by review: the report's actor, `open311 (NAME)`, outgrew its column with a token name of 128
    characters, and PostgreSQL refused the report (a 500; the report lost)."""
    import yaml
    from fastapi.testclient import TestClient

    from server.core.security import hash_token
    from server.main import create_app

    tokens = yaml.safe_load((tmp_path / "tokens.yaml").read_text(encoding="utf-8"))
    tokens["tokens"].append({"name": "热线 " + "x" * 125, "role": "integrator", "sha256": hash_token("gw_hotline")})
    (tmp_path / "tokens.yaml").write_text(yaml.safe_dump({"tokens": tokens["tokens"]}), encoding="utf-8")
    with TestClient(create_app(server_settings)) as client:
        answer = report(client, "gw_hotline")
        assert answer.status_code == 200, answer.text
        case_id = answer.json()[0]["service_request_id"]
        case = client.get(f"/api/v1/cases/{case_id}", headers=as_role(api_tokens, "admin")).json()
        assert case["transitions"][0]["actor"].startswith("open311 (热线 xxx")


def test_every_report_of_a_case_is_kept_whole_and_its_caller_can_be_called_back(api, api_tokens):
    """Found by review: a report that joined a case kept 300 characters of its words in the step's reason, and
    neither the citizen's phone nor the address: nobody could call them back."""
    report(api, api_tokens["integrator"], phone="139-1111-1111")
    words = "bags and a broken chair by the bus stop, " * 8  # 328 characters
    photo = "https://hotline.example/photos/8812.jpg"
    [joined] = report(api, api_tokens["integrator"], lat="30.27422", description=words, phone="139-2222-2222",
                      address_string="Wulin Road 12", media_url=photo).json()
    case_id = joined["service_request_id"]
    operator = api.get(f"/api/v1/cases/{case_id}", headers=as_role(api_tokens, "operator")).json()
    assert [(r["description"], r["address"], r["reporter"], r["media_url"]) for r in operator["reports"]] == [
        ("bags of rubbish left by the bus stop", None, {"phone": "139-1111-1111"}, None),
        (words.strip(), "Wulin Road 12", {"phone": "139-2222-2222"}, photo)]
    integrator = api.get(f"/api/v1/cases/{case_id}", headers=as_role(api_tokens, "integrator")).json()
    assert [(r["reporter"], r["media_url"]) for r in integrator["reports"]] == [(None, None)] * 2, \
        "contacts and citizens' photos for the command centre only"
    assert "139-2222-2222" not in json.dumps(integrator)


def test_requests_are_searched_as_georeport_says(api, api_tokens, mqtt_client):
    """Found by review: lists of codes and states found nothing or a 422 in FastAPI's format, ids did not override
    the other filters, end_date left out its own moment, and with no dates every case ever opened was listed."""
    node = mqtt_client("node-a")
    node.publish(event_topic("node-a", "illegal_parking"), json.dumps(event_payload()))
    [reported] = report(api, api_tokens["integrator"]).json()
    wait_until(lambda: len(api.get("/open311/v2/requests.json").json()) == 2)
    citizen = int(reported["service_request_id"])
    with api.app.state.database.session() as session:  # a case of last spring: out of the default 90 days
        old = session.get(CaseRecord, citizen)
        old.opened_at = old.opened_at - timedelta(days=200)
        session.commit()
        opened = old.opened_at

    def codes(**params) -> list[str]:
        response = api.get("/open311/v2/requests.json", params=params)
        assert response.status_code == 200, response.text
        return sorted(request["service_code"] for request in response.json())

    assert codes() == ["illegal_parking"], "the last 90 days"
    assert codes(start_date=(opened - timedelta(days=1)).isoformat(),
                 service_code="litter,illegal_parking") == ["illegal_parking", "litter"]
    assert codes(start_date=(opened - timedelta(days=1)).isoformat(), end_date=opened.isoformat()) == ["litter"]
    assert codes(status="open,closed") == ["illegal_parking"]
    assert codes(service_request_id=str(citizen), status="closed", service_code="vending") == ["litter"], \
        "the ids override the other arguments"
    for params, text in (({"status": "pending"}, "status"), ({"start_date": "yesterday"}, "start_date"),
                         ({"end_date": "2026-11-23T09:00:00"}, "time zone"),
                         ({"service_code": "litter,potholes"}, "potholes")):
        response = api.get("/open311/v2/requests.json", params=params)
        assert response.status_code == 400, params
        [problem] = response.json()
        assert problem["code"] == 400 and text in problem["description"]
    assert all(request["media_url"] is None for request in api.get(
        "/open311/v2/requests.json", params={"start_date": "2000-01-01T00:00:00Z"}).json()), \
        "camera evidence (passers-by, number plates) is not for the public"


def test_a_report_with_a_photo_attached_is_refused_with_a_reason(api, api_tokens):
    response = api.post("/open311/v2/requests.json", headers={"Authorization": f"Bearer {api_tokens['integrator']}"},
                        files={"media": ("bag.jpg", b"\xff\xd8", "image/jpeg")},
                        data={"service_code": "litter", "description": "x", **WL02})
    assert response.status_code == 400 and "form-encoded" in response.json()[0]["description"]


def test_every_answer_under_open311_is_georeports_and_dates_are_read_as_clients_send_them(api, api_tokens,
                                                                                           mqtt_client):
    """Found by review: an unknown path or a wrong method answered FastAPI's `{"detail"}`, not GeoReport's
    list; a `+08:00` sent unencoded (arriving as a space) and a plain day were refused; an end_date alone listed
    every case before it, and a range of years was cut to the newest 1,000 without a word."""
    for method, path, code in (("GET", "/open311/v2/services.yaml", 404), ("GET", "/open311/v2/discovery.json", 404),
                               ("DELETE", "/open311/v2/requests.json", 405)):
        response = api.request(method, path)
        assert response.status_code == code, path
        [problem] = response.json()
        assert problem["code"] == code and path in problem["description"]
    assert api.get("/open311/v2/services/litter.json").json() == {"service_code": "litter", "attributes": []}
    assert api.get("/open311/v2/services/potholes.json").json()[0]["code"] == 404
    assert api.get("/open311/v2/tokens/abc.json").json()[0]["code"] == 404

    node = mqtt_client("node-a")
    node.publish(event_topic("node-a", "illegal_parking"), json.dumps(event_payload()))
    wait_until(lambda: len(api.get("/open311/v2/requests.json").json()) == 1)
    with api.app.state.database.session() as session:
        opened = session.get(CaseRecord, 1).opened_at
    opened = opened.replace(tzinfo=opened.tzinfo or UTC)  # SQLite gives back UTC without its zone

    def listed(query: str) -> list[str]:
        response = api.get(f"/open311/v2/requests.json?{query}")
        assert response.status_code == 200, response.text
        return [request["service_request_id"] for request in response.json()]

    hour_before = (opened - timedelta(hours=1)).astimezone(timezone(timedelta(hours=8))).isoformat(timespec="seconds")
    assert listed(f"start_date={hour_before}") == ["1"], f"{hour_before}: its + arrives as a space"
    assert listed(f"start_date={(opened - timedelta(days=1)).date()}") == ["1"], "a day, from midnight UTC"
    assert listed(f"end_date={(opened - timedelta(days=100)).date()}") == [], "the 90 days before an end alone"
    assert listed(f"end_date={(opened + timedelta(days=1)).date()}") == ["1"]
    too_long = api.get("/open311/v2/requests.json", params={"start_date": "2026-01-01", "end_date": "2026-06-01"})
    assert too_long.status_code == 400 and "90 days" in too_long.json()[0]["description"]


def test_a_database_away_answers_503_to_try_again_never_500(api):
    """A report filed while SQLite is locked past its wait, or PostgreSQL restarts, answered 500: the hotline could
    not tell a fault to report from a moment to wait. The handlers of server/main.py as a unit: a route raising
    what SQLite raises then."""
    import sqlite3

    from sqlalchemy.exc import OperationalError

    def locked() -> None:
        cause = sqlite3.OperationalError("database is locked")
        cause.sqlite_errorcode, cause.sqlite_errorname = 5, "SQLITE_BUSY"
        raise OperationalError("INSERT INTO cases ...", {}, cause)

    api.app.add_api_route("/open311/v2/locked.json", locked, methods=["POST"])
    api.app.add_api_route("/api/v1/locked", locked, methods=["POST"])
    georeport = api.post("/open311/v2/locked.json")
    assert georeport.status_code == 503 and georeport.headers["Retry-After"] == "5"
    assert georeport.json()[0]["code"] == 503 and "try again" in georeport.json()[0]["description"]
    rest = api.post("/api/v1/locked")
    assert rest.status_code == 503 and "try again" in rest.json()["detail"]


def test_every_route_answers_in_georeports_xml_too(api, api_tokens, mqtt_client):
    """Found by review: GeoReport v2 makes XML the format every server must speak (JSON may be added), and a client
    asking for `.xml` got a 404 in JSON."""
    from xml.etree import ElementTree

    def xml(response) -> ElementTree.Element:
        assert response.headers["content-type"].startswith("text/xml"), response.headers
        assert response.content.startswith(b'<?xml version="1.0" encoding="utf-8"?>')
        return ElementTree.fromstring(response.content)

    services = xml(api.get("/open311/v2/services.xml"))
    assert services.tag == "services" and "litter" in [s.findtext("service_code") for s in services]
    assert xml(api.get("/open311/v2/services/litter.xml")).findtext("service_code") == "litter"

    filed = api.post("/open311/v2/requests.xml", headers={"Authorization": ""}, data={
        "api_key": api_tokens["integrator"], "service_code": "litter", "lat": "30.2742", "long": "120.1652",
        "description": "bags \x01by the bin <b>&</b>"})  # a control character no XML holds, markup that must not be
    assert filed.status_code == 200
    receipt = xml(filed)
    case_id = receipt.find("request").findtext("service_request_id")
    assert receipt.tag == "service_requests" and case_id
    [request] = xml(api.get(f"/open311/v2/requests/{case_id}.xml"))
    assert request.findtext("description") == "bags by the bin <b>&</b>"
    assert request.findtext("status") == "open" and request.findtext("media_url") == "", "null: an empty element"
    listed = xml(api.get("/open311/v2/requests.xml", params={"service_code": "litter"}))
    assert [r.findtext("service_request_id") for r in listed] == [case_id]

    for response, code in ((api.get("/open311/v2/requests.xml", params={"status": "pending"}), 400),
                           (api.get("/open311/v2/requests/999999.xml"), 404),
                           (api.get("/open311/v2/discovery.xml"), 404),
                           (api.post("/open311/v2/requests.xml", headers={"Authorization": ""},
                                     data={"api_key": "gw_guess", "service_code": "litter"}), 403)):
        errors = xml(response)
        assert response.status_code == code and errors.tag == "errors"
        assert errors.find("error").findtext("code") == str(code) and errors.find("error").findtext("description")

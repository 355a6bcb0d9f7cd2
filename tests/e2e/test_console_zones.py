"""The console against a real edge node: the operator draws a no-parking zone on the camera's live snapshot in the
browser, the server sends it as the node's remote config, the node applies it; the bus standing in the new zone
arrives live in another tab's review queue, the operator confirms it with one key, and the case is dispatched to
the traffic police."""

from __future__ import annotations

import httpx
import pytest
import yaml

from gridwatch.demo_media import render_parked_bus_clip
from tests.conftest import DISPATCH, shot
from tests.e2e.test_end_to_end import Processes
from tests.factories import wait_until


@pytest.fixture
def server_settings(server_settings, tmp_path):
    """The demo's dispatch rules, except that no parking detection files itself: each waits for an operator."""
    rules = yaml.safe_load(DISPATCH.read_text(encoding="utf-8"))
    rules["categories"]["illegal_parking"]["auto_file_score"] = None
    rules["grids"] = str(DISPATCH.parent / rules["grids"])
    (tmp_path / "dispatch.yaml").write_text(yaml.safe_dump(rules, allow_unicode=True), encoding="utf-8")
    return server_settings.model_copy(update={"dispatch_config": tmp_path / "dispatch.yaml"})


def login(page, token: str) -> None:
    page.fill("#token", token)
    page.click("button[type=submit]")


def test_an_operator_draws_a_zone_the_node_applies_it_and_its_detection_is_confirmed_live(
        running_broker, server_url, browser, api_tokens, model_path, tmp_path):
    clip = render_parked_bus_clip(tmp_path / "bus.mp4", seconds=20)
    (tmp_path / "node.password").write_text(running_broker.credentials.nodes["node-a"])
    (tmp_path / "node.yaml").write_text(yaml.safe_dump({
        "node_id": "node-a", "model": model_path, "state_dir": str(tmp_path / "edge-state"),
        "telemetry_seconds": 2,
        "mqtt": {"port": running_broker.port, "password_file": "node.password"},
        "cameras": [{"camera_id": "kerb-cam", "source": str(clip), "loop": True, "realtime": True,
                     "location": {"lat": 30.27415, "lon": 120.15515},
                     "zones": [{"zone_id": "far-corner", "rule": "no_parking", "dwell_seconds": 3,
                                "polygon": [[0.0, 0.0], [0.1, 0.0], [0.1, 0.1], [0.0, 0.1]]}]}],
    }))
    operator = {"Authorization": f"Bearer {api_tokens['operator']}"}
    processes = Processes(tmp_path)
    try:
        processes.start("edge", "edge", "--config", str(tmp_path / "node.yaml"))
        wait_until(lambda: any(c["camera_id"] == "kerb-cam" for c in httpx.get(
            f"{server_url}/api/v1/cameras", headers=operator).json()), timeout=90)

        page = browser.new_page(viewport={"width": 1366, "height": 768}, locale="en-US")
        review = browser.new_page(viewport={"width": 1366, "height": 768}, locale="en-US")
        review.goto(f"{server_url}/console/#/review")
        login(review, api_tokens["operator"])
        review.wait_for_selector(".live.on")
        assert review.locator("#queue li").count() == 0

        page.goto(f"{server_url}/console/#/zones?node=node-a&camera=kerb-cam")
        login(page, api_tokens["operator"])
        page.wait_for_selector("img.zone-picture[src^='blob:']", timeout=60_000)  # the snapshot the page asked for
        canvas = page.locator("#zone-canvas").bounding_box()
        for x, y in [(0.02, 0.55), (0.98, 0.55), (0.98, 0.95), (0.02, 0.95)]:  # the kerb where the bus stands
            page.mouse.click(canvas["x"] + x * canvas["width"], canvas["y"] + y * canvas["height"])
        assert page.inner_text("#zone-corners") == "4"
        page.fill("#zone-id", "bus-stop")
        page.dispatch_event("#zone-id", "change")
        page.fill("#zone-dwell", "3")
        page.dispatch_event("#zone-dwell", "change")
        page.click("#zone-save")
        page.wait_for_selector("#zone-state:text-matches('The node applied')", timeout=30_000)
        shot(page, "zones")

        config = httpx.get(f"{server_url}/api/v1/nodes/node-a/config", headers=operator).json()
        [zone] = config["cameras"]["kerb-cam"]["zones"]
        assert zone["zone_id"] == "bus-stop" and len(zone["polygon"]) == 4 and config["status"]["state"] == "applied"

        item = review.wait_for_selector("#queue li", timeout=60_000)  # arrived live in the other tab
        case_id = int(item.get_attribute("data-case-id"))
        review.wait_for_selector("#review-detail img.frame[src^='blob:']")
        assert "bus-stop" in review.inner_text("#review-detail")
        shot(review, "review-edge-node")
        review.keyboard.press("c")
        review.wait_for_selector(f"text=Case {case_id} confirmed and dispatched")
        case = httpx.get(f"{server_url}/api/v1/cases/{case_id}", headers=operator).json()
        assert (case["category"], case["label"], case["zone_id"]) == ("illegal_parking", "bus", "bus-stop")
        assert case["status"] == "dispatched" and case["assignment"]["unit_id"] == "traffic-police"
    except Exception:
        print(processes.logs())
        raise
    finally:
        processes.stop()

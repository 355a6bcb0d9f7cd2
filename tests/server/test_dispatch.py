from __future__ import annotations

from pathlib import Path

import pytest

from gridwatch.config_files import ConfigError
from gridwatch.contract import Category, Location
from server.services.dispatch import Dispatcher

DEMO = Path(__file__).resolve().parents[2] / "config" / "demo" / "dispatch.yaml"


@pytest.fixture(scope="module")
def dispatcher() -> Dispatcher:
    return Dispatcher.from_file(DEMO)


@pytest.mark.parametrize(
    ("category", "location", "unit", "grid", "chief", "minutes"),
    [
        (Category.ILLEGAL_PARKING, Location(lat=30.274, lon=120.155), "traffic-police", "WL-01", "王建国", 30),
        (Category.LITTER, Location(lat=30.274, lon=120.165), "sanitation", "WL-02", "李晓梅", 240),
        (Category.STREET_VENDING, Location(lat=30.274, lon=120.165), "enforcement", "WL-02", "李晓梅", 60),
        (Category.DEVICE_FAULT, Location(lat=30.274, lon=120.155), "operations", "WL-01", "王建国", 240),
        (Category.STREETLIGHT_FAULT, Location(lat=30.274, lon=120.165), "street-lighting", "WL-02", "李晓梅", 480),
    ],
)
def test_grid_gives_the_chief_and_category_the_unit(dispatcher, category, location, unit, grid, chief, minutes):
    assignment, allowed = dispatcher.assign(category, location)
    assert assignment.unit_id == unit and assignment.grid_id == grid
    assert assignment.street_chief.name.startswith(chief)
    assert not assignment.fallback
    assert allowed.total_seconds() == minutes * 60


@pytest.mark.parametrize("location", [None, Location(lat=31.0, lon=121.0)])
def test_outside_every_grid_goes_to_the_fallback_unit(dispatcher, location):
    assignment, _ = dispatcher.assign(Category.ILLEGAL_PARKING, location)
    assert assignment.fallback and assignment.unit_id == "command-centre" and assignment.street_chief is None


def test_unknown_unit_in_config_is_named(tmp_path):
    (tmp_path / "grids.geojson").write_text('{"type": "FeatureCollection", "features": []}')
    (tmp_path / "dispatch.yaml").write_text(
        "grids: grids.geojson\nunits: {a: {name: A}}\ncategories: {litter: {unit: b, deadline_minutes: 5}}\n"
        "fallback_unit: a\n"
    )
    with pytest.raises(ConfigError, match="categories.litter.unit: unknown unit 'b'"):
        Dispatcher.from_file(tmp_path / "dispatch.yaml")


def test_unknown_key_in_config_is_named(tmp_path):
    text = DEMO.read_text().replace("fallback_unit:", "fallback_units:")
    (tmp_path / "dispatch.yaml").write_text(text)
    with pytest.raises(ConfigError, match="fallback_units: unknown key"):
        Dispatcher.from_file(tmp_path / "dispatch.yaml")

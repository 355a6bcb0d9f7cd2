"""Who is responsible: grid polygons give the community, street and street chief; the category gives the chief's
member unit (sanitation, enforcement, traffic police ...). What matches nothing goes to the fallback unit."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import shapely
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from shapely.geometry import Point, shape
from shapely.geometry.base import BaseGeometry

from gridwatch.config_files import ConfigError, load_yaml_model
from gridwatch.contract import CaseAssignment, Category, Location, Person


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid")


class UnitConfig(_Config):
    name: str = Field(description="Name shown to operators and integrators, e.g. 交警 Traffic police.")
    phone: str | None = Field(default=None, description="Duty phone shown with the assignment.")


class CategoryRoute(_Config):
    unit: str = Field(description="Key in `units` of the member unit that handles this category.")
    deadline_minutes: float = Field(gt=0, description="Time allowed from dispatch to handling.")


class DispatchConfig(_Config):
    grids: Path = Field(description="GeoJSON FeatureCollection of unit grids, relative to this file.")
    units: dict[str, UnitConfig] = Field(min_length=1, description="Responsible units by id (table below).")
    categories: dict[Category, CategoryRoute] = Field(
        default_factory=dict, description="Which unit handles each category, and in what time (table below)."
    )
    fallback_unit: str = Field(description="Key in `units` that takes what no grid or category matches.")
    fallback_deadline_minutes: float = Field(default=240, gt=0, description="Time allowed for fallback cases.")

    @model_validator(mode="after")
    def _units_exist(self) -> DispatchConfig:
        named = {"fallback_unit": self.fallback_unit}
        named.update({f"categories.{c.value}.unit": route.unit for c, route in self.categories.items()})
        missing = [f"{key}: unknown unit {unit!r}" for key, unit in named.items() if unit not in self.units]
        if missing:
            raise ValueError("; ".join(missing))
        return self


class GridProperties(BaseModel):
    model_config = ConfigDict(extra="allow")

    grid_id: str
    name: str | None = None
    community: str | None = None
    street: str | None = None
    street_chief: Person | None = None


class Grid:
    def __init__(self, properties: GridProperties, geometry: BaseGeometry) -> None:
        self.properties = properties
        self.geometry = geometry
        shapely.prepare(geometry)


def load_grids(path: Path) -> list[Grid]:
    try:
        collection = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise ConfigError(f"{path}: cannot read grids: {error}") from None
    grids = []
    for index, feature in enumerate(collection.get("features", [])):
        try:
            properties = GridProperties.model_validate(feature.get("properties") or {})
            geometry = shape(feature["geometry"])
        except (ValidationError, KeyError, ValueError, TypeError, AttributeError) as error:
            raise ConfigError(f"{path}: features.{index}: {error}") from None
        if geometry.geom_type not in ("Polygon", "MultiPolygon") or not geometry.is_valid:
            raise ConfigError(f"{path}: features.{index} ({properties.grid_id}): not a valid polygon")
        grids.append(Grid(properties, geometry))
    return grids


class Dispatcher:
    def __init__(self, config: DispatchConfig | None, grids: list[Grid]) -> None:
        self.config = config
        self.grids = grids

    @classmethod
    def from_file(cls, path: Path | None) -> Dispatcher:
        if path is None:
            return cls(None, [])
        config = load_yaml_model(path, DispatchConfig)
        grids_path = config.grids if config.grids.is_absolute() else path.parent / config.grids
        return cls(config, load_grids(grids_path))

    def grid_at(self, location: Location | None) -> Grid | None:
        if location is None:
            return None
        point = Point(location.lon, location.lat)  # GeoJSON order
        return next((grid for grid in self.grids if grid.geometry.intersects(point)), None)

    def assign(self, category: Category, location: Location | None) -> tuple[CaseAssignment, timedelta]:
        """The assignment and the time allowed. A case that no grid or no category route covers goes to the fallback
        unit, so nothing is left without an owner."""
        if self.config is None:
            return CaseAssignment(unit_id="command-centre", unit_name="Command centre", fallback=True), timedelta(
                hours=4
            )
        grid = self.grid_at(location)
        route = self.config.categories.get(category)
        if grid is not None and route is not None:
            unit_id, minutes, fallback = route.unit, route.deadline_minutes, False
        else:
            unit_id, minutes, fallback = self.config.fallback_unit, self.config.fallback_deadline_minutes, True
        props = grid.properties if grid else None
        assignment = CaseAssignment(
            grid_id=props.grid_id if props else None,
            community=props.community if props else None,
            street=props.street if props else None,
            street_chief=props.street_chief if props else None,
            unit_id=unit_id,
            unit_name=self.config.units[unit_id].name,
            fallback=fallback,
        )
        return assignment, timedelta(minutes=minutes)

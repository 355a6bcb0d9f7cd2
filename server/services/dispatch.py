"""Who is responsible: grid polygons give the community, street and street chief; the category gives the chief's
member unit (sanitation, enforcement, traffic police ...) and its shifts the person on duty. What matches nothing
goes to the fallback unit. Deadlines count working hours; overdue cases escalate grid → street office → district."""

from __future__ import annotations

import json
import logging
import re
import unicodedata
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import shapely
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from shapely.geometry import Point, shape
from shapely.geometry.base import BaseGeometry

from gridwatch.config_files import ConfigError, load_yaml_model, validation_problems
from gridwatch.contract import CaseAssignment, Category, Location, Person
from server.services.duty import (
    Shift,
    WorkingHours,
    add_working_time,
    overlaps,
    taking_over,
    working_time_before,
    working_time_between,
)

log = logging.getLogger(__name__)

OVERLAP_SHARE = 0.01
"""Of the smaller grid's area, what two grids may share before it is said: a GIS file's slivers along a border are
not worth a line; a grid drawn over another is."""


MAX_MINUTES = 366 * 24 * 60
"""The longest time a configuration gives in minutes, a year: more is a slip of the keyboard, and `.inf` or 1e10
(past the year 9999) made every deadline or escalation that used it fail."""


class _Config(BaseModel):
    # no Infinity or NaN: a deadline `.inf` minutes away cannot be placed on any clock
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def address_key(address: str) -> str:
    """An address as compared: letter case and spacing aside, full-width digits and letters as the plain ones
    (Chinese input methods type １２ for 12), and no space beside a CJK character (武林路 12 号 is 武林路12号)."""
    plain = " ".join(unicodedata.normalize("NFKC", address).split()).casefold()
    return _BESIDE_CJK.sub("", plain)


_CJK = r"[\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff]"
_BESIDE_CJK = re.compile(f" (?={_CJK})|(?<={_CJK}) ")


class UnitConfig(_Config):
    name: str = Field(max_length=200, description="Name shown to operators and integrators, e.g. 交警 Traffic police.")
    phone: str | None = Field(default=None, max_length=64, description="Duty phone shown with the assignment.")
    shifts: list[Shift] = Field(default_factory=list, description="Duty roster: who is on duty when (table below); "
                                                                  "the assignment names the person on duty.")


class CategoryRoute(_Config):
    unit: str = Field(description="Key in `units` of the member unit that handles this category.")
    deadline_minutes: float = Field(gt=0, le=MAX_MINUTES, description=(
        "Time allowed from dispatch to the unit's feedback (at most a year, 527040)."))
    clock: Literal["working", "calendar"] = Field(
        default="working", description="`working`: the deadline counts only `working_hours`; `calendar`: round the "
                                       "clock (streetlights, devices).")
    auto_file_score: float | None = Field(
        default=0.5, ge=0, le=1, description="A detection scoring at least this files and dispatches itself; below, "
                                             "it waits for an operator to confirm or reject. null: always wait.")


class Escalation(_Config):
    street_offices: dict[str, Person] = Field(
        default_factory=dict, description=(
            "Head of each street office, by the grids' `street` name: told when a case of theirs is overdue. Given "
            "any, every grid's street needs one; a case with none to tell (outside every grid) goes to the district "
            "at its deadline."))
    district: Person | None = Field(default=None, description="District command, told when still overdue later.")
    district_after_minutes: float = Field(default=120, gt=0, le=MAX_MINUTES, description=(
        "Minutes past the deadline before the district is told, on the category's clock (at most a year)."))


class DispatchConfig(_Config):
    grids: Path = Field(description="GeoJSON FeatureCollection of unit grids, relative to this file.")
    units: dict[str, UnitConfig] = Field(min_length=1, description="Responsible units by id (table below).")
    categories: dict[Category, CategoryRoute] = Field(
        default_factory=dict, description="Which unit handles each category, and in what time (table below)."
    )
    fallback_unit: str = Field(description="Key in `units` that takes what no grid or category matches.")
    fallback_deadline_minutes: float = Field(default=240, gt=0, le=MAX_MINUTES, description=(
        "Time allowed for fallback cases (at most a year)."))
    timezone: str = Field(default="Asia/Shanghai", description="IANA zone of shifts and working hours.")
    working_hours: WorkingHours | None = Field(
        default=None, description="When `working` deadlines run, e.g. {start: '07:00', end: '23:00'}, with the "
                                  "city's holidays and make-up days; null: always.")
    repeat_window_minutes: float = Field(
        default=30, ge=0, le=MAX_MINUTES, description=(
            "A detection at the place and of the category of a case closed (or verified) this recently reopens it (an "
            "open case is joined whenever)."))
    repeat_radius_m: float = Field(default=15, ge=0, description="Distance within which two located detections "
                                                                 "from different cameras are the same place.")
    escalation: Escalation = Field(default_factory=Escalation, description="Who is told of overdue cases.")
    addresses: dict[str, Location] = Field(
        default_factory=dict, description=(
            "The city's address register: addresses and landmarks a citizen names (`Wulin Road 12`, `Hubin market`) "
            "and where each is, {lat, lon}. A report giving one of them (letter case, spacing and full-width "
            "characters aside) and no position is placed there; another waits for an operator to place it."))

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def register(self) -> dict[str, Location]:
        """`addresses` by their `address_key`."""
        return {address_key(name): location for name, location in self.addresses.items()}

    @model_validator(mode="after")
    def _units_exist(self) -> DispatchConfig:
        named = {"fallback_unit": self.fallback_unit}
        named.update({f"categories.{c.value}.unit": route.unit for c, route in self.categories.items()})
        missing = [f"{key}: unknown unit {unit!r}" for key, unit in named.items() if unit not in self.units]
        if missing:
            raise ValueError("; ".join(missing))
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"timezone: unknown time zone {self.timezone!r}") from None
        return self

    @model_validator(mode="after")
    def _a_calendar_to_keep(self) -> DispatchConfig:
        """A shift that keeps the city's calendar, where there is none (no `working_hours`), would keep nothing."""
        if self.working_hours is None and (keeping := [
                f"units.{unit_id}.shifts.{index}.keeps_calendar" for unit_id, unit in self.units.items()
                for index, shift in enumerate(unit.shifts) if shift.keeps_calendar]):
            raise ValueError("; ".join(f"{key}: true needs working_hours, the city's calendar of holidays and make-up "
                                       f"days (working_hours is null)" for key in keeping))
        return self


def _bare(key: str) -> str:
    """A key without case and separators: `StreetChief`, `street-chief` and `streetchief` are `street_chief`."""
    return "".join(character for character in key.lower() if character.isalnum())


class GridProperties(BaseModel):
    model_config = ConfigDict(extra="allow")  # GIS tools add their own attributes (OBJECTID, area …)

    grid_id: str
    name: str | None = None
    community: str | None = None
    street: str | None = None
    street_chief: Person | None = None

    @model_validator(mode="after")
    def _no_near_misses(self) -> GridProperties:
        """An attribute that is one of ours but for case and separators is a typo, not a GIS tool's own: named, not
        ignored (a `streetchief` left the grid without its chief, silently), unless ours is given too; `community_id`,
        `OBJECTID` … stay the tool's."""
        ours = {_bare(name): name for name in GridProperties.model_fields}
        for key in self.model_extra or {}:
            if (meant := ours.get(_bare(key))) is not None and meant not in self.model_fields_set:
                raise ValueError(f"{key}: unknown key; did you mean {meant}?")
        return self


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
    if not isinstance(collection, dict) or collection.get("type") != "FeatureCollection" or \
            not isinstance(collection.get("features"), list):
        raise ConfigError(f"{path}: type: a GeoJSON FeatureCollection with a `features` list is needed (one grid a "
                          f"feature)")
    grids = []
    for index, feature in enumerate(collection["features"]):
        try:
            properties = GridProperties.model_validate(feature.get("properties") or {})
            geometry = shape(feature["geometry"])
        except ValidationError as error:  # each problem by its key, as in the YAML files
            raise ConfigError("; ".join(f"{path}: features.{index}.properties.{problem}"
                                        for problem in validation_problems(error))) from None
        except (KeyError, ValueError, TypeError, AttributeError) as error:
            raise ConfigError(f"{path}: features.{index}.geometry: {error}") from None
        if geometry.geom_type not in ("Polygon", "MultiPolygon") or not geometry.is_valid:
            raise ConfigError(f"{path}: features.{index} ({properties.grid_id}): not a valid polygon")
        west, south, east, north = geometry.bounds
        if not (-180 <= west <= east <= 180 and -90 <= south <= north <= 90):
            # [lat, lon] pairs: a grid no point on Earth falls in, every case of it sent to the fallback unit
            raise ConfigError(f"{path}: features.{index} ({properties.grid_id}): coordinates outside longitude "
                              f"-180..180 / latitude -90..90; GeoJSON gives each point as [lon, lat]")
        grids.append(Grid(properties, geometry))
    _refuse_twice_given_ids(path, grids)
    _say_overlaps(path, grids)
    return grids


def _refuse_twice_given_ids(path: Path, grids: list[Grid]) -> None:
    """Two grids of one `grid_id` would be one grid to the assessment, the case lists and the public board."""
    features: dict[str, list[int]] = {}
    for index, grid in enumerate(grids):
        features.setdefault(grid.properties.grid_id, []).append(index)
    if twice := [(grid_id, indices) for grid_id, indices in features.items() if len(indices) > 1]:
        raise ConfigError("; ".join(
            f"{path}: {' and '.join(f'features.{index}.properties.grid_id' for index in indices)}: "
            f"{'both' if len(indices) == 2 else 'all'} {grid_id!r}; each grid needs its own"
            for grid_id, indices in twice))


def _say_overlaps(path: Path, grids: list[Grid]) -> None:
    """Warns of grids drawn over each other: a case where two overlap goes to the first in the file (and one on a
    shared border too), which the city may not have meant."""
    tree = shapely.STRtree([grid.geometry for grid in grids])
    for first, second in zip(*tree.query([grid.geometry for grid in grids], predicate="intersects"), strict=True):
        if first >= second:
            continue
        a, b = grids[first], grids[second]
        shared = a.geometry.intersection(b.geometry).area
        if shared > OVERLAP_SHARE * min(a.geometry.area, b.geometry.area):
            log.warning("%s: grids %s and %s overlap (%.0f %% of the smaller); a case where both lie goes to %s, the "
                        "first in the file", path, a.properties.grid_id, b.properties.grid_id,
                        100 * shared / min(a.geometry.area, b.geometry.area), a.properties.grid_id)


class Dispatcher:
    def __init__(self, config: DispatchConfig | None, grids: list[Grid]) -> None:
        self.config = config
        self.grids = grids
        self._register: dict[str, Location] | None = None

    @classmethod
    def from_file(cls, path: Path | None) -> Dispatcher:
        if path is None:
            return cls(None, [])
        config = load_yaml_model(path, DispatchConfig)
        grids_path = config.grids if config.grids.is_absolute() else path.parent / config.grids
        grids = load_grids(grids_path)
        streets = {grid.properties.street for grid in grids}
        if unknown := sorted(set(config.escalation.street_offices) - streets):
            # a misspelt street: its overdue cases would escalate to nobody
            raise ConfigError(f"{path}: escalation.street_offices: {', '.join(map(repr, unknown))} is the street of "
                              f"no grid in {config.grids} (streets: {', '.join(sorted(map(str, streets - {None})))})")
        offices = config.escalation.street_offices
        if offices and (headless := [(index, grid) for index, grid in enumerate(grids)
                                     if grid.properties.street is not None and grid.properties.street not in offices]):
            # a misspelt street on a grid: its overdue cases would be told to no street office
            raise ConfigError("; ".join(
                f"{grids_path}: features.{index}.properties.street: {grid.properties.street!r} (grid "
                f"{grid.properties.grid_id}) has no head in escalation.street_offices (there: "
                f"{', '.join(map(repr, offices))})" for index, grid in headless))
        for unit_id, unit in config.units.items():
            for first, second, when in overlaps(unit.shifts):
                log.warning("%s: units.%s.shifts: %d (%s) and %d (%s) overlap %s; the first listed, %s, is on duty "
                            "then", path, unit_id, first, unit.shifts[first].name, second, unit.shifts[second].name,
                            when, unit.shifts[first].name)
        return cls(config, grids)

    @property
    def zone(self) -> ZoneInfo:
        return self.config.zone if self.config else ZoneInfo("Asia/Shanghai")

    def located(self, address: str | None) -> Location | None:
        """Where the address register places `address`, if it has it."""
        if address is None or self.config is None or not self.config.addresses:
            return None
        if self._register is None:
            self._register = self.config.register
        return self._register.get(address_key(address))

    def has_unit(self, unit_id: str) -> bool:
        """Whether the dispatch configuration names this unit (without one, any unit id goes)."""
        return self.config is None or unit_id in self.config.units

    def grid_at(self, location: Location | None) -> Grid | None:
        if location is None:
            return None
        point = Point(location.lon, location.lat)  # GeoJSON order
        return next((grid for grid in self.grids if grid.geometry.intersects(point)), None)

    def assign(self, category: Category, location: Location | None, now: datetime,
               unit_id: str | None = None) -> tuple[CaseAssignment, datetime]:
        """The assignment and its deadline. A case that no grid or no category route covers goes to the fallback
        unit, so nothing is left without an owner. `unit_id`: an operator's choice instead of the route's."""
        if self.config is None:  # no routes: the command centre has it, or the unit an operator names
            return CaseAssignment(unit_id=unit_id or "command-centre", unit_name=unit_id or "Command centre",
                                  fallback=unit_id is None), now + timedelta(hours=4)
        config = self.config
        grid = self.grid_at(location)
        route = config.categories.get(category)
        minutes, clock = config.fallback_deadline_minutes, "working"
        if route is not None:
            minutes, clock = route.deadline_minutes, route.clock
        if unit_id is not None:
            if not self.has_unit(unit_id):
                raise KeyError(unit_id)
            fallback = False
        elif grid is not None and route is not None:
            unit_id, fallback = route.unit, False
        else:
            unit_id, minutes, fallback = config.fallback_unit, config.fallback_deadline_minutes, True
        props = grid.properties if grid else None
        unit = config.units[unit_id]
        assignment = CaseAssignment(
            grid_id=props.grid_id if props else None,
            community=props.community if props else None,
            street=props.street if props else None,
            street_chief=props.street_chief if props else None,
            unit_id=unit_id,
            unit_name=unit.name,
            fallback=fallback,
            on_duty=taking_over(unit.shifts, now, config.zone, config.working_hours),
            unit_phone=unit.phone,
        )
        return assignment, self.deadline(now, timedelta(minutes=minutes), clock)

    def deadline(self, start: datetime, allowed: timedelta, clock: str = "working") -> datetime:
        if self.config is None:
            return start + allowed
        hours = self.config.working_hours if clock == "working" else None
        return add_working_time(start, allowed, hours, self.config.zone)

    def clock_of(self, category: Category) -> str:
        """`working` or `calendar`: how the category's deadlines run (the fallback route's: working)."""
        route = self.config.categories.get(category) if self.config else None
        return route.clock if route is not None else "working"

    def before(self, end: datetime, span: timedelta, clock: str = "working") -> datetime:
        """The moment `span` on the clock before `end`: a deadline as far past at `end` as it was before."""
        if self.config is None:
            return end - span
        hours = self.config.working_hours if clock == "working" else None
        return working_time_before(end, span, hours, self.config.zone)

    def time_left(self, now: datetime, deadline: datetime, clock: str = "working") -> timedelta:
        """The time on the clock from `now` to `deadline` (none once it has passed)."""
        if self.config is None:
            return max(timedelta(0), deadline - now)
        hours = self.config.working_hours if clock == "working" else None
        return working_time_between(now, deadline, hours, self.config.zone)

    def auto_file_score(self, category: Category) -> float | None:
        """The score from which a detection files itself; None: an operator always decides."""
        if self.config is None:
            return 0.5
        route = self.config.categories.get(category)
        return route.auto_file_score if route is not None else 0.5

    def escalation_contact(self, level: int, street: str | None) -> Person | None:
        """Who is told at `level`: 1 the head of the `street`'s office, 2 the district (None: no one named)."""
        if self.config is None:
            return None
        escalation = self.config.escalation
        return escalation.district if level >= 2 else escalation.street_offices.get(street or "")

"""Configuration of a node's smart streetlights (`streetlights:` in the node config)."""

from __future__ import annotations

import urllib.parse
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gridwatch.contract import Identifier, Location

FaultKind = Literal["lamp_out", "stuck_on", "overvoltage", "undervoltage", "power_low", "silent"]


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SimulatedFailure(_Config):
    fault: FaultKind = Field(description="lamp_out: off when it should light; stuck_on: lit by day; overvoltage, "
                                         "undervoltage; power_low: drawing 40 % of its rating; silent: no answer.")
    start_seconds: float = Field(ge=0, description="Seconds after the node starts.")
    end_seconds: float | None = Field(default=None, description="When it recovers; never if absent.")


class LampAdapterConfig(_Config):
    type: Literal["simulated", "http"] = Field(
        description="simulated: a lamp with a photocell, for tests and demos; http: a controller (or gateway) that "
                    "answers GET with JSON {lamp_on, power_w, voltage_v, ambient_lux}.")
    url: str | None = Field(default=None, description="http: the controller's reading URL.")
    timeout_seconds: float = Field(default=3.0, gt=0, description="http: how long to wait for an answer.")
    ambient_lux: float | None = Field(default=None, ge=0, description="simulated: a fixed ambient light level "
                                                                      "(default: dark from 18:00 to 06:00 local).")
    failures: list[SimulatedFailure] = Field(default_factory=list, description="simulated: failures to play.")

    @model_validator(mode="after")
    def _url_for_http(self) -> LampAdapterConfig:
        if self.type == "http" and not self.url:
            raise ValueError("an http adapter needs a url")
        if self.url is not None:  # a typo would only show, minutes later, as a controller that never answers
            parts = urllib.parse.urlsplit(self.url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"url {self.url!r}: an http:// or https:// URL with a host")
        return self


class StreetlightConfig(_Config):
    lamp_id: Identifier = Field(description="Unique within the node; events name it as their camera_id.")
    adapter: LampAdapterConfig = Field(description="How the controller is read (table below).")
    location: Location | None = Field(default=None, description="Where the lamp stands (WGS84): for dispatch, and "
                                                                 "for day and night by the sun (`daylight`).")
    poll_seconds: float = Field(default=10.0, gt=0, description="How often the controller is read.")
    dark_lux: float = Field(default=10.0, ge=0, description="Ambient light below which it is night: the lamp must "
                                                            "be on.")
    bright_lux: float = Field(default=50.0, ge=0, description="Ambient light above which it is day: the lamp must "
                                                              "be off.")
    daylight: Literal["auto", "lux", "sun"] = Field(
        default="auto",
        description="How day and night are told: lux, by the controller's light sensor (an underpass is dark at "
                    "noon); sun, by where the sun stands at the lamp's location (a controller without a sensor, or "
                    "with a dirty one); auto, by the sensor where the reading has one, else by the sun.")
    night_sun_elevation: float = Field(
        default=-6.0, ge=-18, le=10,
        description="By the sun: night (the lamp must be on) once the sun is this many degrees below the horizon "
                    "(-6: civil dusk).")
    day_sun_elevation: float = Field(
        default=3.0, ge=-10, le=30, description="By the sun: day (the lamp must be off) once it stands this high.")
    rated_power_w: float = Field(default=100.0, gt=0, description="The lamp's power when lit.")
    power_tolerance: float = Field(default=0.3, gt=0, lt=1, description="Allowed deviation from the rated power.")
    min_voltage_v: float = Field(default=198.0, ge=0, description="Lowest acceptable supply voltage.")
    max_voltage_v: float = Field(default=242.0, gt=0, description="Highest acceptable supply voltage.")
    fault_seconds: float = Field(default=60.0, ge=0, description="How long a condition lasts before it is a "
                                                                 "fault, and is gone before the fault ends.")
    silent_seconds: float = Field(default=60.0, gt=0, description="Without an answer this long, the controller "
                                                                  "is silent.")

    @model_validator(mode="after")
    def _ordered(self) -> StreetlightConfig:
        if self.bright_lux < self.dark_lux:
            raise ValueError("bright_lux must not be below dark_lux")
        if self.day_sun_elevation < self.night_sun_elevation:
            raise ValueError("day_sun_elevation must not be below night_sun_elevation")
        if self.daylight == "sun" and self.location is None:
            raise ValueError("daylight: sun needs the lamp's location")
        if self.max_voltage_v <= self.min_voltage_v:
            raise ValueError("max_voltage_v must be above min_voltage_v")
        return self

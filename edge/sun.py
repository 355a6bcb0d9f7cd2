"""Where the sun stands: its elevation above the horizon at a place and moment, by NOAA's general solar position
formulas (a minute or two from the almanac's sunrise and sunset, plenty to tell a lamp's night from its day)."""

from __future__ import annotations

import calendar
import math
from datetime import UTC, datetime


def sun_elevation(lat: float, lon: float, moment: float) -> float:
    """Degrees above the horizon (negative: below) of the sun's centre, without refraction, at `lat`/`lon` (WGS84
    degrees, east positive) and `moment` (Unix seconds)."""
    when = datetime.fromtimestamp(moment, UTC)
    year_days = 366 if calendar.isleap(when.year) else 365
    minutes = when.hour * 60 + when.minute + when.second / 60
    gamma = 2 * math.pi / year_days * (when.timetuple().tm_yday - 1 + (minutes / 60 - 12) / 24)
    equation_of_time = 229.18 * (0.000075 + 0.001868 * math.cos(gamma) - 0.032077 * math.sin(gamma)
                                 - 0.014615 * math.cos(2 * gamma) - 0.040849 * math.sin(2 * gamma))
    declination = (0.006918 - 0.399912 * math.cos(gamma) + 0.070257 * math.sin(gamma)
                   - 0.006758 * math.cos(2 * gamma) + 0.000907 * math.sin(2 * gamma)
                   - 0.002697 * math.cos(3 * gamma) + 0.00148 * math.sin(3 * gamma))
    solar_minutes = minutes + equation_of_time + 4 * lon
    hour_angle = math.radians(solar_minutes / 4 - 180)
    latitude = math.radians(lat)
    cos_zenith = (math.sin(latitude) * math.sin(declination)
                  + math.cos(latitude) * math.cos(declination) * math.cos(hour_angle))
    return 90 - math.degrees(math.acos(max(-1.0, min(1.0, cos_zenith))))

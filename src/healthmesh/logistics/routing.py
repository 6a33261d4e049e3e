"""Distance and arrival estimates for a shipment. Pure: no database, no web.

Great-circle distance understates the real route, so each mode multiplies it by a detour
factor; the estimated arrival adds the mode's handling time (loading, customs, the last leg) to
the time on the way at the mode's average speed. The figures are planning defaults of the kind
regional logistics working groups use; a region can change them in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from healthmesh.allocation.model import distance_km


class Mode(StrEnum):
    ROAD = "road"
    AIR = "air"
    SEA = "sea"


@dataclass(frozen=True)
class ModeProfile:
    detour_factor: float  # route length / great-circle distance
    km_per_day: float  # average progress, stops included
    handling_hours: float  # loading, customs and the last leg


PROFILES: dict[Mode, ModeProfile] = {
    Mode.ROAD: ModeProfile(detour_factor=1.3, km_per_day=500.0, handling_hours=24.0),
    Mode.AIR: ModeProfile(detour_factor=1.1, km_per_day=6_000.0, handling_hours=48.0),
    Mode.SEA: ModeProfile(detour_factor=1.5, km_per_day=550.0, handling_hours=120.0),
}

#: Beyond this great-circle distance a road shipment is not proposed by default.
ROAD_LIMIT_KM = 2_500.0


def default_mode(great_circle_km: float, emergency: bool) -> Mode:
    """Air for emergencies and long hauls, road otherwise (the user may choose another)."""
    if emergency or great_circle_km > ROAD_LIMIT_KM:
        return Mode.AIR
    return Mode.ROAD


@dataclass(frozen=True)
class Route:
    mode: Mode
    great_circle_km: float
    distance_km: float
    hours: float

    def eta(self, departure: datetime) -> datetime:
        return departure + timedelta(hours=self.hours)


def route(lat1: float, lon1: float, lat2: float, lon2: float, mode: Mode) -> Route:
    """The route's length by this mode and the hours from departure to arrival."""
    profile = PROFILES[mode]
    great_circle = distance_km(lat1, lon1, lat2, lon2)
    length = great_circle * profile.detour_factor
    hours = profile.handling_hours + 24.0 * length / profile.km_per_day
    return Route(mode, round(great_circle, 1), round(length, 1), round(hours, 2))

"""A route's `transfer:` section: the people or desks the agent may hand a caller to, checked
once when the routes file loads, and the plan the transfer flow reads for each call.

```yaml
transfer:
  mode: cold                      # default for every target: cold | warm
  targets:
    sales:
      number: "+15005550100"      # or  sip: "sip:desk@pbx.example.com"
      description: the sales team
      hours: {timezone: Europe/Berlin, open: {mon-fri: "09:00-17:00", sat: "10:00-13:00"}}
      ring_timeout_seconds: 25
      caller_id: "+15005550001"   # unset: the provider's default for the leg it dials
      mode: warm
      whisper: true               # warm: read the agent's summary to the person first
```
"""

import re
from dataclasses import dataclass
from datetime import datetime, time
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from app.phone import written_e164

Mode = Literal["cold", "warm"]
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# What a target's name may be: it is an enum value the model says, and a log label.
TARGET_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
SIP_URI = re.compile(r"^sips?:[^@\s<>\"]+@[^\s<>\"]+$")
TIME_RANGE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")
# Providers let a transferred leg ring between 5 s and 2 minutes (Twilio's and Telnyx's <Dial>).
MIN_RING_SECONDS, MAX_RING_SECONDS = 5, 120


@dataclass(frozen=True)
class OpeningHours:
    """When a target takes calls: per weekday (0 = Monday), ranges of local time."""

    timezone: ZoneInfo
    ranges: dict[int, tuple[tuple[time, time], ...]]
    text: str  # as written in the file, for the agent and the logs

    def is_open(self, now: datetime) -> bool:
        local = now.astimezone(self.timezone)
        moment = local.time().replace(tzinfo=None)
        return any(start <= moment < end for start, end in self.ranges.get(local.weekday(), ()))


@dataclass(frozen=True)
class TransferTarget:
    """One person or desk: where to dial, when, how long to ring, and how to hand over."""

    name: str
    destination: str  # E.164 number or SIP URI
    description: str
    mode: Mode
    ring_timeout_seconds: int
    caller_id: str | None
    whisper: bool
    hours: OpeningHours | None

    @property
    def is_sip(self) -> bool:
        return self.destination.startswith(("sip:", "sips:"))


@dataclass(frozen=True)
class TransferPlan:
    """A route's transfer targets, in the order the file lists them."""

    targets: dict[str, TransferTarget]

    def modes(self) -> set[str]:
        return {target.mode for target in self.targets.values()}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HoursSpec(_Strict):
    """`hours:` a time zone and, per day or day range (`mon-fri`), "HH:MM-HH:MM" ranges."""

    timezone: str
    open: dict[str, str | list[str]]

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"{value!r} is not a time zone; use an IANA name such as Europe/Berlin"
            ) from None
        return value

    @field_validator("open")
    @classmethod
    def _ranges(cls, value: dict[str, str | list[str]]) -> dict[str, str | list[str]]:
        if not value:
            raise ValueError("must name at least one day, such as {mon-fri: '09:00-17:00'}")
        for days, ranges in value.items():
            _days(days)
            for text in [ranges] if isinstance(ranges, str) else ranges:
                _time_range(text)
        return value

    def build(self) -> OpeningHours:
        ranges: dict[int, list[tuple[time, time]]] = {}
        for days, texts in self.open.items():
            for day in _days(days):
                for text in [texts] if isinstance(texts, str) else texts:
                    ranges.setdefault(day, []).append(_time_range(text))
        text = ", ".join(
            f"{days} {ranges if isinstance(ranges, str) else ' and '.join(ranges)}"
            for days, ranges in self.open.items()
        )
        return OpeningHours(
            ZoneInfo(self.timezone),
            {day: tuple(found) for day, found in ranges.items()},
            f"{text} ({self.timezone})",
        )


class TargetSpec(_Strict):
    """One entry of `targets:`."""

    number: str | None = None
    sip: str | None = None
    description: str | None = Field(default=None, min_length=1, max_length=200)
    mode: Mode | None = None
    ring_timeout_seconds: int = Field(default=25, ge=MIN_RING_SECONDS, le=MAX_RING_SECONDS)
    caller_id: str | None = None
    whisper: bool = True
    hours: HoursSpec | None = None

    @field_validator("number", "caller_id", mode="before")
    @classmethod
    def _quoted(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            raise ValueError(f'{value} must be quoted, such as "+{value}": YAML drops the +')
        return value

    @field_validator("number", "caller_id")
    @classmethod
    def _e164(cls, value: str | None) -> str | None:
        return None if value is None else written_e164(value)

    @field_validator("sip")
    @classmethod
    def _sip(cls, value: str | None) -> str | None:
        if value is not None and not SIP_URI.match(value.strip()):
            raise ValueError(f"{value!r} is not a SIP URI such as sip:desk@pbx.example.com")
        return None if value is None else value.strip()

    @model_validator(mode="after")
    def _one_destination(self) -> "TargetSpec":
        if (self.number is None) == (self.sip is None):
            raise ValueError("set exactly one of number (E.164) or sip (a SIP URI)")
        return self


class TransferSpec(_Strict):
    """`transfer:` on a route: the default mode and the named targets."""

    mode: Mode = "cold"
    targets: dict[str, TargetSpec]

    @field_validator("targets")
    @classmethod
    def _names(cls, value: dict[str, TargetSpec]) -> dict[str, TargetSpec]:
        if not value:
            raise ValueError("must name at least one target")
        for name in value:
            if not TARGET_NAME.match(name):
                raise ValueError(
                    f"target name {name!r} must be lower-case letters, digits, - or _ "
                    "(up to 40), such as sales or billing-desk: the agent says it"
                )
        return value

    def build(self) -> TransferPlan:
        return TransferPlan(
            {
                name: TransferTarget(
                    name=name,
                    destination=spec.number or spec.sip or "",
                    description=spec.description or name,
                    mode=spec.mode or self.mode,
                    ring_timeout_seconds=spec.ring_timeout_seconds,
                    caller_id=spec.caller_id,
                    whisper=spec.whisper,
                    hours=spec.hours.build() if spec.hours else None,
                )
                for name, spec in self.targets.items()
            }
        )


def _days(text: str) -> list[int]:
    first, _, last = text.strip().lower().partition("-")
    if first not in DAYS or (last and last not in DAYS):
        raise ValueError(f"{text!r} is not a day or day range such as mon, sat or mon-fri")
    start, end = DAYS.index(first), DAYS.index(last or first)
    if end < start:
        raise ValueError(f"{text!r} runs backwards; write it as two entries")
    return list(range(start, end + 1))


def _time_range(text: str) -> tuple[time, time]:
    match = TIME_RANGE.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a time range such as 09:00-17:00")
    start_h, start_m, end_h, end_m = (int(part) for part in match.groups())
    start = time(start_h, start_m)
    end = time.max if (end_h, end_m) == (24, 0) else time(end_h, end_m) if end_h < 24 else None
    if end is None or end <= start:
        raise ValueError(f"{text!r} must end after it starts, within one day (24:00 at most)")
    return start, end

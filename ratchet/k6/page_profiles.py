"""The devices a page's load is measured on: Lighthouse's two (its defaults since v10), which most page-speed
targets are quoted against. Mobile: a mid-range phone's screen, touch, a quarter of this host's CPU, and a
slow 4G link (150 ms round trips, 1.6 Mbit/s down, 750 kbit/s up). Desktop: a laptop's screen on a fast link
(40 ms, 10 Mbit/s each way), the CPU as it is.

Chromium applies them through the DevTools protocol (k6 browser's context options, ``throttleNetwork`` and
``throttleCPU``): the network's latency is added to every request, not simulated as Lighthouse's report does,
so figures are comparable between runs of Ratchet, not digit for digit with a Lighthouse score.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel


class PageProfile(StrEnum):
    MOBILE = "mobile"
    DESKTOP = "desktop"


class Emulation(BaseModel):
    """What k6's browser is told (ratchet/k6/templates/page_vitals.js reads it from RATCHET_EMULATION)."""

    width: int
    height: int
    device_scale_factor: float
    mobile: bool
    user_agent: str
    latency_ms: float
    download_bytes_s: float
    upload_bytes_s: float
    cpu_slowdown: float


_KBIT = 1000 / 8  # bytes per second in a kilobit per second

EMULATIONS: dict[PageProfile, Emulation] = {
    PageProfile.MOBILE: Emulation(
        width=412,
        height=823,
        device_scale_factor=1.75,
        mobile=True,
        user_agent="Mozilla/5.0 (Linux; Android 11; moto g power (2022)) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/120.0.0.0 Mobile Safari/537.36",
        latency_ms=150,
        download_bytes_s=1600 * _KBIT,
        upload_bytes_s=750 * _KBIT,
        cpu_slowdown=4,
    ),
    PageProfile.DESKTOP: Emulation(
        width=1350,
        height=940,
        device_scale_factor=1,
        mobile=False,
        user_agent="Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 "
        "Safari/537.36",
        latency_ms=40,
        download_bytes_s=10_000 * _KBIT,
        upload_bytes_s=10_000 * _KBIT,
        cpu_slowdown=1,
    ),
}

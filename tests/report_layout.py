"""The report's layout as Chromium draws it: measured in the page (element bounds from the DOM), not guessed
from pixels."""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

# Measures the page where it is drawn: whether the page scrolls sideways, which tables stick out of it, and the
# tallest row of the before/after table. Written into the DOM, which --dump-dom prints.
_LAYOUT_PROBE = """<script>
(() => {
  const page = document.documentElement, width = page.clientWidth;
  const outside = [...document.querySelectorAll("table, figure, pre, dl, p, ul")]
    .filter((el) => el.getBoundingClientRect().right > width + 1)
    .map((el) => el.tagName + ":" + (el.textContent || "").trim().slice(0, 40));
  const verdicts = [...document.querySelectorAll("h2")].find((h) => h.textContent.trim() === "Before and after");
  let table = verdicts; while (table && table.tagName !== "TABLE") table = table.nextElementSibling;
  const rows = table ? [...table.querySelectorAll("tr")].map((r) => r.getBoundingClientRect().height) : [];
  const layout = {width, scrollWidth: page.scrollWidth, outside, tallestRow: Math.max(0, ...rows)};
  document.body.setAttribute("data-layout", JSON.stringify(layout));
})();
</script>"""


def measure_layout(chromium: str, report: Path, width: int, folder: Path) -> dict[str, Any]:
    """Draw ``report`` in a window ``width`` pixels wide and measure it (see ``_LAYOUT_PROBE``)."""
    probed = folder / f"probed-{width}.html"
    probed.write_text(report.read_text(encoding="utf-8").replace("</body>", _LAYOUT_PROBE + "</body>"))
    command = [
        chromium,
        "--headless",
        "--disable-gpu",
        "--force-device-scale-factor=1",
        f"--window-size={width},900",
        "--dump-dom",
        probed.as_uri(),
    ]
    if os.geteuid() == 0:
        command.insert(1, "--no-sandbox")  # Chromium refuses to run as root inside its sandbox
    finished = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    found = re.search(r'data-layout="([^"]+)"', finished.stdout)
    assert finished.returncode == 0 and found, finished.stderr[-2000:]
    return dict(json.loads(html.unescape(found.group(1))))


def assert_fits(layout: dict[str, Any]) -> None:
    """The page never scrolls sideways, nothing sticks out of it (a wide table scrolls in its own box), and the
    before/after rows hold their numbers on a line with the explanation below, not squeezed into a tall column."""
    assert layout["scrollWidth"] <= layout["width"], layout
    assert layout["outside"] == [], layout
    assert layout["tallestRow"] <= 90, layout

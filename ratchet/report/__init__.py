"""The campaign report: one self-contained HTML file and one Markdown file, rendered from a CampaignStatus."""

from ratchet.report.render import p95_bars, render_html, render_markdown

__all__ = ["p95_bars", "render_html", "render_markdown"]

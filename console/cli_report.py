"""`keyshift report --out DIR`: the scorecard (console/scorecard.py) per agent and per owner, as
Markdown (``DIR/report.md``) and one self-contained HTML page (``DIR/report.html``) with two
charts, credential age and findings over time. Exit codes: 0 written, 2 bad usage (``--out``
is a file, an unknown format, a directory that cannot be written).

The HTML is readable offline and runs nothing: inline CSS, inline SVG drawn here, no script,
no remote address, and a Content-Security-Policy that forbids both should anything slip in.
Every text from the store or the inventory is escaped (a credential may be named
``<script>``), in the Markdown too, since Markdown viewers render inline HTML. The report holds
names, counts and dates only: no fingerprint, no value (invariant 1). Files are written 0600
and a directory it creates 0700 (invariant 7), each file replaced whole.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from html import escape
from pathlib import Path

import click

from console.cli import Context, _err, _out, cli, pass_ctx
from console.errors import UsageError
from console.findings.rules import SEVERITIES
from console.paths import write_private
from console.scorecard import (
    PROPERTIES,
    PROPERTY_HELP,
    PROPERTY_TITLES,
    UNKNOWN_HELP,
    Card,
    Scorecard,
    Tally,
    TimelinePoint,
    build,
)

FORMATS = {"md": "report.md", "html": "report.html"}
NOBODY = "(no owner)"  # the owner card of credentials nobody owns


@cli.command("report")
@click.option("--out", "out", type=click.Path(path_type=Path), required=True,
              help="The directory to write report.md and report.html into (created if absent).")
@click.option("--format", "formats", default="md,html", show_default=True,
              help="Which to write: md, html, or both (comma-separated).")
@pass_ctx
def report_cmd(ctx: Context, out: Path, formats: str) -> None:
    """The scorecard per agent and per owner: the share of their credentials with a known
    owner, narrow scope, a set lifetime and an audit trail, and open findings by severity;
    with charts of credential age and findings over time. Read-only."""
    wanted = _formats(formats)
    if out.exists() and not out.is_dir():  # before any work
        raise UsageError(f"--out {out} is not a directory", hint="give a directory to write into")
    loaded = None
    if ctx.inventory_path.exists():
        loaded = ctx.loaded  # an invalid inventory is an error (exit 2), not ignored
    else:
        _err(f"keyshift: no inventory at {ctx.inventory_path}: owners are not checked against "
             "it and agents come from grants only")
    card = build(ctx.reader, loaded, datetime.now(UTC))
    directory = _out_dir(out)
    renderers: dict[str, Callable[[Scorecard], str]] = {"md": to_markdown, "html": to_html}
    for fmt in wanted:
        path = directory / FORMATS[fmt]
        write_private(path, renderers[fmt](card))
        _out(f"wrote {path}")


def _formats(text: str) -> list[str]:
    wanted = [f.strip().lower() for f in text.split(",") if f.strip()]
    bad = [f for f in wanted if f not in FORMATS]
    if bad or not wanted:
        raise UsageError(f"--format {text!r}: choose md, html or md,html")
    return list(dict.fromkeys(wanted))


def _out_dir(out: Path) -> Path:
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is not a directory", hint="give a directory to write into")
    try:
        if not out.exists():
            out.mkdir(parents=True, mode=0o700)
            out.chmod(0o700)  # whatever the umask (invariant 7)
    except OSError as exc:
        raise UsageError(f"cannot create {out}: {exc.strerror}") from None
    return out


# -- words shared by both formats ------------------------------------------------------


def share_text(tally: Tally) -> str:
    """``75% (3 of 4)``, with ``, 1 unknown`` when some could not be told; ``-`` for none."""
    if tally.known == 0 and tally.unknown == 0:
        return "-"
    if tally.share is None:
        text = "n/a"
    else:
        text = f"{round(tally.share * 100)}% ({tally.yes} of {tally.known})"
    return text + (f", {tally.unknown} unknown" if tally.unknown else "")


def card_name(card: Card) -> str:
    return card.name if card.name is not None else NOBODY


def _when(card: Scorecard) -> str:
    return card.generated_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _inventory_text(card: Scorecard) -> str:
    return card.inventory if card.inventory is not None else "none (owners not checked)"


def _findings_text(counts: dict[str, int]) -> str:
    shown = [f"{sev} {n}" for sev, n in counts.items() if n]
    return ", ".join(shown) or "none"


# -- Markdown --------------------------------------------------------------------------

_MD_ESCAPES = str.maketrans({
    "\\": "\\\\", "`": "\\`", "*": "\\*", "_": "\\_", "[": "\\[", "]": "\\]", "|": "\\|",
    "<": "&lt;", ">": "&gt;", "&": "&amp;", "\n": " ", "\r": " ",
})


def md(text: str) -> str:
    """Store text made inert in Markdown: emphasis, links, table cells and inline HTML."""
    return text.translate(_MD_ESCAPES)


def _md_table(head: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _card_head(first: str) -> list[str]:
    return [first, "credentials", *(PROPERTY_TITLES[p] for p in PROPERTIES), *SEVERITIES]


def _card_row(card: Card, name: str) -> list[str]:
    return [name, str(card.credentials), *(share_text(card.tallies[p]) for p in PROPERTIES),
            *(str(card.open_findings[s]) for s in SEVERITIES)]


def to_markdown(card: Scorecard) -> str:
    lines = [
        "# keyshift scorecard",
        "",
        f"Generated {_when(card)}. Inventory: {md(_inventory_text(card))}.",
        "",
        "## All credentials",
        "",
        f"{card.overall.credentials} present credentials. Open findings: "
        f"{_findings_text(card.overall.open_findings)}.",
        "",
        *_md_table(["property", "share", "yes", "no", "unknown"], [
            [PROPERTY_TITLES[p], share_text(t), str(t.yes), str(t.no), str(t.unknown)]
            for p, t in card.overall.tallies.items()
        ]),
        "",
        "## Per agent",
        "",
        "The credentials each agent can reach (its grants), and open findings naming it or "
        "a credential it reaches.",
        "",
        *_md_table(_card_head("agent"), [
            _card_row(c, md(c.name or "") + (f" ({md(c.note)})" if c.note else ""))
            for c in card.agents
        ]),
        "",
        "## Per owner",
        "",
        "The credentials each owner answers for, and open findings on them or on the agents "
        "they own.",
        "",
        *_md_table(_card_head("owner"), [
            _card_row(c, md(card_name(c))) for c in card.owners
        ]),
        "",
        "## Credential age",
        "",
        "Days since each present credential was rotated, else created.",
        "",
        *_md_table(["age", "credentials"],
                   [[label, str(n)] for label, n in card.ages]
                   + [["unknown", str(card.age_unknown)]]),
        "",
        "## Findings over time",
        "",
        "From the audit log's findings refreshes: per day, the counts after its last refresh.",
        "",
    ]
    if card.timeline:
        lines += _md_table(
            ["day", "open", "accepted", "new", "reopened", "resolved", "refreshes"],
            [[p.day.isoformat(), str(p.open), str(p.accepted), str(p.new), str(p.reopened),
              str(p.resolved), str(p.refreshes)] for p in card.timeline],
        )
    else:
        lines.append("No findings refresh recorded yet (a sync runs one).")
    lines += ["", "## How to read it", ""]
    lines += [f"- **{PROPERTY_TITLES[p]}**: {PROPERTY_HELP[p]}." for p in PROPERTIES]
    lines += ["", UNKNOWN_HELP, ""]
    return "\n".join(lines)


# -- HTML ------------------------------------------------------------------------------

CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;
max-width:72rem;padding:0 1rem;color:#1b1f24;background:#fff}
h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #d0d7de}
table{border-collapse:collapse;margin:.5rem 0 1rem}
th,td{border:1px solid #d0d7de;padding:.25rem .5rem;text-align:right;vertical-align:top}
th:first-child,td:first-child{text-align:left}th{background:#f3f5f7}
.muted{color:#57606a}.bad{color:#a40e26;font-weight:600}
svg{max-width:100%;height:auto;font:12px system-ui,sans-serif}
svg .bar{fill:#3b6ea8}svg .unknown{fill:#8c959f}svg .axis{stroke:#57606a}
svg .open{stroke:#a40e26;fill:none;stroke-width:2}svg .accepted{stroke:#9a6700;fill:none;
stroke-width:2;stroke-dasharray:5 3}svg .dot-open,svg .legend-open{fill:#a40e26}
svg .dot-accepted,svg .legend-accepted{fill:#9a6700}
@media (prefers-color-scheme:dark){body{color:#e6edf3;background:#0d1117}
th{background:#161b22}th,td{border-color:#30363d}.muted{color:#9198a1}
svg text{fill:#e6edf3}svg .bar{fill:#6e9fd6}}
"""
# nothing may run or be fetched: a last line of defence behind the escaping
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def h(text: object) -> str:
    return escape(str(text), quote=True)


def _html_table(head: list[str], rows: list[list[str]], *, raw: bool = False) -> str:
    """A table; cells are escaped unless ``raw`` (cells already built from escaped parts)."""
    cell = (lambda v: v) if raw else h
    out = ["<table><thead><tr>", *(f"<th>{h(c)}</th>" for c in head), "</tr></thead><tbody>"]
    for row in rows:
        out.append("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _html_card_row(card: Card, name_html: str) -> list[str]:
    sev = [f'<span class="bad">{n}</span>' if n and s in ("critical", "high") else str(n)
           for s, n in card.open_findings.items()]
    return [name_html, str(card.credentials),
            *(h(share_text(card.tallies[p])) for p in PROPERTIES), *sev]


def age_chart(card: Scorecard) -> str:
    """Bars per age bucket, and the unknown ages as a grey bar of their own."""
    bars = [*card.ages, ("unknown", card.age_unknown)]
    width, height, left, bottom, top = 640, 250, 40, 50, 20
    slot = (width - left - 10) / len(bars)
    peak = max((n for _, n in bars), default=0) or 1
    plot = height - bottom - top
    # inline SVG in HTML needs no namespace declaration (and the page names no address)
    parts = [f'<svg viewBox="0 0 {width} {height}" '
             f'font-size="12" role="img" aria-label="credentials by age in days">',
             f'<line class="axis" x1="{left}" y1="{height - bottom}" x2="{width - 10}" '
             f'y2="{height - bottom}"/>']
    for i, (label, n) in enumerate(bars):
        bar_h = plot * n / peak
        x = left + i * slot + slot * 0.15
        y = height - bottom - bar_h
        klass = "unknown" if label == "unknown" else "bar"
        parts.append(f'<rect class="{klass}" x="{x:.1f}" y="{y:.1f}" width="{slot * 0.7:.1f}" '
                     f'height="{bar_h:.1f}"><title>{h(label)}: {n}</title></rect>')
        mid = x + slot * 0.35
        parts.append(f'<text x="{mid:.1f}" y="{y - 4:.1f}" text-anchor="middle">{n}</text>')
        parts.append(f'<text x="{mid:.1f}" y="{height - bottom + 16}" '
                     f'text-anchor="middle">{h(label.removesuffix(" days"))}</text>')
    parts.append(f'<text x="{width / 2:.0f}" y="{height - 6}" text-anchor="middle">'
                 "days since rotated, else created</text>")
    parts.append("</svg>")
    return "".join(parts)


def findings_chart(points: list[TimelinePoint]) -> str:
    """Open and accepted findings after each day's last refresh, as two lines."""
    if not points:
        return '<p class="muted">No findings refresh recorded yet (a sync runs one).</p>'
    width, height, left, bottom, top, right = 640, 250, 40, 40, 30, 20
    plot_w, plot_h = width - left - right, height - bottom - top
    peak = max(max(p.open, p.accepted) for p in points) or 1
    # x is the date, so days without a refresh leave a gap rather than squeezing time
    span = (points[-1].day - points[0].day).days

    def xy(i: int, value: int) -> tuple[float, float]:
        offset = (points[i].day - points[0].day).days
        x = left + (plot_w * offset / span if span else plot_w / 2)
        return x, height - bottom - plot_h * value / peak

    parts = [f'<svg viewBox="0 0 {width} {height}" '
             f'font-size="12" role="img" aria-label="open and accepted findings per day">',
             f'<line class="axis" x1="{left}" y1="{height - bottom}" x2="{width - right}" '
             f'y2="{height - bottom}"/>',
             f'<text x="{left - 6}" y="{top + 4}" text-anchor="end">{peak}</text>',
             f'<text x="{left - 6}" y="{height - bottom}" text-anchor="end">0</text>']
    for series in ("open", "accepted"):
        coords = [xy(i, getattr(p, series)) for i, p in enumerate(points)]
        if len(coords) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
            parts.append(f'<polyline class="{series}" points="{path}"/>')
        for (x, y), p in zip(coords, points, strict=True):
            parts.append(f'<circle class="dot-{series}" cx="{x:.1f}" cy="{y:.1f}" r="3">'
                         f"<title>{p.day.isoformat()}: {getattr(p, series)} {series}</title>"
                         "</circle>")
    # a label on the first and last day (and the middle one), so long histories stay legible
    last = len(points) - 1
    for i in sorted({0, last // 2, last}):
        x, _ = xy(i, 0)
        anchor = "middle" if span == 0 or 0 < i < last else "start" if i == 0 else "end"
        parts.append(f'<text x="{x:.1f}" y="{height - bottom + 16}" '
                     f'text-anchor="{anchor}">{points[i].day.isoformat()}</text>')
    # the legend: a sample of each line and its word, placed apart (no reliance on spaces)
    for n, series in enumerate(("open", "accepted")):
        x = left + 10 + n * 110
        parts.append(f'<line class="{series}" x1="{x}" y1="{top - 10}" x2="{x + 24}" '
                     f'y2="{top - 10}"/><text class="legend-{series}" x="{x + 30}" '
                     f'y="{top - 6}">{series}</text>')
    parts.append("</svg>")
    return "".join(parts)


def to_html(card: Scorecard) -> str:
    overall = card.overall
    agent_rows = [
        _html_card_row(c, h(c.name) + (f' <span class="muted">({h(c.note)})</span>'
                                       if c.note else ""))
        for c in card.agents
    ]
    owner_rows = [
        _html_card_row(c, h(c.name) if c.name is not None
                       else f'<span class="muted">{h(NOBODY)}</span>')
        for c in card.owners
    ]
    timeline_rows = [[p.day.isoformat(), p.open, p.accepted, p.new, p.reopened, p.resolved,
                      p.refreshes] for p in card.timeline]
    body = [
        "<h1>keyshift scorecard</h1>",
        f'<p class="muted">Generated {h(_when(card))}. Inventory: '
        f"{h(_inventory_text(card))}.</p>",
        "<h2>All credentials</h2>",
        f"<p>{overall.credentials} present credentials. Open findings: "
        f"{h(_findings_text(overall.open_findings))}.</p>",
        _html_table(["property", "share", "yes", "no", "unknown"], [
            [PROPERTY_TITLES[p], share_text(t), str(t.yes), str(t.no), str(t.unknown)]
            for p, t in overall.tallies.items()
        ]),
        "<h2>Per agent</h2>",
        "<p>The credentials each agent can reach (its grants), and open findings naming it or "
        "a credential it reaches.</p>",
        _html_table(_card_head("agent"), agent_rows, raw=True),
        "<h2>Per owner</h2>",
        "<p>The credentials each owner answers for, and open findings on them or on the "
        "agents they own.</p>",
        _html_table(_card_head("owner"), owner_rows, raw=True),
        "<h2>Credential age</h2>",
        "<p>Days since each present credential was rotated, else created; unknown ages apart."
        "</p>",
        age_chart(card),
        _html_table(["age", "credentials"],
                    [[label, str(n)] for label, n in card.ages]
                    + [["unknown", str(card.age_unknown)]]),
        "<h2>Findings over time</h2>",
        "<p>From the audit log's findings refreshes: per day, the counts after its last "
        "refresh (a day without one has no point).</p>",
        findings_chart(card.timeline),
    ]
    if timeline_rows:
        body.append(_html_table(
            ["day", "open", "accepted", "new", "reopened", "resolved", "refreshes"],
            [[str(v) for v in row] for row in timeline_rows]))
    body += ["<h2>How to read it</h2>", "<ul>"]
    body += [f"<li><b>{h(PROPERTY_TITLES[p])}</b>: {h(PROPERTY_HELP[p])}.</li>"
             for p in PROPERTIES]
    body += ["</ul>", f"<p>{h(UNKNOWN_HELP)}</p>"]
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{h(CSP)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>keyshift scorecard</title>"
        f"<style>{_minify(CSS)}</style></head><body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def _minify(css: str) -> str:
    return re.sub(r"\s*\n\s*", "", css)

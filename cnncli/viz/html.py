"""A self-contained HTML page: inline CSS, images as data URIs, no script, nothing fetched, so
the file opens from disk in any browser, offline, and can be mailed as it is."""

import base64
import html

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
       color: #222; margin: 0 auto; padding: 24px 28px 60px; max-width: 1180px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 34px 0 10px; padding-bottom: 4px; border-bottom: 1px solid #ddd; }
.sub { color: #666; margin: 0 0 18px; }
table { border-collapse: collapse; margin: 6px 0 10px; font-size: 13px; }
th, td { padding: 4px 10px; border-bottom: 1px solid #eee; text-align: left; vertical-align: top; }
th { background: #f6f6f6; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; height: auto; display: block; margin: 6px 0; }
pre { background: #f6f6f6; padding: 10px 12px; overflow-x: auto; font-size: 12px; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; margin: 8px 0 4px; }
.card { border: 1px solid #e3e3e3; border-radius: 6px; padding: 8px 14px; min-width: 120px; }
.card b { display: block; font-size: 20px; }
.card span { color: #666; font-size: 12px; }
.note { color: #666; font-size: 13px; }
"""


def esc(value):
    return html.escape(str(value), quote=True)


def image(png_bytes, alt, id_=None):
    """An <img> holding the PNG itself (a data URI)."""
    data = base64.b64encode(png_bytes).decode("ascii")
    ident = f' id="{esc(id_)}"' if id_ else ""
    return f'<img{ident} alt="{esc(alt)}" src="data:image/png;base64,{data}">'


def table(header, rows, numeric=(), id_=None):
    """header: column names; rows: lists of cells (escaped here); numeric: column indices to
    right-align."""
    def cell(tag, i, v):
        cls = ' class="num"' if i in numeric else ""
        return f"<{tag}{cls}>{esc(v)}</{tag}>"
    head = "".join(cell("th", i, h) for i, h in enumerate(header))
    body = "\n".join("<tr>" + "".join(cell("td", i, v) for i, v in enumerate(r)) + "</tr>" for r in rows)
    ident = f' id="{esc(id_)}"' if id_ else ""
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>"


def cards(items):
    """[(value, label)] -> a row of big numbers."""
    return '<div class="cards">' + "".join(
        f'<div class="card"><b>{esc(v)}</b><span>{esc(k)}</span></div>' for v, k in items) + "</div>"


def page(title, subtitle, sections):
    """sections: [(heading, inner html)] -> the whole document."""
    body = "\n".join(f'<section id="{esc(_anchor(h))}">\n<h2>{esc(h)}</h2>\n{inner}\n</section>' for h, inner in sections)
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
            f"<h1>{esc(title)}</h1>\n<p class=\"sub\">{esc(subtitle)}</p>\n{body}\n</body>\n</html>\n")


def _anchor(heading):
    return "".join(ch if ch.isalnum() else "-" for ch in heading.lower()).strip("-")

"""`gauge view`: journals as one interactive, self-contained HTML viewer.

data.py     journals -> what the page shows: run summaries, sample rows, transcripts
costs.py    what a run spent (run_cost, total_cost)
charts.py   per-run charts as inline SVG (horizontal bars: readable with 20+ runs)
page.py     the HTML file: summary table, charts, samples packed as gzip+base64 chunks
server.py   `gauge view --serve`: a folder on 127.0.0.1, refreshed as runs write
assets/     viewer.js and viewer.css, inlined into every page (no CDN, works offline)
"""

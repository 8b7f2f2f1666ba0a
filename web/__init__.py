"""The web app of SPEC S17: operations dashboard, household and landlord pages, JSON API.

It only reads, through `store.clickhouse.ClickHouseStore.read` (its own fixed statements,
values bound as parameters, ``readonly=1``); pages are Jinja2 templates and charts are
server-rendered SVG (no CDN).
"""

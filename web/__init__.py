"""The web app of SPEC S17: operations dashboard, household and landlord pages, JSON API.

It only reads, through `sinks.clickhouse.ClickHouseStore.query_readonly` with bound
parameters; pages are Jinja2 templates and charts are server-rendered SVG (no CDN).
"""

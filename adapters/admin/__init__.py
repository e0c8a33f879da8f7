"""The admin console at /admin on `policybot serve`: server-rendered pages (Jinja2), charts as SVG (pygal),
no JavaScript needed. See adapters.admin.routes."""

"""The Grafana dashboard in tests: its SQL queries, with Grafana's macros expanded."""

from __future__ import annotations

import re


def dashboard_sql(dashboard: dict) -> list[str]:
    """Every SQL query of the dashboard: panels, template variables and annotations."""
    queries = [t["rawSql"] for p in dashboard["panels"] for t in p.get("targets", []) if "rawSql" in t]
    queries += [v["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    queries += [a["target"]["rawSql"] for a in dashboard["annotations"]["list"] if "target" in a]
    return queries


def expand_grafana_macros(sql: str) -> str:
    """What Grafana's MySQL data source makes of its macros, for a wide time range."""
    span = "BETWEEN FROM_UNIXTIME(0) AND FROM_UNIXTIME(2000000000)"
    sql = re.sub(r"\$__timeFilter\(([^)]+)\)", rf"\1 {span}", sql)
    sql = sql.replace("$__timeFrom()", "FROM_UNIXTIME(0)").replace("$__timeTo()", "FROM_UNIXTIME(2000000000)")
    sql = re.sub(r"\$__timeGroupAlias\(([^,]+), 1m\)", r"UNIX_TIMESTAMP(\1) DIV 60 * 60 AS time", sql)
    return sql.replace("$plot_type", "'fcal_occ'")

"""Inbound filters and the origin matching they share with CORS checks.

Build a ``CompiledFilters`` with ``compile_filters(filter_settings, global_filters)`` once per
project config revision, then call ``should_filter(event, client_ip=...)`` per event: it returns
the outcome reason (Relay's ``FilterStatKey``, or a generic filter's id) or None.
"""

from relay.filters.inbound import (
    MAX_GENERIC_FILTERS_VERSION,
    CompiledFilters,
    FilterStatKey,
    compile_filters,
)
from relay.filters.useragent import init_parser as init_user_agent_parser

__all__ = [
    "MAX_GENERIC_FILTERS_VERSION",
    "CompiledFilters",
    "FilterStatKey",
    "compile_filters",
    "init_user_agent_parser",
]

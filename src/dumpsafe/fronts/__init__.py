"""The fronts: how people and programs reach dumpsafe. The CLI (``cli*.py``, rendered by
``output*.py``), REST (``api/``), MCP (``mcp_server.py``), the remote CLI client
(``remote.py``) and the web dashboard (``web/``). Fronts parse, authorize, call the service
(REST, MCP and the remote client through the operations registry) and render; no backup
logic lives here, and no core module imports it (only ``python -m dumpsafe`` does).
"""

"""``dumpsafe demo``: a throwaway PostgreSQL and sample data taken through the whole cycle
with the real CLI, REST, MCP and dashboard. Not used by the runtime: only ``dumpsafe demo``
(cli.py) imports it.

``tour`` runs the steps in order; ``runner`` runs the real CLI and shows each command;
``offsite``, ``schedule``, ``api`` and ``dashboard`` are the tour's later parts.
"""

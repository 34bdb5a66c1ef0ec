"""The web dashboard served by ``dumpsafe serve`` at ``/``, and the report's HTML rendering."""

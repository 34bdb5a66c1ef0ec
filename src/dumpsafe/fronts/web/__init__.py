"""The web dashboard served by ``dumpsafe serve`` at ``/``: one static page, its script and styles."""

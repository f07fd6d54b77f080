"""Command-line interface (``guidegap ...``)."""

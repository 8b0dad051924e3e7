"""The kernel: what every other package stands on.

Settings (``config``), the database and migrations (``db``), the event envelope
(``envelope``) and the log (``log``). The kernel imports nothing of ours above it;
``tests/unit/test_layers.py`` checks that.
"""

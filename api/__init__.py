"""The read API: plyr-compatible REST over the read models (read-only database access).

Errors are raised as :class:`~api.errors.ApiError` and rendered as one JSON envelope
``{"detail": message, "error": code}``.
"""

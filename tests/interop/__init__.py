"""Conformance with the AT Protocol interop test vectors (vendored in ``vectors/``)."""

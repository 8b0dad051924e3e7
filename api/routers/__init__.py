"""One router per URL namespace."""

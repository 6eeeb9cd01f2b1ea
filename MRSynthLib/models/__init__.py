"""Model bundles: the card, sha256-verified weights, and where bundles are found (built-in, user, path)."""

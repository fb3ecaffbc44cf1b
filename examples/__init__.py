"""Example targets for Ratchet (the demo shop)."""

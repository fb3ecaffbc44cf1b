"""Resource samples of the target's processes during load tests (psutil)."""

"""Load on a workflow application: executions started at a constant arrival rate, each awaited."""

"""Playbooks and targets: models, YAML loading with line numbers, JSON Schemas."""

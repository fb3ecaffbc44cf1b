"""Orchestration only: deterministic workflows over small pydantic payloads."""

"""Orchestration only: deterministic workflows over small pydantic payloads."""

from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

# The sandbox re-imports a workflow's modules for each run; cryptography's Rust extension (signed approvals)
# aborts the process when it is initialised a second time, so it is taken from the worker's own imports.
WORKFLOW_RUNNER = SandboxedWorkflowRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_modules("cryptography")
)

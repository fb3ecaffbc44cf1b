"""The campaign workflow, one module per phase (see workflow.py for its face)."""

from workflows.campaign.workflow import CampaignWorkflow

__all__ = ["CampaignWorkflow"]

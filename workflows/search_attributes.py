"""Search attributes that let the Temporal UI and `ratchet list` filter campaigns."""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

PHASE = SearchAttributeKey.for_keyword("CampaignPhase")
STATE = SearchAttributeKey.for_keyword("CampaignState")
TARGET = SearchAttributeKey.for_keyword("CampaignTarget")
PLAYBOOK = SearchAttributeKey.for_keyword("CampaignPlaybook")

ALL = (PHASE, STATE, TARGET, PLAYBOOK)

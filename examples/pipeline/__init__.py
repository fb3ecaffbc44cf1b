"""A document-processing workflow application on Temporal, with the mistakes such applications make; the
example that Ratchet's workflow analytics and workflow campaigns are tested on (``python -m examples.pipeline``).
"""

"""Load generation with the k6 binary: scripts from the playbook and target, runs as subprocesses."""

"""Pure analysis: detectors, statistics, planning and decisions. No I/O, no Temporal imports."""

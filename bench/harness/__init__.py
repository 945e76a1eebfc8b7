"""The benchmark harness: plans runs, starts each system in fresh processes, measures, reports."""

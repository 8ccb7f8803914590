"""The Flywheel gear: its config, the Flywheel API, the job, its completion report."""

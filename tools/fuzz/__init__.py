"""The fuzz harness: structure-aware mutators (`mutators`), the properties every input must
keep (`harness`), a seeded campaign (`campaign`) and an atheris entry (`atheris_entry`).
docs/robustness.md describes them and the long run's numbers."""

"""Stage 6a, the CI gate: policies, baselines and what CI pages show of them.

Owns the policy model and its TOML parser (`policy`, `locate`), the rule keys as data
(`rules`, from which docs/ci.md's reference is drawn by `reference`), the scopes (`scope`),
applying a policy to a run's results (`evaluate`), baselines (`baseline`), GitHub annotations
and the Markdown summary (`github`), a command run's gate (`session`) and the Python API
(`check`), which the pytest plugin (`pytest_tcpflow_check`, a module of its own beside the
package so that pytest loads it for free) hands to tests.
May import: every stage below, `analyzer.settings`, `analyzer.pipeline` and
`analyzer.triage` (the filter language scopes share). Never click or rich; renderers
(`analyzer.render.junit`) and the CLI import it, not the other way round.
"""

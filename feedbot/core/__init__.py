"""The domain: reports, triage, configuration, delivery queue. Nothing here imports Slack."""

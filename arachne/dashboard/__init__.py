"""The web dashboard: campaign figures, matches and notices as HTML, JSON and /metrics."""

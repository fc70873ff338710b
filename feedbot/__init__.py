"""feedbot: a direct line from frontline staff to leadership, through Slack."""

__version__ = "0.1.0"

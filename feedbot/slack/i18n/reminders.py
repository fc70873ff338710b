"""Messages of the reminders feature, in English and German side by side."""

EN: dict[str, str] = {}

DE: dict[str, str] = {}

"""Messages of the digest feature, in English and German side by side."""

EN: dict[str, str] = {}

DE: dict[str, str] = {}

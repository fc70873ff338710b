"""Messages of webhooks (ticket systems), in English and German side by side."""

EN: dict[str, str] = {
    "webhook.failing": ":warning: Webhook {id} ({url}) keeps failing: {error}. Its report events wait in the outbox and are retried for a day; `feedbot outbox` shows them.",
    "thread.hook_replied": ":link: {actor} replied to the reporter from the ticket system: {detail}",
    "thread.hook_resolved": ":link: {actor} resolved it from the ticket system: {detail}",
}

DE: dict[str, str] = {
    "webhook.failing": ":warning: Webhook {id} ({url}) schlägt wiederholt fehl: {error}. Seine Meldungsereignisse warten im Postausgang und werden einen Tag lang erneut versucht; `feedbot outbox` zeigt sie.",
    "thread.hook_replied": ":link: {actor} hat der meldenden Person aus dem Ticketsystem geantwortet: {detail}",
    "thread.hook_resolved": ":link: {actor} hat die Meldung im Ticketsystem erledigt: {detail}",
}

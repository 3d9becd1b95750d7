"""The apprise handler: one notification channel (Slack, email, Teams, Discord, Telegram, ...) by its apprise URL.

One URL per handler on purpose: a handler is retried and remembered as a whole, so two
channels in one handler would make the one that worked repeat when the other is retried.
"""

from __future__ import annotations

import apprise

from clickstream.reactions import Reaction
from reactors.errors import DeliveryFailed


def render(template: str, reaction: Reaction) -> str:
    return template.format(**reaction.model_dump())


class AppriseHandler:
    def __init__(self, url: str, *, title: str, body: str):
        self.title, self.body = title, body
        self.notifier = apprise.Apprise()
        if not self.notifier.add(url):
            raise ValueError("apprise does not understand this URL (see https://github.com/caronc/apprise/wiki)")
        [service] = list(self.notifier)
        self.service_name = service.service_name or type(service).__name__

    async def __call__(self, reaction: Reaction) -> None:
        result = await self.notifier.async_notify(body=render(self.body, reaction),
                                                  title=render(self.title, reaction))
        if not result:
            errors = [entry.message for entry in result.logs() if entry.level in ("ERROR", "WARNING")]
            detail = errors[-1] if errors else result.status.name
            raise DeliveryFailed(f"{self.service_name} notification failed: {detail}")

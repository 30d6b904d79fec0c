"""Mail providers' webhooks (SES through SNS, SendGrid, Mailgun, Postmark), verified and read as bounces."""

from leadloop.domain.webhooks.events import ProviderEvent, ProviderEventKind, ProviderName, WebhookRefused

__all__ = ["ProviderEvent", "ProviderEventKind", "ProviderName", "WebhookRefused"]

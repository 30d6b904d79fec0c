"""The signed links' checks: a token of the right kind, ours, and (for most kinds) young enough."""

from leadloop.domain.metrics import TOKENS_REFUSED
from leadloop.domain.tokens import Signer, Token, TokenError, TokenKind
from leadloop.infra.settings import Settings
from starter.metrics import HttpMetrics


class Links:
    """Verifies the tokens in leadloop's links, counting every one refused."""

    def __init__(self, settings: Settings, signer: Signer, metrics: HttpMetrics) -> None:
        self.settings = settings
        self.signer = signer
        self.metrics = metrics

    def max_age(self, kind: TokenKind) -> int | None:
        """Seconds a link of this kind lives."""
        return {
            "open": self.settings.token_max_age_days * 86400,
            "click": self.settings.token_max_age_days * 86400,
            "rep": self.settings.rep_link_max_age_days * 86400,
            "unsubscribe": None,  # an unsubscribe link must keep working for as long as the email exists
            "visitor": self.settings.token_max_age_days * 86400,
        }[kind]

    def verify(self, token: str, kind: TokenKind, *, expiry: bool = True) -> Token | None:
        """The token, or None (counted) when it is tampered with, foreign, of another kind or (`expiry`) too old."""
        try:
            return self.signer.verify(token, kind=kind, max_age=self.max_age(kind) if expiry else None)
        except TokenError:
            self.metrics.inc(TOKENS_REFUSED, kind=kind)
            return None

    def signed(self, token: str) -> bool:
        """Whether the token is validly signed by us, whatever its kind and age."""
        try:
            self.signer.verify(token)
        except TokenError:
            return False
        return True

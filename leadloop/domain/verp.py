"""VERP envelope senders: `bounces+<signed outbox key>@<bounce domain>`, built for each send and read back."""

from leadloop.domain.mail import ascii_domain
from leadloop.domain.tokens import Signer, Token, TokenError

#: the local part's fixed start; the token follows the "+"
VERP_PREFIX = "bounces"


def bounce_address(signer: Signer, key: str, bounce_domain: str) -> str:
    """The envelope sender (MAIL FROM) of the send `key`: a bounce sent to it names the send."""
    return f"{VERP_PREFIX}+{signer.sign_bounce(key)}@{ascii_domain(bounce_domain.strip().lower())}"


def bounce_key(signer: Signer, address: str, bounce_domain: str | None = None) -> str | None:
    """The outbox key a VERP recipient address names, or None: not a VERP address (of `bounce_domain`, when
    given), or a token that is not ours or was changed."""
    token = bounce_token(signer, address, bounce_domain)
    return token.key if token is not None else None


def bounce_token(signer: Signer, address: str, bounce_domain: str | None = None) -> Token | None:
    """The verified token of a VERP recipient address (its outbox key and lead), or None as `bounce_key`."""
    address = address.strip().strip("<>").strip()
    local, at, domain = address.rpartition("@")
    if not at:
        return None
    if bounce_domain is not None:
        try:
            if domain.lower().rstrip(".") != ascii_domain(bounce_domain.strip().lower()):
                return None
        except ValueError:
            return None
    prefix, plus, token = local.partition("+")
    if not plus or prefix.lower() != VERP_PREFIX:
        return None
    try:
        return signer.verify_bounce(token)
    except TokenError:
        return None

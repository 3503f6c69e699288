"""Signed consent receipts (docs/product.md, "Consent receipts"): the builder both the
auth service and the registry use (`issue`, `issue_async`), the versioned scope wording
(`wording`) and the offline check (`verify_receipt`)."""

from shared.receipts.issue import (
    RECEIPT_TYP,
    USER_FIELDS,
    Act,
    Method,
    issue,
    issue_async,
    method_of,
    use_issuer,
)
from shared.receipts.verify import verify_receipt

__all__ = ["RECEIPT_TYP", "USER_FIELDS", "Act", "Method", "issue", "issue_async",
           "method_of", "use_issuer", "verify_receipt"]

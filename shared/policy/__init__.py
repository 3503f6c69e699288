"""The declared authorization model: who may do what, and how far each caller reaches.

- `callers.py`: the caller kinds;
- `rules.py`: every operation with the callers and scopes it allows (the table);
- `reach.py`: the resolved `Caller`, its reach as SQL (`conditions`) and in Python
  (`Caller.reaches`), and the one definition of a user's companies;
- `coverage.py`: which employees a connection covers, as SQL (the data API's employee
  read and "who can read me" join by it);
- `resolve.py`: from a verified token to a `Caller`, and `authorize`;
- `consent.py`: who may link apps;
- `approvals.py`: app states (allowed, approval required, blocked), who may request
  and decide consent requests, and why a connection is suspended;
- `sandboxes.py`: what sets a partner's sandbox apart (owner, reserved email domain,
  out of the directory's reach);
- `lifetime.py`: how long a consent lasts (expiry, renewal, a lifetime change);
- `apps.py`: how far a first-party app reaches (bound or platform-wide): logins,
  introspection, the challenge API;
- `dependency.py`: the FastAPI dependencies that endpoints name their operation with.
"""

from shared.policy.approvals import suspension_reason
from shared.policy.callers import CallerKind
from shared.policy.consent import consent_templates, may_consent, may_link
from shared.policy.reach import Caller, conditions, user_companies, user_company_ids
from shared.policy.resolve import app_by_client_id, authorize, refuse_values, resolve
from shared.policy.rules import REACH, RULES, Credential, Rule

__all__ = [
    "REACH", "RULES", "Caller", "CallerKind", "Credential", "Rule", "app_by_client_id",
    "authorize", "conditions", "consent_templates", "may_consent", "may_link", "refuse_values",
    "resolve", "suspension_reason", "user_companies", "user_company_ids",
]

"""Flask-Authsvc: delegate a Flask app's login to authsvc , the login service in the same repository.

:class:`Authsvc` binds Flask-Login to the identity a forward-auth proxy sets (``AUTHSVC_MODE =
"proxy"``) or to an OpenID Connect sign-in at authsvc (``"oidc"``, with the ``oidc`` extra).
"""

from flask_authsvc.access import access_verdict
from flask_authsvc.extension import Authsvc
from flask_authsvc.identity import Anonymous, Identity, Malformed, read_identity
from flask_authsvc.settings import ConfigError, Settings, read_settings

__all__ = ["Anonymous", "Authsvc", "ConfigError", "Identity", "Malformed", "Settings", "access_verdict",
           "read_identity", "read_settings"]
__version__ = "0.1.0"

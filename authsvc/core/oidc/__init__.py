"""The OpenID Provider (issue 19): stores, signing keys, Authlib grants and the provider service.
No Flask here; the endpoints are authsvc.web.views.oidc. Guide: docs/oidc.md."""

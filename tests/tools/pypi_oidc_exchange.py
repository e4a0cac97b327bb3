"""Trusted-publishing exchange as pypa/gh-action-pypi-publish performs it (oidc-exchange.py):
take the netloc of the repository URL (its path and scheme are dropped), ask
https://<netloc>/_/oidc/audience, get an ID token for that audience with PyPA's `id`
(`id.detect_credential`, which reads the GitHub Actions environment), and exchange it at
https://<netloc>/_/oidc/github/mint-token. Prints the minted token on success; on failure
prints the action's error lines to stderr and exits 1.

Usage: python pypi_oidc_exchange.py <repository-url>
The test CA is trusted through REQUESTS_CA_BUNDLE.
"""

import sys
from urllib.parse import urlparse

import id as oidc_id
import requests


def main() -> int:
    netloc = urlparse(sys.argv[1]).netloc
    audience_url = f"https://{netloc}/_/oidc/audience"
    mint_url = f"https://{netloc}/_/oidc/github/mint-token"

    response = requests.get(audience_url, timeout=30)
    if response.status_code == 403:
        print(f"audience retrieval failed: repository at {netloc} has trusted publishing disabled", file=sys.stderr)
        return 1
    if response.status_code == 404:
        print(f"audience retrieval failed: repository at {netloc} does not indicate trusted publishing support", file=sys.stderr)
        return 1
    if not response.ok:
        print(f"audience retrieval failed: unexpected {response.status_code}: {response.reason}", file=sys.stderr)
        return 1
    audience = response.json()["audience"]

    try:
        id_token = oidc_id.detect_credential(audience=audience)
    except oidc_id.IdentityError as e:
        print(f"OpenID Connect token retrieval failed: {e}", file=sys.stderr)
        return 1
    if id_token is None:
        print("OpenID Connect token retrieval failed: no ambient credential", file=sys.stderr)
        return 1

    response = requests.post(mint_url, json={"token": id_token}, timeout=30)
    try:
        body = response.json()
    except requests.JSONDecodeError:
        print(f"Token request failed: the index produced an unexpected {response.status_code} response.", file=sys.stderr)
        return 1
    if not response.ok:
        print("Token request failed: the server refused the request for the following reasons:", file=sys.stderr)
        for error in body.get("errors", []):
            print(f"* `{error['code']}`: {error['description']}", file=sys.stderr)
        return 1
    token = body.get("token")
    if not token:
        print("Token response error: the index gave us an invalid response.", file=sys.stderr)
        return 1
    print(token)
    return 0


if __name__ == "__main__":
    sys.exit(main())

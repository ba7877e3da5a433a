"""Authentication building blocks: signing keys, API tokens (JWT), setup token, PKI."""

"""User tokens, the same in every service (DESIGN §6).

- `tokens`: the verifier (pinned algorithm, issuer, audience, expiry, key
  refresh, revocation check).
- `jwks`: where the keys come from: the issuing service named in mesh.yaml's
  `auth` section, called by the method it declares (no stubs imported), or,
  in the issuer itself, its own key set.
- `revocations`, `revocation_feed`: the deny-list of revoked tokens (fails
  closed until replayed) and the broadcast consumer of the issuer's revocation
  events that fills it.
"""

"""The shared runtime every shopmesh service is built on.

Import from the modules directly: `config` (settings from the environment),
`mesh` (the mesh declaration), `errors` (domain exceptions), `server`
(`create_server`), `channel` (`create_channel`), `interceptors` and `traces`
(OpenTelemetry export, set up by the `runtime`).
"""

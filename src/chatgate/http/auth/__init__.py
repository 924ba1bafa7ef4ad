"""HTTP authentication of the admin routes (API, console, metrics): one
`HttpAuthenticator` per method (`basic`, `digest`, `digestfile`, `remotehttp`,
`bearer`, `none`), combined per route set by `AuthChain`."""

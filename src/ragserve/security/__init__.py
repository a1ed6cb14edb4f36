"""Who may do what: credentials, tenants and scopes, guards on what reaches a model."""

"""Accounts: users, roles and scopes, sessions, API tokens and login auditing."""

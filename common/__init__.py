"""Plumbing every app may import: the HTTP API's errors, fields, parsers, permissions, schema helpers and
signatures (`common.api`), and queueing work after commit (`common.queue`).

It sits below the apps and imports none of them, so that an app reaching for the domain error or the
on-commit queue never imports the project package (`batterypred`), which composes the apps at the top.
"""
